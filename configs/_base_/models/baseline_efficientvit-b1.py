# EfficientViT-B1 (MIT, 4.6M parameters: ViT-Tiny-sized, linear attention, stages at strides
# 4-32) trained from scratch, shared by all tasks through the baseline decoder.
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=32),
    backbone=dict(
        type="TimmBackbone",
        model_name="efficientvit_b1",
        out_indices=[0, 1, 2, 3],
        pretrained=None,
    ),
    decoder=dict(type="BaselineDecoder", channels=64, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
)

# tools/prune.py never prunes these (fnmatch patterns of module names; task outputs are always
# kept): DepGraph does not trace the reshapes of EfficientViT's linear attention into heads.
pruning = dict(protected=["backbone.model.stages.*.context_module.*"])
