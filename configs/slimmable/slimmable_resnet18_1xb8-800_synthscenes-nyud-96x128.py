# One slimmable checkpoint for every (budget, task preference) on SynthScenes' NYUD-like tasks:
# the quickstart's data, schedule and loss weights, the slimmable ResNet-18 model. Each iteration
# trains five configurations: the widest, the narrowest and three random ones.
_base_ = [
    "../_base_/models/slimmable_resnet18.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

# The quickstart's loss weights (its config says why).
model = dict(
    tasks=dict(
        semseg=dict(num_classes=7, loss_weight=1.0),
        depth=dict(loss_weight=5.0),
        normals=dict(loss_weight=30.0),
        edge=dict(loss_weight=50.0),
    ),
)
