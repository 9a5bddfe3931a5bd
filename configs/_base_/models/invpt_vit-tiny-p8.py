# The ViT-Tiny/8 model base with the SynthScenes cross-task attention (InvPT-style) decoder
# (preliminary width 64, stages 96/64/32) and InvPT's linear heads.
_base_ = ["./baseline_vit-tiny-p8.py"]

model = dict(
    backbone=dict(norm_last=True),  # as InvPT: the last block normalized, the others raw
    decoder=dict(
        _delete_=True, type="CrossTaskAttentionDecoder", channels=64, dims=(96, 64, 32), heads=2
    ),
    head=dict(num_convs=0),
)
