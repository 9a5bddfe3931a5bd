# The SynthScenes TaskExpert config on the plain ViT-Tiny/8 of
# configs/baseline/baseline_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py, from scratch: the
# from-scratch side of the decoder comparison on the MultiMAE-pretrained ViT.
_base_ = ["../baseline/baseline_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py"]

model = dict(
    decoder=dict(_delete_=True, type="TaskExpertDecoder", channels=64, num_experts=8, out_stride=4),
)
