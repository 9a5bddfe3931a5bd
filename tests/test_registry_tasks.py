"""Registries resolve config types and explain failures; TaskSpecs decode and paint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vision_mtl.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from vision_mtl.tasks import TASKS, check_tasks, get_task, make_palette


def test_configs_resolve_without_imports():
    # locations= import the packages on first look-up.
    assert MODELS.get("BaselineDecoder").__name__ == "BaselineDecoder"
    assert MODELS.get("MaskedL1Loss").__name__ == "MaskedL1Loss"
    assert DATASETS.get("SynthScenesDataset").__name__ == "SynthScenesDataset"
    assert TRANSFORMS.get("PackMultiTaskInputs").__name__ == "PackMultiTaskInputs"
    assert METRICS.get("MultiTaskMetric").__name__ == "MultiTaskMetric"


def test_unknown_type_names_registry_and_close_matches():
    with pytest.raises(KeyError) as err:
        MODELS.build(dict(type="BaselineDecodr", in_channels=[8], in_strides=[8], tasks=["depth"]))
    message = str(err.value)
    assert "'model' registry" in message and "'BaselineDecoder'" in message
    with pytest.raises(KeyError, match="SynthScenesDataset"):
        DATASETS.build(dict(type="SynthSceneDataset"))


def test_registry_keeps_mmengines_contract():
    # `in` and `get` answer, they do not raise (mmengine, mmseg and user code rely on it).
    assert "MultiTaskModel" in MODELS and "NoSuchModel" not in MODELS
    assert MODELS.get("NoSuchModel") is None
    assert "SynthScenesDataset" in DATASETS and "vision_mtl.NoSuchDataset" not in DATASETS


def test_a_typo_in_the_model_type_is_explained_when_a_runner_builds_it(tiny_cfg):
    from vision_mtl.apis import build_train_runner

    tiny_cfg.model.type = "MultiTaskModl"
    with pytest.raises(KeyError, match=r"'MultiTaskModl'.*Did you mean 'MultiTaskModel'"):
        build_train_runner(tiny_cfg)
    tiny_cfg.model.type = "MultiTaskModel"
    tiny_cfg.model.decoder.type = "BaselinDecoder"
    with pytest.raises(KeyError, match=r"'BaselinDecoder'.*Did you mean 'BaselineDecoder'"):
        build_train_runner(tiny_cfg)


def test_every_task_spec_is_complete():
    assert {"semseg", "depth", "normals", "edge", "saliency", "human_parts", "disparity"} <= set(
        TASKS
    )
    for name, spec in TASKS.items():
        assert spec.name == name
        assert MODELS.get(spec.loss["type"]) is not None
        assert METRICS.get(spec.metric["type"]) is not None
        channels = spec.num_outputs(5)
        logits = torch.randn(2, channels, 6, 7)
        pred = spec.decode_logits(logits)
        if spec.decode == "unit":
            assert pred.shape == (2, 3, 6, 7)
            torch.testing.assert_close(pred.norm(dim=1), torch.ones(2, 6, 7))
        else:
            assert pred.shape == (2, 6, 7)
        if spec.decode in ("sigmoid", "softmax_fg"):
            assert float(pred.min()) >= 0 and float(pred.max()) <= 1
        picture = spec.colorize(pred[0].numpy() if spec.decode != "unit" else pred[0].numpy(), 5)
        assert picture.shape == (6, 7, 3) and picture.dtype == np.uint8


def test_class_tasks_need_num_classes():
    with pytest.raises(ValueError, match="semseg.*num_classes"):
        get_task("semseg").num_outputs(None)


def test_check_tasks_orders_and_rejects():
    assert check_tasks(["edge", "semseg"], ["semseg", "edge"]) == ["semseg", "edge"]
    with pytest.raises(KeyError, match="unknown task 'sematic'"):
        check_tasks(["sematic"], ["semseg"])
    with pytest.raises(KeyError, match="'depth'.*NYU"):
        check_tasks(["depth"], ["semseg"], where="NYU")


def test_palette_is_distinct_and_ignore_is_black():
    palette = make_palette(40)
    assert len({tuple(c) for c in palette}) == 40
    painted = get_task("semseg").colorize(np.array([[0, 1], [255, 2]]), 3)
    assert (painted[1, 0] == 0).all() and (painted[0, 1] != painted[1, 1]).any()


def test_one_channel_targets_take_the_prediction_layout():
    from vision_mtl.tasks import as_prediction_layout

    assert as_prediction_layout(np.zeros((1, 4, 5))).shape == (4, 5)
    assert as_prediction_layout(torch.zeros(1, 4, 5)).shape == (4, 5)
    assert as_prediction_layout(torch.zeros(3, 4, 5)).shape == (3, 4, 5)  # normals stay vectors
    assert as_prediction_layout(np.zeros((4, 5))).shape == (4, 5)
