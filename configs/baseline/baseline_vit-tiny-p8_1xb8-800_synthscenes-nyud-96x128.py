# The quickstart recipe with a plain ViT-Tiny (192-d, 12 blocks, 3 heads) on 8x8 patches,
# trained from scratch. About twice the quickstart's compute per iteration on CPU; from scratch it
# learns depth more slowly than the hybrid EfficientViT-B1 in the same budget.
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

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
    # The quickstart's loss weights (its config says why).
    tasks=dict(
        semseg=dict(num_classes=7, loss_weight=1.0),
        depth=dict(loss_weight=5.0),
        normals=dict(loss_weight=30.0),
        edge=dict(loss_weight=50.0),
    ),
)
