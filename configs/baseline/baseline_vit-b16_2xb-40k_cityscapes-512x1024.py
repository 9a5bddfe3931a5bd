# Shared-encoder baseline on Cityscapes (semseg + disparity): ViT-B/16 with the baseline decoder
# and the InvPT schedule; equal loss weights. Download the timm weight
# vit_base_patch16_384.augreg_in21k_ft_in1k (model.safetensors) to the path below.
_base_ = [
    "../_base_/datasets/cityscapes.py",
    "../_base_/schedules/adam-poly_40k.py",
    "../_base_/default_runtime.py",
]

model = dict(
    type="MultiTaskModel",
    # Training crops are 512x1024; test images (1024x2048) are only padded to a multiple of 32.
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=32),
    backbone=dict(
        type="TimmBackbone",
        model_name="vit_base_patch16_384",
        out_indices=[2, 5, 8, 11],
        pretrained="pretrained/vit_base_patch16_384.augreg_in21k_ft_in1k.safetensors",
        model_kwargs=dict(img_size=(512, 1024), drop_path_rate=0.15, dynamic_img_size=True),
    ),
    decoder=dict(type="BaselineDecoder", channels=256, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
    tasks=dict(semseg=dict(num_classes=19, loss_weight=1.0), disparity=dict(loss_weight=1.0)),
)
default_hooks = dict(checkpoint=dict(interval=4000))
