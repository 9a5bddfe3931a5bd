# A ViT-Tiny (192-d, 12 blocks, 3 heads) with 8x8 patches, trained from scratch, shared by all
# tasks through the baseline decoder (fused features of four depths, learned upsampling to 1/4).
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=8),
    backbone=dict(
        type="TimmBackbone",
        model_name="vit_tiny_patch16_224",
        out_indices=[2, 5, 8, 11],
        pretrained=None,
        model_kwargs=dict(patch_size=8, img_size=(96, 128), dynamic_img_size=True),
    ),
    decoder=dict(type="BaselineDecoder", channels=64, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
)
