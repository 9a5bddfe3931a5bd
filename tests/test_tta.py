"""Test-time augmentation: flip and multi-scale, averaged in logit space, never mirror-wrong."""

from __future__ import annotations

import pytest
import torch

from vision_mtl.models import MultiTaskModel
from vision_mtl.models.tta import check_tta

BACKBONE = dict(type="TimmBackbone", model_name="resnet18", out_indices=[1, 2, 3, 4])
TASKS = dict(semseg=dict(num_classes=5), depth={}, normals={}, edge={})


def _model(tta=None) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(
        backbone=BACKBONE,
        decoder=dict(type="BaselineDecoder", channels=16),
        tasks=TASKS,
        tta=tta,
        data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=32),
    ).eval()


def _predict(model, image: torch.Tensor) -> dict[str, torch.Tensor]:
    meta = [dict(ori_shape=tuple(image.shape[-2:]))]
    return model(image[None], mode="predict", meta=meta)[0]["pred"]


def _mirrored(pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A prediction seen in a mirror: maps flipped left-right, normals' x negated."""
    out = {task: value.flip(-1) for task, value in pred.items()}
    out["normals"] = out["normals"] * torch.tensor([-1.0, 1.0, 1.0])[:, None, None]
    return out


def test_flip_tta_predicts_the_mirror_image_of_a_mirrored_input():
    image = torch.randn(3, 64, 96)
    model = _model(dict(flip=True))
    direct, mirrored = _predict(model, image), _mirrored(_predict(model, image.flip(-1)))
    for task in ("depth", "normals", "edge"):
        torch.testing.assert_close(mirrored[task], direct[task], atol=1e-5, rtol=1e-4)
    assert torch.equal(mirrored["semseg"], direct["semseg"])
    # Without TTA the network itself is not mirror-symmetric: the check above can fail.
    plain = _model()
    assert not torch.allclose(
        _mirrored(_predict(plain, image.flip(-1)))["normals"], _predict(plain, image)["normals"]
    )


def test_multi_scale_tta_averages_views_at_the_input_size():
    image = torch.randn(3, 64, 96)
    model = _model(dict(flip=True, scales=[0.5, 1.0, 1.5]))
    pred = _predict(model, image)
    assert pred["semseg"].shape == (64, 96) and pred["normals"].shape == (3, 64, 96)
    norms = pred["normals"].norm(dim=0)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)
    single = _predict(_model(dict(scales=[1.0])), image)
    torch.testing.assert_close(single["depth"], _predict(_model(), image)["depth"])


@pytest.mark.parametrize(
    "tta, message",
    [(dict(flips=True), "unknown key"), (dict(scales=[0.0]), r"factors in \(0, 4\]")],
)
def test_bad_tta_settings_are_named(tta, message):
    with pytest.raises((KeyError, ValueError), match=message):
        check_tta(tta)
