# The ViT-Tiny/8 model base with the SynthScenes TaskExpert decoder (8 experts of width 64, memory
# at stride 4) in place of the baseline decoder.
_base_ = ["./baseline_vit-tiny-p8.py"]

model = dict(
    decoder=dict(_delete_=True, type="TaskExpertDecoder", channels=64, num_experts=8, out_stride=4),
)
