# The quickstart recipe trained on edge alone: the single-task reference that Δm of the
# SynthScenes decoder comparison (README) is measured against. Same backbone, decoder,
# schedule, seed and loss weight as the multitask quickstart.
_base_ = ["../quickstart/baseline_efficientvit-b1_8xb-800_synthscenes-nyud-96x128.py"]

model = dict(tasks=dict(_delete_=True, edge=dict(loss_weight=50.0)))
test_evaluator = dict(tasks=["edge"])
val_evaluator = dict(tasks=["edge"])
