"""Sampling completions: `dispatch.generate` (the one entry point) and its backends: hf, static (CUDA-graph
decoding with static KV caches), packed (continuous batching on a CPU), vllm; stop_automaton (the stop string as
a token automaton). The contract they share, SamplingConfig, is `cocos_lib.sampling`."""
