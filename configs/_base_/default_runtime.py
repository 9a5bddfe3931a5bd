# Runtime settings shared by every config: hooks, logging, environment. The default hooks
# (checkpoint and logging intervals) come with each schedule, as in mmseg.
default_scope = "vision_mtl"

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
