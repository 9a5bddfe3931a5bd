# What every dataset base shares: the samplers, the multitask collate (stacks each task's maps,
# keeps the per-image meta) and the evaluator. A dataset base sets its loaders' batch size,
# workers and dataset, and the evaluator's tasks and metric overrides.
val_dataloader = dict(
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="vision_mtl.multitask_collate"),
)
test_dataloader = val_dataloader
train_dataloader = dict(val_dataloader, sampler=dict(type="InfiniteSampler", shuffle=True))

# Testing scores boundaries by the full published protocol (101 thresholds); validation watches
# them with the fast, approximate mode (keys end in _approx). A dataset without an edge task
# drops that override (see cityscapes.py).
test_evaluator = dict(type="MultiTaskMetric")
val_evaluator = dict(test_evaluator, metric_overrides=dict(edge=dict(mode="fast")))
