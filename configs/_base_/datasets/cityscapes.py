# Cityscapes: semseg (19 classes) and disparity. Training crops 512x1024 after random scaling;
# test images are padded (not resized) and scored at 1024x2048, disparity on pixels 0 < gt < 80
# as the published multitask numbers. Point data_root at the folder holding leftImg8bit, gtFine
# and disparity (docs/datasets.md).
_base_ = ["./_common.py"]

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
    dataset=dict(
        type="CityscapesMTDataset", data_root=data_root, split="train", pipeline=train_pipeline
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type="CityscapesMTDataset", data_root=data_root, split="val", pipeline=test_pipeline
    ),
)
test_dataloader = val_dataloader

test_evaluator = dict(
    tasks=["semseg", "disparity"], metric_overrides=dict(disparity=dict(max_depth=80.0))
)
# No edge task: _delete_ drops _common.py's fast boundary mode, which would name a task that is
# not evaluated, so validation scores as testing does.
val_evaluator = dict(
    test_evaluator, metric_overrides=dict(_delete_=True, disparity=dict(max_depth=80.0))
)
