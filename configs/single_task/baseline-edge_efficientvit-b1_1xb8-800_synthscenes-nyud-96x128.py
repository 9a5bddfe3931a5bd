# The quickstart recipe trained on edge alone: the single-task reference that Δm of the
# SynthScenes decoder comparison (README) is measured against. Same backbone, decoder,
# schedule, seed and loss weight as the multitask quickstart.
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(tasks=dict(edge=dict(loss_weight=50.0)))
test_evaluator = dict(tasks=["edge"])
val_evaluator = test_evaluator
