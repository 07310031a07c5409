"""Experiments and baselines built on `cocos_lib.evaluate`: the Self-Refine baseline (baselines) and the two
experiments whose results are committed: the real-model study (study) and the toy ablations (ablations)."""
