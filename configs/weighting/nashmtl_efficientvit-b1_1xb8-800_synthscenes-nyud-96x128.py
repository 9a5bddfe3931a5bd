# Nash-MTL (Navon et al. 2022) on the backbone's parameters, on the quickstart: the same model,
# data, schedule and seed as configs/quickstart/, only the weighting differs (compared in README,
# "Loss weighting and gradient aggregation"; docs/weighting.md).
_base_ = ["../_base_/weighting/quickstart.py"]

model = dict(weighting=dict(type="NashMTL"))
