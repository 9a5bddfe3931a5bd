# Single-task ViT-B/16 models on NYUD-v2 (same recipe), the reference of Δm: each task's primary
# metric (mIoU %, depth RMSE m, normals mean error deg, boundary odsF %). These are the values the
# multitask literature quotes; their original single-task training runs are not public, so treat
# them as published figures, not as something this repository reproduced. Replace them with your
# own single-task runs for a like-for-like Δm.
single_task_baselines = dict(semseg=51.15, depth=0.5792, normals=19.77, edge=77.35)
