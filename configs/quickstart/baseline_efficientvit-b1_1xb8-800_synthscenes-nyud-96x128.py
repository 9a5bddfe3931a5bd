# Quickstart: the demo config. EfficientViT-B1 (ViT-Tiny-sized) trained from scratch on
# SynthScenes' NYUD-like tasks with the shared-encoder baseline decoder, 800 iterations of batch 8.
# `make demo` trains it in about 4 minutes on 2 CPU cores and evaluates it in about 30 s.
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

# Tasks and loss weights (and why these weights): configs/_base_/tasks/synthscenes_nyud.py.
model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
)
