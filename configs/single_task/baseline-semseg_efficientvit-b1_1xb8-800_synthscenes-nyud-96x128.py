# The quickstart recipe trained on semseg alone: the single-task reference that Δm of the
# SynthScenes decoder comparison (README) is measured against. Same backbone, decoder,
# schedule, seed and loss weight as the multitask quickstart.
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(tasks=dict(semseg=dict(num_classes=7, loss_weight=1.0)))
# The boundary tolerance override of the dataset base names a task this model does not predict.
test_evaluator = dict(tasks=["semseg"], metric_overrides=dict(_delete_=True))
val_evaluator = test_evaluator
