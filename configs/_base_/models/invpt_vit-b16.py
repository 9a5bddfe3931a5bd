# InvPT (Ye & Xu, ECCV 2022) with ViT-B/16 (ImageNet-21k pretrained, 384 fine-tuned; features from
# blocks 3, 6, 9 and 12): the cross-task attention decoder at InvPT's sizes (preliminary decoders of
# width 512, stages of 576/288/144 channels, 2 heads, output at stride 4) and linear heads. Weights:
# timm's vit_base_patch16_384.augreg_in21k_ft_in1k, which timm fetches once into the Hugging Face
# cache (HF_HOME; offline, HF_HUB_OFFLINE=1 reads the cache). A local copy instead: --cfg-options
# model.backbone.pretrained=PATH; from scratch: model.backbone.pretrained=None
# (docs/pretrained_weights.md). A config adds the canvas (data_preprocessor size or size_divisor,
# backbone img_size) and the tasks.
model = dict(
    type="MultiTaskModel",
    # images smaller than the canvas sit in its centre, as InvPT pads them (PadImage)
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", pad_position="center"),
    backbone=dict(
        type="TimmBackbone",
        model_name="vit_base_patch16_384",
        out_indices=[2, 5, 8, 11],
        pretrained="hf-hub:timm/vit_base_patch16_384.augreg_in21k_ft_in1k",
        model_kwargs=dict(drop_path_rate=0.15, dynamic_img_size=True),
        norm_last=True,  # InvPT decodes the normalized last block, the others raw
    ),
    decoder=dict(
        type="CrossTaskAttentionDecoder",
        channels=512,
        dims=(576, 288, 144),
        heads=2,
        mlp_ratio=4.0,
        out_stride=4,
    ),
    head=dict(type="ConvHead", num_convs=0),  # linear heads, as InvPT
)
