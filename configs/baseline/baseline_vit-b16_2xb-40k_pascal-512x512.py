# Shared-encoder baseline on PASCAL-Context (multitask): ViT-B/16 with the baseline decoder, the
# InvPT recipe (Adam 2e-5, poly, 40k iterations) and PASCAL loss weights (REFERENCE.md §4).
# Download the timm weight vit_base_patch16_384.augreg_in21k_ft_in1k (model.safetensors) to the
# path below, or set model.backbone.pretrained=None.
_base_ = [
    "../_base_/datasets/pascal_context.py",
    "../_base_/schedules/adam-poly_40k.py",
    "../_base_/default_runtime.py",
    "../_base_/delta_m/single-task_vit-b16_pascal.py",
]

model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size=(512, 512)),
    backbone=dict(
        type="TimmBackbone",
        model_name="vit_base_patch16_384",
        out_indices=[2, 5, 8, 11],
        pretrained="pretrained/vit_base_patch16_384.augreg_in21k_ft_in1k.safetensors",
        model_kwargs=dict(img_size=(512, 512), drop_path_rate=0.15, dynamic_img_size=True),
    ),
    decoder=dict(type="BaselineDecoder", channels=256, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
    tasks=dict(
        semseg=dict(num_classes=21, loss_weight=1.0),
        human_parts=dict(num_classes=7, loss_weight=2.0),
        saliency=dict(loss_weight=5.0),
        normals=dict(loss_weight=10.0),
        edge=dict(loss_weight=50.0),
    ),
)
default_hooks = dict(checkpoint=dict(interval=4000))

# Δm against the published single-task ViT-B/16 figures (see the base file for their caveats).
val_evaluator = dict(baselines=_base_.single_task_baselines)
test_evaluator = dict(baselines=_base_.single_task_baselines)
