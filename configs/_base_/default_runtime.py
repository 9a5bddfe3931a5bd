# Runtime settings shared by every config: hooks, logging, environment. The default hooks
# (checkpoint and logging intervals) come with each schedule, as in mmseg.
default_scope = "vision_mtl"

custom_hooks = [dict(type="TaskCheckHook"), dict(type="ProgressBarHook")]

# True: losses, learning rate and validation metrics also go to tensorboard, with a picture of
# the first validation predictions at each validation (vision_mtl/engine/tensorboard.py). The
# event files land in <work_dir>/<timestamp>/vis_data/; `--cfg-options tensorboard=True`.
tensorboard = False

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
