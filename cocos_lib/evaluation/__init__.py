"""Measuring a policy beyond `cocos_lib.evaluate`: rows -> summary metrics (summary), the Self-Refine baseline
(baselines), the real-model study (study), what a batch of corrections can teach (learning_signal)."""
