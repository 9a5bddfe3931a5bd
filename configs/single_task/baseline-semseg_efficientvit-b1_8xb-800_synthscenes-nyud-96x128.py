# The quickstart recipe trained on semseg alone: the single-task reference that Δm of the
# SynthScenes decoder comparison (README) is measured against. Same backbone, decoder,
# schedule, seed and loss weight as the multitask quickstart.
_base_ = ["../quickstart/baseline_efficientvit-b1_8xb-800_synthscenes-nyud-96x128.py"]

model = dict(tasks=dict(_delete_=True, semseg=dict(num_classes=7, loss_weight=1.0)))
# The boundary tolerance override of the base names a task this model does not predict.
test_evaluator = dict(tasks=["semseg"], metric_overrides=dict(_delete_=True))
val_evaluator = test_evaluator
