# SynthScenes, PASCAL-like task set (semseg, human_parts, saliency, normals, edge).
# 2,000 training scenes in batches of 8: sized for the 800-iteration CPU schedule.
_base_ = ["./_common.py"]

image_size = (96, 128)
train_pipeline = [
    dict(type="RandomHorizontalFlip", prob=0.5),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [dict(type="PackMultiTaskInputs")]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    dataset=dict(
        type="SynthScenesDataset",
        split="train",
        num_samples=2000,
        tasks="pascal",
        image_size=image_size,
        cache=True,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(
        type="SynthScenesDataset",
        split="val",
        num_samples=200,
        tasks="pascal",
        image_size=image_size,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# 0.0075 of the image diagonal: the PASCAL-Context boundary tolerance.
test_evaluator = dict(
    tasks=["semseg", "human_parts", "saliency", "normals", "edge"],
    metric_overrides=dict(edge=dict(max_dist=0.0075)),
)
val_evaluator = test_evaluator  # plus _common.py's fast boundary mode
