# The shared-encoder baseline: Swin-B (ImageNet-22k, window 12, 384; its four stages at strides
# 4-32) shared by all tasks through the baseline decoder (256 channels, output at stride 4) and a
# conv head per task. Weights: timm's swin_base_patch4_window12_384.ms_in22k_ft_in1k, which timm
# fetches once into the Hugging Face cache (HF_HOME; offline, HF_HUB_OFFLINE=1 reads the cache). A
# local copy instead: --cfg-options model.backbone.pretrained=PATH; from scratch:
# model.backbone.pretrained=None (docs/pretrained_weights.md). A config adds the canvas
# (data_preprocessor size or size_divisor, backbone img_size) and the tasks.
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor"),
    backbone=dict(
        type="TimmBackbone",
        model_name="swin_base_patch4_window12_384",
        out_indices=[0, 1, 2, 3],
        pretrained="hf-hub:timm/swin_base_patch4_window12_384.ms_in22k_ft_in1k",
        model_kwargs=dict(drop_path_rate=0.2),
    ),
    decoder=dict(type="BaselineDecoder", channels=256, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
)
