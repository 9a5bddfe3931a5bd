# The ViT-B/16 recipe with Swin-B (ImageNet-22k, window 12, 384): its four stages at strides
# 4-32. Download the timm weight swin_base_patch4_window12_384.ms_in22k_ft_in1k
# (model.safetensors) to the path below.
_base_ = ["./baseline_vit-b16_2xb-40k_pascal-512x512.py"]

model = dict(
    backbone=dict(
        _delete_=True,
        type="TimmBackbone",
        model_name="swin_base_patch4_window12_384",
        out_indices=[0, 1, 2, 3],
        pretrained="pretrained/swin_base_patch4_window12_384.ms_in22k_ft_in1k.safetensors",
        model_kwargs=dict(img_size=(512, 512), drop_path_rate=0.2),
    )
)
