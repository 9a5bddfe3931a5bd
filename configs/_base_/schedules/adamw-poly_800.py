# AdamW with linear warm-up and polynomial decay over 800 iterations (the multitask papers'
# schedule shape: poly 0.9, gradient clipping at L2 norm 10), sized for the CPU demo.
optim_wrapper = dict(
    type="GuardedOptimWrapper",  # OptimWrapper + a finite-gradient check
    optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type="PolyLR", eta_min=0.0, power=0.9, by_epoch=False, begin=50, end=800),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=800, val_interval=800)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=100, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # A checkpoint halfway, to resume from. Checkpoints and the last_checkpoint pointer are
    # written to a temp file, then renamed.
    checkpoint=dict(type="AtomicCheckpointHook", by_epoch=False, interval=400, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
