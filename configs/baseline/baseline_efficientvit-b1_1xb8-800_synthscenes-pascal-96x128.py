# The quickstart recipe on SynthScenes' PASCAL-like task set (semseg, object parts, saliency,
# normals, boundaries) with the PASCAL-Context loss weights (1, 2, 5, 10, 50).
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_pascal.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=dict(
        semseg=dict(num_classes=7, loss_weight=1.0),
        human_parts=dict(num_classes=4, loss_weight=2.0),
        saliency=dict(loss_weight=5.0),
        normals=dict(loss_weight=10.0),
        edge=dict(loss_weight=50.0),
    )
)
# This config has always checkpointed and logged at the runtime defaults, not the schedule's
# 400/100 (kept as it was; drop these to use the schedule's).
default_hooks = dict(checkpoint=dict(interval=1000), logger=dict(interval=50))
