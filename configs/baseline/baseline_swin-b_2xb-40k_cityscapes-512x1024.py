# The Cityscapes ViT-B/16 recipe with Swin-B (window 12, 384). Download the timm weight
# swin_base_patch4_window12_384.ms_in22k_ft_in1k (model.safetensors) to the path below.
_base_ = ["./baseline_vit-b16_2xb-40k_cityscapes-512x1024.py"]

model = dict(
    backbone=dict(
        _delete_=True,
        type="TimmBackbone",
        model_name="swin_base_patch4_window12_384",
        out_indices=[0, 1, 2, 3],
        pretrained="pretrained/swin_base_patch4_window12_384.ms_in22k_ft_in1k.safetensors",
        model_kwargs=dict(img_size=(512, 1024), drop_path_rate=0.2, strict_img_size=False),
    )
)
