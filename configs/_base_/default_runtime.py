# Runtime settings shared by every config: hooks, logging, checkpoints, environment.
default_scope = "vision_mtl"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # Checkpoints and the last_checkpoint pointer are written to a temp file, then renamed.
    checkpoint=dict(type="AtomicCheckpointHook", by_epoch=False, interval=1000, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [dict(type="TaskCheckHook"), dict(type="ProgressBarHook")]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
log_processor = dict(by_epoch=False, window_size=50)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
