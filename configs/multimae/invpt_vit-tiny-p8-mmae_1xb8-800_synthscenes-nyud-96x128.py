# configs/invpt/invpt_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py initialized from the
# MultiMAE-pretrained encoder (see baseline_vit-tiny-p8-mmae_1xb8-800_synthscenes-nyud-96x128.py).
_base_ = ["../invpt/invpt_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py"]

model = dict(
    backbone=dict(
        pretrained="work_dirs/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128/iter_800.pth"
    )
)
