# Shared-encoder baseline on Cityscapes (semseg + disparity) with Swin-B: the InvPT recipe (Adam
# 2e-5, poly, 40k iterations) with equal loss weights.
_base_ = [
    "../_base_/models/baseline_swin-b.py",
    "../_base_/datasets/cityscapes.py",
    "../_base_/schedules/adam-poly_40k.py",
    "../_base_/default_runtime.py",
]

model = dict(
    # Training crops are 512x1024; test images (1024x2048) are only padded to a multiple of 32.
    data_preprocessor=dict(size_divisor=32),
    # strict_img_size=False: test images are larger than the 512x1024 training crops.
    backbone=dict(model_kwargs=dict(img_size=(512, 1024), strict_img_size=False)),
    tasks=dict(
        semseg=dict(num_classes=19, loss_weight=1.0),
        disparity=dict(loss_weight=1.0),
    ),
)
