# RGB-D fine-tuning as MultiMAE does on NYUD-v2: depth is a second input modality, read by the
# pretrained depth input adapter (MultiMAEBackbone); the decoders see the RGB token positions.
# SynthScenes' depth input is its exact depth map, which is also the depth target: the depth task
# is then trivial and is left out of the RGB-D vs RGB comparison (docs/multimae.md).
_base_ = [
    "../_base_/models/baseline_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/tasks/synthscenes_nyud.py",
    "../_base_/schedules/adamw-poly_800.py",
    "../_base_/default_runtime.py",
]

model = dict(
    backbone=dict(
        type="MultiMAEBackbone",
        pretrained="work_dirs/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128/iter_800.pth",
        in_modalities=("rgb", "depth"),
    ),
    tasks=_base_.synthscenes_nyud_tasks,
)
train_pipeline = [
    dict(type="RandomHorizontalFlip", prob=0.5),
    dict(type="AddInputModality", task="depth", name="depth"),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="AddInputModality", task="depth", name="depth"),
    dict(type="PackMultiTaskInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
