# The SynthScenes cross-task attention (InvPT-style) config on the plain ViT-Tiny/8 of the baseline
# ViT-Tiny config, from scratch: the from-scratch side of the decoder comparison on the
# MultiMAE-pretrained ViT.
_base_ = [
    "../_base_/models/invpt_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    # The quickstart's loss weights (its config says why).
    tasks=dict(
        semseg=dict(num_classes=7, loss_weight=1.0),
        depth=dict(loss_weight=5.0),
        normals=dict(loss_weight=30.0),
        edge=dict(loss_weight=50.0),
    ),
)
