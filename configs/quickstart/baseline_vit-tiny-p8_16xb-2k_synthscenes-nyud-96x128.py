# Quickstart: the demo config. A ViT-Tiny with 8x8 patches, trained from scratch on SynthScenes'
# NYUD-like tasks with the shared-encoder baseline decoder. `make demo` trains and evaluates it.
_base_ = [
    "../_base_/models/baseline_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw_poly_2k.py",
    "../_base_/default_runtime.py",
]

# Loss weights follow the NYUD-v2 recipe's proportions (seg 1, depth 1, normals 10, edge 50).
model = dict(
    tasks=dict(
        semseg=dict(num_classes=7, loss_weight=1.0),
        depth=dict(loss_weight=1.0),
        normals=dict(loss_weight=10.0),
        edge=dict(loss_weight=50.0),
    )
)
