# The ViT-Tiny/8 baseline on SynthScenes initialized from the MultiMAE-pretrained encoder
# (configs/multimae/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128.py; train it first, or point
# model.backbone.pretrained at another MultiMAE checkpoint, ours or the official release).
# Everything else is the from-scratch config: same decoder, schedule and loss weights.
_base_ = [
    "../_base_/models/baseline_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    backbone=dict(
        pretrained="work_dirs/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128/iter_800.pth"
    ),
    tasks=_base_.synthscenes_nyud_tasks,
)
