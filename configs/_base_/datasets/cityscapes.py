# Cityscapes: semseg (19 classes) and disparity. Training crops 512x1024 after random scaling;
# test images are padded (not resized) and scored at 1024x2048, disparity on pixels 0 < gt < 80
# as the published multitask numbers. Point data_root at the folder holding leftImg8bit, gtFine
# and disparity (docs/datasets.md).
data_root = "data/cityscapes"
train_pipeline = [
    dict(type="MultiTaskAugment", crop_size=(512, 1024)),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [dict(type="PackMultiTaskInputs")]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="vision_mtl.multitask_collate"),
    dataset=dict(
        type="CityscapesMTDataset", data_root=data_root, split="train", pipeline=train_pipeline
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="vision_mtl.multitask_collate"),
    dataset=dict(
        type="CityscapesMTDataset", data_root=data_root, split="val", pipeline=test_pipeline
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(
    type="MultiTaskMetric",
    tasks=["semseg", "disparity"],
    metric_overrides=dict(disparity=dict(max_depth=80.0)),
)
test_evaluator = val_evaluator
