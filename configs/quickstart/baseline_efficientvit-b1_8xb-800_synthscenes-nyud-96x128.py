# The quickstart's name before configs were named {gpus}xb{batch}: kept so `make demo`, tests and
# recorded runs (docs/benchmarks/*.json) keep resolving. The only config that inherits another.
_base_ = ["./baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py"]
