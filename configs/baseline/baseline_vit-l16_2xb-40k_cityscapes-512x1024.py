# The Cityscapes ViT-B/16 recipe with ViT-L/16 (features from blocks 6, 12, 18, 24). Download the
# timm weight vit_large_patch16_384.augreg_in21k_ft_in1k (model.safetensors) to the path below.
_base_ = ["./baseline_vit-b16_2xb-40k_cityscapes-512x1024.py"]

model = dict(
    backbone=dict(
        model_name="vit_large_patch16_384",
        out_indices=[5, 11, 17, 23],
        pretrained="pretrained/vit_large_patch16_384.augreg_in21k_ft_in1k.safetensors",
    )
)
