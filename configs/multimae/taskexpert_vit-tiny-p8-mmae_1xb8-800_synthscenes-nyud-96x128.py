# configs/taskexpert/taskexpert_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py initialized from the
# MultiMAE-pretrained encoder (see baseline_vit-tiny-p8-mmae_1xb8-800_synthscenes-nyud-96x128.py).
_base_ = [
    "../_base_/models/taskexpert_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    backbone=dict(
        pretrained="work_dirs/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128/iter_800.pth"
    ),
    tasks=_base_.synthscenes_nyud_tasks,
)
