"""Slimmable TaskExpert decoder: experts and memory at the decoder width, task paths per task."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from conftest import TINY_BACKBONES, assert_onnx_parity

from vision_mtl.models.builder import build_model
from vision_mtl.models.slimmable import SwitchableBatchNorm2d, channels_at, make_model_slimmable
from vision_mtl.models.slimmable.decoders import plan_decoder
from vision_mtl.models.slimmable.model import (
    configuration,
    full_configuration,
    get_configuration,
    narrowest_configuration,
    set_configuration,
    width_slots,
)
from vision_mtl.models.slimmable.slots import (
    SlotConcatConv2d,
    SlotConcatLinear,
    SlotConv2d,
    SlotLayerNorm,
)
from vision_mtl.models.slimmable.static import static_model

TASKS = dict(semseg=dict(num_classes=5), depth={}, normals={})
OUTPUTS = dict(semseg=5, depth=1, normals=3)
SIZES = dict(vit=(32, 48), cnn=(32, 64))
CHANNELS = 16
MIXED = dict(encoder=0.5, decoder=0.5, semseg=1.0, depth=0.25, normals=0.5)
KINDS = [("vit", "sample"), ("vit", "pixel"), ("cnn", "sample"), ("cnn", "pixel")]


def _cfg(kind: str, gate: str, **options) -> dict:
    name, indices, kwargs = TINY_BACKBONES[kind]
    backbone = dict(type="TimmBackbone", model_name=name, out_indices=indices, model_kwargs=kwargs)
    decoder = dict(type="TaskExpertDecoder", channels=CHANNELS, num_experts=2, gate=gate)
    decoder.update(options)
    return dict(type="MultiTaskModel", backbone=backbone, decoder=decoder, tasks=TASKS)


def _model(kind: str = "vit", gate: str = "sample", **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(_cfg(kind, gate, **options))


def _slim(kind: str = "vit", gate: str = "sample", **options) -> torch.nn.Module:
    """A converted tiny model; batch-norm statistics and biases are randomised per width."""
    model = make_model_slimmable(_model(kind, gate, **options)).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SwitchableBatchNorm2d):
                for name, buffer in module.named_buffers():
                    if name.startswith("running_mean"):
                        buffer.copy_(torch.randn(buffer.shape, generator=g))
                    elif name.startswith("running_var"):
                        buffer.copy_(torch.rand(buffer.shape, generator=g) + 0.5)
        for param in model.decoder.parameters():  # LayerNorms and gates start at 1 / 0 / equal
            param.add_(0.1 * torch.randn(param.shape, generator=g))
    return model


def _input(kind: str = "vit") -> torch.Tensor:
    return torch.randn(2, 3, *SIZES[kind], generator=torch.Generator().manual_seed(1))


def _targets(kind: str = "vit") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    size = SIZES[kind]
    normals = torch.nn.functional.normalize(torch.randn(2, 3, *size, generator=g), dim=1)
    return dict(
        semseg=torch.randint(0, 5, (2, *size), generator=g),
        depth=torch.rand(2, 1, *size, generator=g) + 0.5,
        normals=normals,
    )


@pytest.mark.parametrize(("kind", "gate"), KINDS)
def test_full_configuration_equals_unconverted_model(kind, gate):
    model = _model(kind, gate).eval()
    reference = copy.deepcopy(model)
    make_model_slimmable(model)
    assert get_configuration(model) == full_configuration(model)
    x = _input(kind)
    with torch.no_grad():
        with configuration(model, narrowest_configuration(model)):
            model(x, mode="tensor")  # visiting another width leaves the full one intact
        ours, theirs = model(x, mode="tensor"), reference(x, mode="tensor")
        assert list(ours) == list(theirs)
        for task in ours:
            assert (ours[task] - theirs[task]).abs().max() <= 1e-5, task
        # training mode: the per-level predictions (level_heads) agree as well
        model.train(), reference.train()
        ours = model.decoder(model.backbone(x)).aux_logits
        theirs = reference.decoder(reference.backbone(x)).aux_logits
    assert list(ours) == list(theirs) and ours
    for level in ours:
        for task in ours[level]:
            assert (ours[level][task] - theirs[level][task]).abs().max() <= 1e-5, (level, task)


def test_width_slots_and_layer_classes():
    model = _slim("vit", "sample")
    assert width_slots(model) == {
        "encoder": "shared",
        "decoder": "shared",
        "semseg": "per task",
        "depth": "per task",
        "normals": "per task",
    }
    decoder = model.decoder
    layer = decoder.layers[0]
    assert isinstance(layer.experts[0][0], SlotConv2d)
    assert (layer.experts[0][0].in_slot, layer.experts[0][0].out_slot) == ("encoder", "decoder")
    assert isinstance(layer.gates["depth"], SlotConcatLinear)
    assert layer.gates["depth"].in_blocks == (("encoder", 32), ("decoder", CHANNELS))
    assert (
        isinstance(layer.norms["depth"], SlotLayerNorm) and layer.norms["depth"].slot == "decoder"
    )
    assert decoder.upsample["depth"][0][0].in_slot == "decoder"
    assert decoder.refine["depth"][0].in_slot == decoder.refine["depth"][0].out_slot == "depth"
    assert model.heads["depth"].convs[0][0].in_slot == "depth"  # the head reads the task's feature
    assert isinstance(_slim("cnn", "pixel").decoder.layers[1].gates["semseg"], SlotConcatConv2d)


@pytest.mark.parametrize(("kind", "gate"), [("vit", "pixel"), ("cnn", "sample")])
def test_every_configuration_of_a_grid_runs_with_the_right_shapes(kind, gate):
    model = _slim(kind, gate)
    x = _input(kind)
    with torch.no_grad():
        full = model(x, mode="tensor")
    steps = [0.25, 1.0]
    for encoder, decoder, semseg, depth in itertools.product(steps, steps, steps, steps):
        config = dict(encoder=encoder, decoder=decoder, semseg=semseg, depth=depth, normals=0.5)
        with torch.no_grad(), configuration(model, config):
            out = model(x, mode="tensor")
            trace = model.decoder.route(model.backbone(x))
        assert {t: tuple(v.shape) for t, v in out.items()} == {
            t: (2, c, *SIZES[kind]) for t, c in OUTPUTS.items()
        }
        for task in TASKS:  # each task's feature has its own width; the memory the decoder's
            assert trace.features[task].shape[1] == channels_at(config[task], CHANNELS)
            assert trace.memory[-1][task].shape[1] == channels_at(decoder, CHANNELS)
            for gates in trace.gates:  # every expert and the memory, at every width
                assert gates[task].shape[:2] == (2, 3)
        narrow = [t for t in TASKS if min(config[t], decoder, encoder) < 1.0]
        for task in narrow:  # a narrower slot on a task's path really changes its output
            assert not torch.allclose(out[task], full[task], atol=1e-4), (config, task)
    assert get_configuration(model) == full_configuration(model)


def test_a_task_width_changes_only_that_task():
    model = _slim("vit", "pixel")
    x = _input()
    base = dict(encoder=0.5, decoder=0.5, semseg=0.75, depth=1.0, normals=0.25)
    with torch.no_grad():
        with configuration(model, base):
            before = model(x, mode="tensor")
        with configuration(model, dict(base, depth=0.25)):
            after = model(x, mode="tensor")
    assert torch.equal(before["semseg"], after["semseg"])
    assert torch.equal(before["normals"], after["normals"])
    assert not torch.allclose(before["depth"], after["depth"])


def test_sliced_weights_share_storage():
    model = _model("vit", "sample")
    params = {name: id(p) for name, p in model.named_parameters()}
    make_model_slimmable(model)
    assert params == {name: id(p) for name, p in model.named_parameters()}  # same objects
    set_configuration(model, dict(encoder=0.5, decoder=0.25, depth=0.5))
    decoder = model.decoder
    layer = decoder.layers[1]
    gate = layer.gates["depth"]
    convs = [
        (layer.experts[1][0], (4, 16, 1, 1)),  # 4 of 16 expert channels from 16 of 32
        (decoder.seed[0], (4, 16, 1, 1)),
        (decoder.level_heads[1]["depth"], (1, 4, 1, 1)),
        (decoder.upsample["depth"][0][0], (8, 4, 3, 3)),  # memory → the task's 8 of 16
        (decoder.refine["depth"][0], (8, 8, 3, 3)),
    ]
    views = [(conv.sliced_weight(), conv.weight, shape) for conv, shape in convs]
    views += [(gate.block_weights()[0], gate.weight, (3, 16))]  # the pooled level's block
    views += [(gate.block_weights()[1], gate.weight, (3, 4))]  # the memory's block
    for view, param, shape in views:
        assert view.shape == shape
        storage = view.untyped_storage().data_ptr()  # the memory block starts at an offset
        assert view._base is param and storage == param.untyped_storage().data_ptr()
    # the gate's active weight: level channels 0..15 and memory channels 32..35 of 48
    expected = torch.cat([gate.weight[:, :16], gate.weight[:, 32:36]], dim=1)
    assert torch.equal(gate.sliced_weight(), expected)
    norm = layer.norms["depth"]
    assert norm.active_channels == (4, 4)
    features = torch.randn(2, 5, 7, 4)
    expected = torch.nn.functional.layer_norm(features, (4,), norm.weight[:4], norm.bias[:4])
    assert torch.equal(norm(features), expected)  # statistics over the 4 active channels
    assert "decoder.refine.depth.1.running_mean_w0500" in model.state_dict()


def test_narrow_configuration_trains_only_the_first_channels_of_every_slot():
    model = _slim("vit", "sample").train()
    config = dict(encoder=0.25, decoder=0.25, semseg=0.5, depth=0.25, normals=1.0)
    set_configuration(model, config)
    losses = model(_input(), _targets(), mode="loss")
    assert any("expert" in key for key in losses)  # the per-level losses take part
    sum(losses.values()).backward()

    def assert_only(weight: torch.Tensor, *region: slice) -> None:
        inside = torch.zeros_like(weight, dtype=torch.bool)
        inside[region] = True
        assert weight.grad[inside].abs().sum() > 0
        assert weight.grad[~inside].abs().sum() == 0

    decoder = model.decoder
    layer = decoder.layers[0]
    assert_only(decoder.seed[0].weight, slice(0, 4), slice(0, 8))  # 4 of 16 from 8 of 32
    assert_only(decoder.seed[1].weight, slice(0, 4))
    assert_only(layer.experts[0][0].weight, slice(0, 4), slice(0, 8))
    gate = layer.gates["semseg"].weight  # every expert's row, from 8 level + 4 memory inputs
    inside = torch.zeros_like(gate, dtype=torch.bool)
    inside[:, :8] = inside[:, 32:36] = True
    assert gate.grad[inside].abs().sum() > 0 and gate.grad[~inside].abs().sum() == 0
    assert (gate.grad[:, :8].abs().sum(1) > 0).all()
    assert_only(layer.norms["depth"].weight, slice(0, 4))
    assert_only(decoder.level_heads[0]["semseg"].weight, slice(None), slice(0, 4))
    assert_only(decoder.upsample["semseg"][0][0].weight, slice(0, 8), slice(0, 4))
    assert_only(decoder.refine["semseg"][0].weight, slice(0, 8), slice(0, 8))
    assert_only(decoder.refine["depth"][0].weight, slice(0, 4), slice(0, 4))
    assert decoder.refine["normals"][0].weight.grad.abs().flatten(1).sum(1).gt(0).all()
    assert_only(model.heads["semseg"].convs[0][0].weight, slice(0, 8), slice(0, 8))
    assert_only(model.heads["depth"].predict.weight, slice(None), slice(0, 4))


def test_a_layer_outside_the_plan_is_refused():
    model = _model("vit", "sample")
    model.decoder.layers[0].norms["depth"] = torch.nn.GroupNorm(4, CHANNELS)
    with pytest.raises(ValueError, match=r"layers\.0\.norms\.depth: expected an nn\.LayerNorm"):
        plan_decoder(model.decoder, model.heads)
    model = _model("vit", "sample")
    model.decoder.extra = torch.nn.Conv2d(4, 4, 1)
    with pytest.raises(ValueError, match=r"decoder\.extra \(Conv2d\) is not slimmable"):
        make_model_slimmable(model)


def _assert_same_outputs(static, slim, config, x) -> None:
    with torch.no_grad(), configuration(slim, config):
        expected = slim(x, mode="tensor")
    with torch.no_grad():
        got = static(x, mode="tensor")
    assert list(got) == list(expected)
    for task in expected:
        assert (got[task] - expected[task]).abs().max() <= 1e-5, task


@pytest.mark.parametrize(("kind", "gate"), KINDS)
def test_static_model_computes_as_the_configuration(kind, gate):
    slim = _slim(kind, gate)
    example = torch.zeros(1, 3, *SIZES[kind])
    static = static_model(slim, MIXED, _cfg(kind, gate), example)
    _assert_same_outputs(static, slim, MIXED, _input(kind))
    shapes = static.pruning_record["weight_shapes"]
    level = slim.decoder.in_channels[0] // 2
    assert shapes["decoder.layers.0.experts.0.0"] == [8, level, 1, 1]
    assert shapes["decoder.layers.0.gates.depth"][:2] == [3, level + 8]
    norm = static.decoder.layers[0].norms["depth"]  # a plain LayerNorm over the 8 kept channels
    assert type(norm) is torch.nn.LayerNorm and norm.normalized_shape == (8,)
    assert shapes["decoder.refine.depth.0"][:2] == [4, 4 if kind == "vit" else 8]
    rebuilt = build_model(dict(_cfg(kind, gate), pruning=static.pruning_record)).eval()
    rebuilt.load_state_dict(static.state_dict(), strict=True)
    _assert_same_outputs(rebuilt, slim, MIXED, _input(kind))


def test_replaced_memory_without_level_heads():
    options = dict(memory_update="replace", supervise_levels=False)
    model = _model("vit", "pixel", **options).eval()
    reference = copy.deepcopy(model)
    make_model_slimmable(model)
    x = _input()
    with torch.no_grad():
        ours, theirs = model(x, mode="tensor"), reference(x, mode="tensor")
    for task in ours:
        assert (ours[task] - theirs[task]).abs().max() <= 1e-5, task
    slim = _slim("vit", "pixel", **options)
    static = static_model(slim, MIXED, _cfg("vit", "pixel", **options), torch.zeros(1, 3, 32, 48))
    _assert_same_outputs(static, slim, MIXED, x)


@pytest.mark.parametrize(("kind", "gate"), [("vit", "pixel"), ("cnn", "sample")])
def test_static_model_exports_to_onnx_with_parity(kind, gate, tmp_path):
    from vision_mtl.export.onnx_export import TensorOutputs

    slim = _slim(kind, gate)
    static = static_model(slim, MIXED, _cfg(kind, gate), torch.zeros(1, 3, *SIZES[kind]))
    x = _input(kind)[:1]
    assert_onnx_parity(TensorOutputs(static), (x,), ["image"], tmp_path / "static.onnx", TASKS)


def test_width_search_counts_taskexpert_macs_per_configuration():
    """TaskExpert's decoder MACs depend on the task widths: the search counts each configuration."""
    from vision_mtl.complexity import count_macs
    from vision_mtl.models.slimmable.model import slot_widths
    from vision_mtl.models.slimmable.search import (
        CountedMacs,
        macs_function,
        preference_configurations,
        search,
    )

    model = _slim("cnn")
    example = torch.zeros(1, 3, *SIZES["cnn"])
    macs = macs_function(model, example)
    assert isinstance(macs, CountedMacs)  # the additive table refuses this decoder
    with configuration(model, MIXED):
        expected = count_macs(model, example)["total"]
    assert macs(dict(get_configuration(model), **MIXED)) == expected
    candidates = preference_configurations(slot_widths(model), dict(semseg=3, depth=1, normals=1))
    budget = 0.5 * macs(full_configuration(model))
    result = search(candidates, macs, lambda c: (-sum(1 - w for w in c.values()), {}), budget)
    assert result.macs <= budget and all(row["macs"] <= budget for row in result.table)
