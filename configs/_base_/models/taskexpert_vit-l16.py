# TaskExpert (Ye & Xu, ICCV 2023) with ViT-L/16 (ImageNet-21k pretrained, 384 fine-tuned, InvPT's
# backbone; features from blocks 6, 12, 18 and 24): a mixture of 8 experts of width 256 with
# per-task, per-sample gates at each tapped block, a multi-task memory read and updated at each, and
# the final memory brought to stride 4 for the heads. TaskExpert has no public code:
# docs/decoders.md lists the choices made where the paper is silent. Weights: timm's
# vit_large_patch16_384.augreg_in21k_ft_in1k, which timm fetches once into the Hugging Face cache
# (HF_HOME; offline, HF_HUB_OFFLINE=1 reads the cache). A local copy instead: --cfg-options
# model.backbone.pretrained=PATH; from scratch: model.backbone.pretrained=None
# (docs/pretrained_weights.md). A config adds the canvas (data_preprocessor size or size_divisor,
# backbone img_size) and the tasks.
# Everything else as the ViT-B/16 base: only the backbone differs.
_base_ = "./taskexpert_vit-b16.py"

model = dict(
    backbone=dict(
        model_name="vit_large_patch16_384",
        out_indices=[5, 11, 17, 23],
        pretrained="hf-hub:timm/vit_large_patch16_384.augreg_in21k_ft_in1k",
    )
)
