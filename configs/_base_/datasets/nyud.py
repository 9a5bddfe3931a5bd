# NYUD-v2 (multitask archive): semseg, depth, normals, edge. Training canvas 448x576; test images
# (425x560) are padded to the canvas by the model's data preprocessor, never resized, and scored
# at 425x560. Point data_root at the unpacked NYUDv2 folder (docs/datasets.md).
_base_ = ["./_common.py"]

data_root = "data/NYUDv2"
train_pipeline = [
    dict(type="MultiTaskAugment", crop_size=(448, 576)),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [dict(type="PackMultiTaskInputs")]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(type="NYUDv2Dataset", data_root=data_root, split="train", pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(type="NYUDv2Dataset", data_root=data_root, split="val", pipeline=test_pipeline),
)
test_dataloader = val_dataloader

# As the published evaluators score: a class absent from both prediction and ground truth counts
# as IoU 0 in the mean (InvPT's SemsegMeter); boundaries by SEISM's protocol (the edge PNG read as
# a segmentation) with 0.011 of the image diagonal, the NYUD-v2 tolerance.
test_evaluator = dict(
    tasks=["semseg", "depth", "normals", "edge"],
    metric_overrides=dict(semseg=dict(absent_class="zero"), edge=dict(max_dist=0.011)),
)
val_evaluator = test_evaluator  # plus _common.py's fast boundary mode
