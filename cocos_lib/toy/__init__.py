"""The toy world of the `tiny` profile: generated MBPP-format tasks (world), the tiny character-level policy and
its warm-start (warmstart), tiny offline models for tests (tiny_models)."""
