# SynthScenes, PASCAL-like task set (semseg, human_parts, saliency, normals, edge).
image_size = (96, 128)
train_pipeline = [
    dict(type="RandomHorizontalFlip", prob=0.5),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [dict(type="PackMultiTaskInputs")]

train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="vision_mtl.multitask_collate"),
    dataset=dict(
        type="SynthScenesDataset",
        split="train",
        num_samples=4000,
        tasks="pascal",
        image_size=image_size,
        cache=True,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="vision_mtl.multitask_collate"),
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
# Testing scores boundaries by the full published protocol (101 thresholds).
test_evaluator = dict(
    type="MultiTaskMetric",
    tasks=["semseg", "human_parts", "saliency", "normals", "edge"],
    metric_overrides=dict(edge=dict(max_dist=0.0075)),
)
# Validation watches them with the fast, approximate mode (keys end in _approx).
val_evaluator = dict(test_evaluator, metric_overrides=dict(edge=dict(max_dist=0.0075, mode="fast")))
