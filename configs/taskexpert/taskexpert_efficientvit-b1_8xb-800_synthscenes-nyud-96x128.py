# The quickstart recipe with the TaskExpert decoder in place of the baseline decoder: 8 experts
# of width 64 at each of EfficientViT-B1's four stages, a memory at stride 4, per-level
# supervision. Part of the README's SynthScenes decoder comparison (same backbone, schedule, seed).
_base_ = ["../quickstart/baseline_efficientvit-b1_8xb-800_synthscenes-nyud-96x128.py"]

model = dict(
    decoder=dict(_delete_=True, type="TaskExpertDecoder", channels=64, num_experts=8, out_stride=4)
)
