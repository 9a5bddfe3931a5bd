# The quickstart recipe trained on depth alone: the single-task reference that Δm of the
# SynthScenes decoder comparison (README) is measured against. Same backbone, decoder,
# schedule, seed and loss weight as the multitask quickstart.
_base_ = ["../quickstart/baseline_efficientvit-b1_8xb-800_synthscenes-nyud-96x128.py"]

model = dict(tasks=dict(_delete_=True, depth=dict(loss_weight=5.0)))
# The boundary tolerance override of the base names a task this model does not predict.
test_evaluator = dict(tasks=["depth"], metric_overrides=dict(_delete_=True))
val_evaluator = test_evaluator
