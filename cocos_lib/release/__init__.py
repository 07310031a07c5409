"""The authors' released code, reproduced: their prompts, extraction and pad tokens (authors) and their
evaluation pipeline (pipeline: loading, greedy no-stop rollouts, the plans notebook 04 runs)."""
