# AdamW with linear warm-up and polynomial decay, iteration-based (the multitask papers' recipe
# shape: poly 0.9 decay, gradient clipping at L2 norm 10).
max_iters = 2000
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="PolyLR", eta_min=0.0, power=0.9, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
