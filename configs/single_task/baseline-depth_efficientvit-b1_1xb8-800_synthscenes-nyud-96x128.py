# The quickstart recipe trained on depth alone: the single-task reference that Δm of the
# SynthScenes decoder comparison (README) is measured against. Same backbone, decoder,
# schedule, seed and loss weight as the multitask quickstart.
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(tasks=dict(depth=dict(loss_weight=5.0)))
# The boundary tolerance override of the dataset base names a task this model does not predict.
test_evaluator = dict(tasks=["depth"], metric_overrides=dict(_delete_=True))
val_evaluator = test_evaluator
