# Aligned-MTL (Senushkin et al. 2023) on the backbone's parameters, on the quickstart: the same model, data, schedule and seed as
# configs/quickstart/, only the weighting differs (compared in README, "Loss weighting and
# gradient aggregation"; docs/weighting.md).
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
    weighting=dict(type="AlignedMTL"),
)
