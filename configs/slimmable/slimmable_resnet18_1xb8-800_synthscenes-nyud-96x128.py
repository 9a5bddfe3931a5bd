# One slimmable checkpoint for every (budget, task preference) on SynthScenes' NYUD-like tasks:
# the quickstart's data, schedule and loss weights, the slimmable ResNet-18 model. Each iteration
# trains five configurations: the widest, the narrowest and three random ones.
_base_ = [
    "../_base_/models/slimmable_resnet18.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
)
