# Single-task ViT-B/16 models on PASCAL-Context (same recipe), the reference of Δm: each task's
# primary metric (mIoU %, parts mIoU %, saliency maxF %, normals mean error deg, boundary odsF %).
# These are the values the multitask literature quotes; their original single-task training runs
# are not public, so treat them as published figures, not as something this repository
# reproduced. Replace them with your own single-task runs for a like-for-like Δm.
single_task_baselines = dict(
    semseg=80.25, human_parts=70.54, saliency=84.54, normals=13.57, edge=74.22
)
# What these figures are for: Δm is only meaningful against single-task models of the same
# backbone, dataset and task set. tests/test_config_baselines.py checks every config that uses
# them against its own model and data.
baselines_meta = dict(
    backbone="vit_base_patch16_384",
    dataset="PascalContextMTDataset",
    tasks=["semseg", "human_parts", "saliency", "normals", "edge"],
)
