# The shared-encoder baseline: Swin-B (ImageNet-22k, window 12, 384; its four stages at strides
# 4-32) shared by all tasks through the baseline decoder (256 channels, output at stride 4) and a
# conv head per task. Download the timm weight swin_base_patch4_window12_384.ms_in22k_ft_in1k
# (model.safetensors) to the path below, or set model.backbone.pretrained=None. A config adds the
# canvas (data_preprocessor size or size_divisor, backbone img_size) and the tasks.
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor"),
    backbone=dict(
        type="TimmBackbone",
        model_name="swin_base_patch4_window12_384",
        out_indices=[0, 1, 2, 3],
        pretrained="pretrained/swin_base_patch4_window12_384.ms_in22k_ft_in1k.safetensors",
        model_kwargs=dict(drop_path_rate=0.2),
    ),
    decoder=dict(type="BaselineDecoder", channels=256, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
)
