# InvPT (Ye & Xu, ECCV 2022) on NYUD-v2 with ViT-L/16 (blocks 6, 12, 18, 24): the cross-task attention decoder
# at InvPT's sizes (preliminary decoders of width 512, stages of 576/288/144 channels, 2 heads,
# output at stride 4, linear heads) and the InvPT recipe and loss weights of the baseline config.
_base_ = ["../baseline/baseline_vit-l16_2xb-40k_nyud-448x576.py"]

model = dict(
    decoder=dict(
        _delete_=True,
        type="CrossTaskAttentionDecoder",
        channels=512,
        dims=(576, 288, 144),
        heads=2,
        mlp_ratio=4.0,
        out_stride=4,
    ),
    head=dict(num_convs=0),
)
