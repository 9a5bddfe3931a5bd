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
