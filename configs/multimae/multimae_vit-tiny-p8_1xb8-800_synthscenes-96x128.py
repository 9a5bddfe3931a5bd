# MultiMAE pretraining of ViT-Tiny/8 on SynthScenes RGB + depth + semantics (their exact depth
# and labels stand in for the paper's pseudo labels). Sized for the CPU demo: measured 1.5 s per
# iteration (batch 8, OMP_NUM_THREADS=1, on a shared 2-core machine at load 6; steady state of
# a 30-iteration run), so the 800 iterations take about 20 minutes, less with 2 threads.
# Its encoder initializes configs/baseline/baseline_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py.
_base_ = [
    "../_base_/models/multimae_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/default_runtime.py",
]

train_dataloader = dict(
    batch_size=8,
    dataset=dict(tasks=["semseg", "depth"], num_samples=2000),
)
# Pretraining has no metric: no validation loop. The reconstruction pictures are written by
# MultiMAEGridHook instead (work_dir/multimae_vis/iter_<n>.png).
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

# The paper's AdamW (betas 0.9/0.95, weight decay 0.05) with warm-up and cosine decay; the
# learning rate is far above its 1e-4 x batch/256 so a few hundred CPU iterations learn.
optim_wrapper = dict(
    type="GuardedOptimWrapper",  # OptimWrapper + a finite-gradient check
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
