# MultiMAE pretraining of ViT-Tiny/8 on your own images with pseudo labels, as the paper does
# (depth and semantics predicted by off-the-shelf networks, stored next to the images):
#   root/rgb/<id>.png|jpg   root/depth/<id>.png (uint16 mm, or set depth_scale)
#   root/semseg/<id>.png (uint8 class ids, 255 = unlabelled)
# (vision_mtl/datasets/folder_pseudo.py). Point it at the folder with --data-root and set the
# pseudo labels' class count in both places below (--cfg-options
# train_dataloader.dataset.num_classes=N model.modalities.semseg.num_classes=N).
# Every image is resized to 96x128; schedule and model as the SynthScenes config
# (multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128.py, which gives the measured time).
_base_ = [
    "../_base_/models/multimae_vit-tiny-p8.py",
    "../_base_/schedules/adamw-cosine_800_multimae.py",
    "../_base_/default_runtime.py",
]

data_root = "data/multimae_folder"
num_classes = 40  # e.g. NYUD-40 pseudo labels; must match the semseg PNGs' ids
image_size = (96, 128)

model = dict(modalities=dict(semseg=dict(num_classes=num_classes)))

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="vision_mtl.multitask_collate"),
    dataset=dict(
        type="PseudoLabelFolderDataset",
        data_root=data_root,
        num_classes=num_classes,
        depth_scale=0.001,
        image_size=image_size,
        pipeline=[
            dict(type="RandomHorizontalFlip", prob=0.5),
            dict(type="PackMultiTaskInputs"),
        ],
    ),
)
# Pretraining has no metric: no validation or test loop (see the SynthScenes config).
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

# The runtime's hooks plus reconstruction pictures every 200 iterations.
custom_hooks = [
    dict(type="TaskCheckHook"),
    dict(type="ProgressBarHook"),
    dict(type="MultiMAEGridHook", interval=200, num_samples=4),
]
