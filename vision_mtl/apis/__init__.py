"""High-level entry points: build runners, load trained models, run inference."""

from vision_mtl.apis.inference import default_device, inference, init_model, read_image
from vision_mtl.apis.runner import build_test_runner, build_train_runner, load_config, write_json

__all__ = [
    "build_test_runner",
    "build_train_runner",
    "default_device",
    "inference",
    "init_model",
    "load_config",
    "read_image",
    "write_json",
]
