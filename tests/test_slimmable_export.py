"""A width configuration of a slimmable model deployed as a plain static (pruned) network."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_BACKBONES, assert_onnx_parity

from vision_mtl.models.builder import build_model
from vision_mtl.models.slimmable import SwitchableBatchNorm2d, make_model_slimmable
from vision_mtl.models.slimmable.layers import SlimmableLayer
from vision_mtl.models.slimmable.model import configuration, narrowest_configuration
from vision_mtl.models.slimmable.static import static_model, width_record

TASKS = dict(semseg=dict(num_classes=5), depth={}, normals={})
SIZES = dict(vit=(32, 48), cnn=(32, 64))
FULL = dict(encoder=1.0, decoder=1.0, semseg=1.0, depth=1.0, normals=1.0)
MIXED = dict(encoder=0.5, decoder=0.5, semseg=1.0, depth=0.25, normals=0.5)


def _cfg(kind: str) -> dict:
    name, indices, kwargs = TINY_BACKBONES[kind]
    backbone = dict(type="TimmBackbone", model_name=name, out_indices=indices, model_kwargs=kwargs)
    decoder = dict(type="BaselineDecoder", channels=16)
    return dict(type="MultiTaskModel", backbone=backbone, decoder=decoder, tasks=TASKS)


def _slim(kind: str) -> torch.nn.Module:
    """A converted tiny model whose batch norms hold distinct statistics for every width."""
    torch.manual_seed(0)
    model = make_model_slimmable(build_model(_cfg(kind))).eval()
    g = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, SwitchableBatchNorm2d):
            for name, buffer in module.named_buffers():
                if name.startswith("running_mean"):
                    buffer.copy_(torch.randn(buffer.shape, generator=g))
                elif name.startswith("running_var"):
                    buffer.copy_(torch.rand(buffer.shape, generator=g) + 0.5)
    return model


def _example(kind: str) -> torch.Tensor:
    return torch.zeros(1, 3, *SIZES[kind])


def _input(kind: str) -> torch.Tensor:
    return torch.randn(2, 3, *SIZES[kind], generator=torch.Generator().manual_seed(1))


def _assert_same_outputs(static, slim, config, x) -> None:
    with torch.no_grad(), configuration(slim, config):
        expected = slim(x, mode="tensor")
    with torch.no_grad():
        got = static(x, mode="tensor")
    assert list(got) == list(expected)
    for task in expected:
        assert (got[task] - expected[task]).abs().max() <= 1e-5, task


def _weight_shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.state_dict().items()}


@pytest.mark.parametrize("config", [FULL, MIXED], ids=["full", "mixed"])
@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_static_model_computes_as_the_configuration_and_rebuilds_from_its_record(kind, config):
    slim = _slim(kind)
    static = static_model(slim, config, _cfg(kind), _example(kind))
    _assert_same_outputs(static, slim, config, _input(kind))
    slim_types = ("Slim", "Slot", "Switchable")
    assert not [m for m in static.modules() if isinstance(m, SlimmableLayer)]
    assert not [m for m in static.modules() if type(m).__name__.startswith(slim_types)]
    record = static.pruning_record
    json.dumps(record)
    assert record["configuration"] == config
    assert bool(record["history"]) == (config is MIXED)
    # the existing pruning-record path rebuilds the architecture; the weights load strictly
    rebuilt = build_model(dict(_cfg(kind), pruning=record)).eval()
    assert _weight_shapes(rebuilt) == _weight_shapes(static)
    rebuilt.load_state_dict(static.state_dict(), strict=True)
    _assert_same_outputs(rebuilt, slim, config, _input(kind))


def test_vit_attention_keeps_its_first_heads():
    slim = _slim("vit")
    attn = "backbone.model.blocks.0.attn"
    record = width_record(_cfg("vit"), MIXED, _example("vit"))
    assert record["attention"][attn] == dict(num_heads=1, head_dim=16, attn_dim=16)
    assert record["weight_shapes"][f"{attn}.qkv"] == [48, 16]  # q, k, v: one 16-channel head
    assert record["weight_shapes"][f"{attn}.proj"] == [16, 16]
    # narrowest: one head of 16 channels over an 8-channel embedding
    narrowest = narrowest_configuration(slim)
    static = static_model(slim, narrowest, _cfg("vit"), _example("vit"))
    assert static.get_submodule(attn).qkv.weight.shape == (48, 8)
    _assert_same_outputs(static, slim, narrowest, _input("vit"))


def test_width_record_refuses_a_slimmable_or_pruned_source():
    slim = _slim("cnn")
    with pytest.raises(ValueError, match="unconverted model"):
        width_record(slim, MIXED, _example("cnn"))
    record = width_record(_cfg("cnn"), MIXED, _example("cnn"))
    with pytest.raises(ValueError, match="already holds a pruning record"):
        width_record(dict(_cfg("cnn"), pruning=record), MIXED, _example("cnn"))


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_static_model_exports_to_onnx_with_parity(kind, tmp_path):
    from vision_mtl.export.onnx_export import TensorOutputs

    static = static_model(_slim(kind), MIXED, _cfg(kind), _example(kind))
    x = _input(kind)[:1]
    assert_onnx_parity(TensorOutputs(static), (x,), ["image"], tmp_path / "static.onnx", TASKS)


def test_init_model_loads_a_static_checkpoint_through_its_record(tmp_path):
    from mmengine.config import Config

    from vision_mtl.apis import init_model

    slim = _slim("cnn")
    static = static_model(slim, MIXED, _cfg("cnn"), _example("cnn"))
    config, checkpoint = tmp_path / "static.py", tmp_path / "static.pth"
    Config(dict(model=_cfg("cnn"))).dump(str(config))
    meta = dict(pruning=static.pruning_record)
    torch.save(dict(state_dict=static.state_dict(), meta=meta), checkpoint)
    model = init_model(config, checkpoint, device="cpu")  # strict load
    assert model.pruning_record["configuration"] == MIXED
    _assert_same_outputs(model, slim, MIXED, _input("cnn"))
