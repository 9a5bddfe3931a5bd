# RGB-D fine-tuning as MultiMAE does on NYUD-v2: depth is a second input modality, read by the
# pretrained depth input adapter (MultiMAEBackbone); the decoders see the RGB token positions.
# SynthScenes' depth input is its exact depth map, which is also the depth target: the depth task
# is then trivial and is left out of the RGB-D vs RGB comparison (docs/multimae.md).
_base_ = ["./baseline_vit-tiny-p8-mmae_1xb8-800_synthscenes-nyud-96x128.py"]

model = dict(backbone=dict(type="MultiMAEBackbone", in_modalities=("rgb", "depth")))
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
