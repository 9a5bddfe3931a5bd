# The quickstart (configs/quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py)
# as a base: the weighting comparison's configs (configs/weighting/) inherit it and set only
# model.weighting, so every strategy trains the same model on the same data, schedule and seed.
_base_ = [
    "../models/baseline_efficientvit-b1.py",
    "../datasets/synthscenes_nyud.py",
    "../tasks/synthscenes_nyud.py",
    "../schedules/adamw-poly_800.py",
    "../default_runtime.py",
]

model = dict(tasks=_base_.synthscenes_nyud_tasks)

# A strategy's own parameters (uncertainty's log variances, GradNorm's logits) are not weights:
# no weight decay on them.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"weighting.": dict(decay_mult=0.0)}))
