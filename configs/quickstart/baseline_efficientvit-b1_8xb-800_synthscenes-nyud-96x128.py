# Quickstart: the demo config. EfficientViT-B1 (ViT-Tiny-sized) trained from scratch on
# SynthScenes' NYUD-like tasks with the shared-encoder baseline decoder, 800 iterations of batch 8.
# `make demo` trains and evaluates it in about 8 minutes on 2 CPU cores.
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

# The NYUD-v2 recipe's proportions (seg 1, depth 1, normals 10, edge 50), with depth raised to 5:
# SynthScenes depths span 1-8 m and the short schedule otherwise leaves depth the slowest task.
model = dict(
    tasks=dict(
        semseg=dict(num_classes=7, loss_weight=1.0),
        depth=dict(loss_weight=5.0),
        normals=dict(loss_weight=10.0),
        edge=dict(loss_weight=50.0),
    )
)
train_dataloader = dict(batch_size=8, dataset=dict(num_samples=2000))
default_hooks = dict(checkpoint=dict(interval=400), logger=dict(interval=100))
