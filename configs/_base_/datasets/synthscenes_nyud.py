# SynthScenes, NYUD-like task set (semseg, depth, normals, edge), rendered on the fly.
# Scenes are a pure function of (seed, index); val uses a seed disjoint from train's.
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
        tasks="nyud",
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
        tasks="nyud",
        image_size=image_size,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# 0.011 of the image diagonal: the NYUD-v2 boundary tolerance.
test_evaluator = dict(
    tasks=["semseg", "depth", "normals", "edge"],
    metric_overrides=dict(edge=dict(max_dist=0.011)),
)
val_evaluator = test_evaluator  # plus _common.py's fast boundary mode
