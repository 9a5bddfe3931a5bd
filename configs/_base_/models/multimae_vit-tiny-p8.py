# MultiMAE pretraining (Bachmann et al., ECCV 2022) of a ViT-Tiny (192-d, 12 blocks, 3 heads) on
# 8x8 patches: the encoder of configs/baseline/baseline_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py
# (same timm name and kwargs), so the pretrained encoder initializes that config's backbone.
# The paper's settings scaled down: 1/6 of the tokens visible (98 of 588 over three modalities
# at 224x224/16; here 96 of 3 x 12 x 16 = 576 at 96x128/8), Dirichlet alpha 1, decoders 256-d
# with one cross-attention layer and 2 transformer blocks, RGB loss on normalized patches.
model = dict(
    type="MultiMAE",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=8),
    encoder=dict(
        model_name="vit_tiny_patch16_224",
        model_kwargs=dict(patch_size=8, img_size=(96, 128), dynamic_img_size=True),
    ),
    modalities=dict(rgb=dict(), depth=dict(), semseg=dict(num_classes=7)),
    image_size=(96, 128),
    num_visible=96,
    alpha=1.0,
    decoder=dict(dim=256, depth=2, num_heads=8, mlp_ratio=4.0),
    norm_pix=True,
)
