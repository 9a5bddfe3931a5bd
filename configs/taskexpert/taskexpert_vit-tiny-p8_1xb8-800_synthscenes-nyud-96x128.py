# The SynthScenes TaskExpert config on the plain ViT-Tiny/8 of the baseline ViT-Tiny config, from
# scratch: the from-scratch side of the decoder comparison on the MultiMAE-pretrained ViT.
_base_ = [
    "../_base_/models/taskexpert_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    tasks=_base_.synthscenes_nyud_tasks,
)
