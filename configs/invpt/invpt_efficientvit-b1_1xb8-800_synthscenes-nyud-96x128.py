# The quickstart recipe with the InvPT-style cross-task attention decoder in place of the baseline
# decoder, scaled down (preliminary width 64, stages 96/64/32) and with InvPT's linear heads.
# Part of the README's SynthScenes decoder comparison (same backbone, schedule, seed).
_base_ = [
    "../_base_/models/baseline_efficientvit-b1.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    decoder=dict(
        _delete_=True, type="CrossTaskAttentionDecoder", channels=64, dims=(96, 64, 32), heads=2
    ),
    head=dict(num_convs=0),
    tasks=_base_.synthscenes_nyud_tasks,
)
