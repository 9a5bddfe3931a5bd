# The quickstart recipe on RepViT-M0.9, the edge family's reparameterized member (issue 22;
# docs/deploy.md): trained multi-branch, exported and quantization-aware-trained folded. Seed 0:
# +6.05 Delta-m (quickstart +5.50); INT8 at 0.76x fp32 latency at 96x128 and 0.52x at 384x512.
_base_ = [
    "../_base_/models/baseline_repvit-m0-9.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
)
