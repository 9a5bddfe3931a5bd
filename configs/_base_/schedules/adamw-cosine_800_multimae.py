# MultiMAE pretraining schedule (shared by configs/multimae/multimae_*): no validation loop,
# checkpoints every 400 iterations (the configs add MultiMAEGridHook for pictures).
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
