"""Measuring a policy beyond `cocos_lib.evaluate`: rows -> summary metrics (summary), the Self-Refine baseline
(baselines), what a batch of corrections can teach (learning_signal), and the two experiments whose results are
committed: the real-model study (study) and the toy ablations (ablations)."""
