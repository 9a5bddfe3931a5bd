# The ViT-Tiny/8 baseline on SynthScenes initialized from the MultiMAE-pretrained encoder
# (configs/multimae/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128.py; train it first, or point
# model.backbone.pretrained at another MultiMAE checkpoint, ours or the official release).
# Everything else is the from-scratch config: same decoder, schedule and loss weights.
_base_ = ["../baseline/baseline_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py"]

model = dict(
    backbone=dict(
        pretrained="work_dirs/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128/iter_800.pth"
    )
)
