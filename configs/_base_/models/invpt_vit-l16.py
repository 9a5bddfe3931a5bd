# InvPT (Ye & Xu, ECCV 2022) with ViT-L/16 (ImageNet-21k pretrained, 384 fine-tuned, InvPT's
# backbone; features from blocks 6, 12, 18 and 24): the cross-task attention decoder at InvPT's
# sizes (preliminary decoders of width 512, stages of 576/288/144 channels, 2 heads, output at
# stride 4) and linear heads. Weights: timm's vit_large_patch16_384.augreg_in21k_ft_in1k, which timm
# fetches once into the Hugging Face cache (HF_HOME; offline, HF_HUB_OFFLINE=1 reads the cache). A
# local copy instead: --cfg-options model.backbone.pretrained=PATH; from scratch:
# model.backbone.pretrained=None (docs/pretrained_weights.md). A config adds the canvas
# (data_preprocessor size or size_divisor, backbone img_size) and the tasks.
# Everything else as the ViT-B/16 base: only the backbone differs.
_base_ = "./invpt_vit-b16.py"

model = dict(
    backbone=dict(
        model_name="vit_large_patch16_384",
        out_indices=[5, 11, 17, 23],
        pretrained="hf-hub:timm/vit_large_patch16_384.augreg_in21k_ft_in1k",
    )
)
