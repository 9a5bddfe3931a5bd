# The quickstart recipe on ResNet-18, the INT8-friendly edge candidate (issue 22, not final:
# chosen by one seed so far; docs/deploy.md). Same data, tasks, schedule and runtime as the
# quickstart, so Δm compares directly.
_base_ = [
    "../_base_/models/baseline_resnet18.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
)
