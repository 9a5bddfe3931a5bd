# MultiMAE pretraining of ViT-Tiny/8 on SynthScenes RGB + depth + semantics (their exact depth
# and labels stand in for the paper's pseudo labels). Sized for the CPU demo: the 800 iterations
# took 19.5 minutes here (one thread, with a fine-tuning run on the machine's other core).
# Its encoder initializes configs/baseline/baseline_vit-tiny-p8_1xb8-800_synthscenes-nyud-96x128.py.
_base_ = [
    "../_base_/models/multimae_vit-tiny-p8.py",
    "../_base_/datasets/synthscenes_nyud.py",
    "../_base_/schedules/adamw-cosine_800_multimae.py",
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

# The runtime's hooks plus reconstruction pictures every 200 iterations.
custom_hooks = [
    dict(type="TaskCheckHook"),
    dict(type="ProgressBarHook"),
    dict(type="MultiMAEGridHook", interval=200, num_samples=4),
]
