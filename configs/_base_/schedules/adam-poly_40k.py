# The InvPT/TaskPrompter recipe (REFERENCE.md §4): Adam, lr 2e-5, weight decay 1e-6, poly 0.9
# decay over 40k iterations, gradient clipping at L2 norm 10.
optim_wrapper = dict(
    type="GuardedOptimWrapper",  # OptimWrapper + a finite-gradient check
    optimizer=dict(type="Adam", lr=2e-5, weight_decay=1e-6),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [dict(type="PolyLR", eta_min=0.0, power=0.9, by_epoch=False, begin=0, end=40000)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=40000, val_interval=4000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # A checkpoint at every validation. Checkpoints and the last_checkpoint pointer are written
    # to a temp file, then renamed.
    checkpoint=dict(type="AtomicCheckpointHook", by_epoch=False, interval=4000, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
