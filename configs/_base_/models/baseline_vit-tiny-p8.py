# The quickstart's baseline model with a plain ViT-Tiny (192-d, 12 blocks, 3 heads) on 8x8
# patches at 96x128, from scratch, in place of EfficientViT-B1: the encoder MultiMAE pretrains
# (configs/multimae/). Features from blocks 3, 6, 9 and 12.
_base_ = ["./baseline_efficientvit-b1.py"]

model = dict(
    data_preprocessor=dict(size_divisor=8),
    backbone=dict(
        _delete_=True,
        type="TimmBackbone",
        model_name="vit_tiny_patch16_224",
        out_indices=[2, 5, 8, 11],
        pretrained=None,
        model_kwargs=dict(patch_size=8, img_size=(96, 128), dynamic_img_size=True),
    ),
)
