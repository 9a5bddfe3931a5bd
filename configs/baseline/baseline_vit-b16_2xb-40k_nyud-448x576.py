# Shared-encoder baseline on NYUD-v2: ViT-B/16 (ImageNet-21k pretrained, 384 fine-tuned) with the
# baseline decoder, the InvPT recipe (Adam 2e-5, poly, 40k iterations) and NYUD loss weights.
# Download the timm weight vit_base_patch16_384.augreg_in21k_ft_in1k (model.safetensors) to the
# path below, or set model.backbone.pretrained=None.
_base_ = [
    "../_base_/datasets/nyud.py",
    "../_base_/schedules/adam-poly_40k.py",
    "../_base_/default_runtime.py",
    "../_base_/delta_m/single-task_vit-b16_nyud.py",
]

model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size=(448, 576)),
    backbone=dict(
        type="TimmBackbone",
        model_name="vit_base_patch16_384",
        out_indices=[2, 5, 8, 11],
        pretrained="pretrained/vit_base_patch16_384.augreg_in21k_ft_in1k.safetensors",
        model_kwargs=dict(img_size=(448, 576), drop_path_rate=0.15, dynamic_img_size=True),
    ),
    decoder=dict(type="BaselineDecoder", channels=256, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
    tasks=dict(
        semseg=dict(num_classes=40, loss_weight=1.0),
        depth=dict(loss_weight=1.0),
        normals=dict(loss_weight=10.0),
        edge=dict(loss_weight=50.0),
    ),
)
default_hooks = dict(checkpoint=dict(interval=4000))

# Δm against the published single-task ViT-B/16 figures (see the base file for their caveats).
val_evaluator = dict(baselines=_base_.single_task_baselines)
test_evaluator = dict(baselines=_base_.single_task_baselines)
