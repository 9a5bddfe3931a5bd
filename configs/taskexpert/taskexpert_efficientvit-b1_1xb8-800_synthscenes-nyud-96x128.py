# The quickstart recipe with the TaskExpert decoder in place of the baseline decoder: 8 experts
# of width 64 at each of EfficientViT-B1's four stages, a memory at stride 4, per-level
# supervision. Part of the README's SynthScenes decoder comparison (same backbone, schedule, seed).
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    decoder=dict(_delete_=True, type="TaskExpertDecoder", channels=64, num_experts=8, out_stride=4),
    tasks=_base_.synthscenes_nyud_tasks,
)
