# The quickstart recipe with a plain ViT-Tiny (192-d, 12 blocks, 3 heads) on 8x8 patches,
# trained from scratch. About twice the quickstart's compute per iteration on CPU; from scratch it
# learns depth more slowly than the hybrid EfficientViT-B1 in the same budget.
_base_ = [
    "../_base_/models/baseline_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
)
