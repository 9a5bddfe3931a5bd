# TaskExpert (Ye & Xu, ICCV 2023) with ViT-B/16 (ImageNet-21k pretrained, 384 fine-tuned; features
# from blocks 3, 6, 9 and 12): a mixture of 8 experts of width 256 with per-task, per-sample gates
# at each tapped block, a multi-task memory read and updated at each, and the final memory brought
# to stride 4 for the heads. TaskExpert has no public code: docs/decoders.md lists the choices made
# where the paper is silent. Weights: timm's vit_base_patch16_384.augreg_in21k_ft_in1k, which timm
# fetches once into the Hugging Face cache (HF_HOME; offline, HF_HUB_OFFLINE=1 reads the cache). A
# local copy instead: --cfg-options model.backbone.pretrained=PATH; from scratch:
# model.backbone.pretrained=None (docs/pretrained_weights.md). A config adds the canvas
# (data_preprocessor size or size_divisor, backbone img_size) and the tasks.
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor"),
    backbone=dict(
        type="TimmBackbone",
        model_name="vit_base_patch16_384",
        out_indices=[2, 5, 8, 11],
        pretrained="hf-hub:timm/vit_base_patch16_384.augreg_in21k_ft_in1k",
        model_kwargs=dict(drop_path_rate=0.15, dynamic_img_size=True),
    ),
    decoder=dict(
        type="TaskExpertDecoder",
        num_experts=8,
        channels=256,
        memory_update="residual",
        supervise_levels=True,
        out_stride=4,
    ),
    head=dict(type="ConvHead", num_convs=1),
)
