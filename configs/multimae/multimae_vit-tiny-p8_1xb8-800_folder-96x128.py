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

optim_wrapper = dict(
    type="GuardedOptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type="CosineAnnealingLR", eta_min=1e-5, by_epoch=False, begin=40, end=800),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=800)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="AtomicCheckpointHook", by_epoch=False, interval=400, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [
    dict(type="TaskCheckHook"),
    dict(type="ProgressBarHook"),
    dict(type="MultiMAEGridHook", interval=200, num_samples=4),
]
