"""Slimmable baseline decoder and heads: shared and per-task widths of a whole multitask model."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_BACKBONES

from vision_mtl.models import MultiTaskModel
from vision_mtl.models.slimmable import SlimLinear, make_slimmable, set_width
from vision_mtl.models.slimmable.decoders import (
    SlotBatchNorm2d,
    SlotConv2d,
    make_decoder_slimmable,
)
from vision_mtl.models.slimmable.model import (
    configuration,
    full_configuration,
    get_configuration,
    make_model_slimmable,
    narrowest_configuration,
    set_configuration,
    width_slots,
)

TASKS = dict(semseg=dict(num_classes=5), depth={}, normals={})
OUTPUTS = dict(semseg=5, depth=1, normals=3)
SIZES = dict(vit=(32, 48), cnn=(32, 64))


def _model(kind: str = "vit", decoder: str = "BaselineDecoder") -> MultiTaskModel:
    name, indices, kwargs = TINY_BACKBONES[kind]
    torch.manual_seed(0)
    return MultiTaskModel(
        backbone=dict(
            type="TimmBackbone", model_name=name, out_indices=indices, model_kwargs=kwargs
        ),
        decoder=dict(type=decoder, channels=16),
        tasks=TASKS,
    )


def _input(kind: str = "vit") -> torch.Tensor:
    return torch.randn(2, 3, *SIZES[kind], generator=torch.Generator().manual_seed(1))


def _slim(kind: str = "vit") -> MultiTaskModel:
    """A tiny model converted in one call (backbone, decoder and heads)."""
    return make_model_slimmable(_model(kind))


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_full_configuration_equals_unconverted_model(kind):
    model = _model(kind).eval()
    reference = copy.deepcopy(model)
    make_slimmable(model.backbone)
    make_model_slimmable(model)
    assert get_configuration(model) == full_configuration(model)
    x = _input(kind)
    with torch.no_grad():
        with configuration(model, narrowest_configuration(model)):
            model(x, mode="tensor")  # visiting another width leaves the full one intact
        ours, theirs = model(x, mode="tensor"), reference(x, mode="tensor")
    assert list(ours) == list(theirs)
    for task in ours:
        assert torch.equal(ours[task], theirs[task]), task


def test_mixed_configurations_keep_task_outputs_and_input_size():
    model = _slim().eval()
    assert width_slots(model) == {
        "encoder": "shared",
        "decoder": "shared",
        "semseg": "per task",
        "normals": "per task",
        "depth": "per task",
    }
    x = _input()
    configs = [
        dict(encoder=0.5, decoder=0.5, semseg=1.0, depth=0.25, normals=0.75),
        dict(encoder=1.0, decoder=0.25, semseg=0.25, depth=1.0, normals=0.5),
        narrowest_configuration(model),
    ]
    for config in configs:
        with torch.no_grad(), configuration(model, config):
            out = model(x, mode="tensor")
            feature = model.decoder(model.backbone(x)).features["semseg"]
        assert {t: tuple(v.shape) for t, v in out.items()} == {
            t: (2, c, *SIZES["vit"]) for t, c in OUTPUTS.items()
        }
        assert feature.shape[1] == round(16 * config["decoder"])  # the shared decoder width
        assert get_configuration(model) == full_configuration(model)  # restored
    twin = copy.deepcopy(model)  # a copy carries its own configuration
    set_configuration(twin, narrowest_configuration(twin))
    assert twin(x, mode="tensor")["depth"].shape == (2, 1, *SIZES["vit"])
    set_configuration(model, dict(semseg=0.5))  # a partial configuration keeps the other slots
    assert get_configuration(model) == dict(full_configuration(model), semseg=0.5)
    head = model.heads["semseg"]
    assert head.convs[0][0].active_channels == (16, 8)
    assert head.predict.active_channels == (8, 5)  # the output layer is never sliced


def test_sliced_weights_share_storage():
    model = _model()
    params = {name: id(p) for name, p in model.named_parameters()}
    make_slimmable(model.backbone)
    make_model_slimmable(model)
    assert params == {name: id(p) for name, p in model.named_parameters()}  # same objects
    lateral, head = model.decoder.lateral[0][0], model.heads["depth"]
    assert isinstance(lateral, SlotConv2d) and isinstance(model.decoder.fuse[1], SlotBatchNorm2d)
    set_configuration(model, dict(encoder=0.5, decoder=0.5, depth=0.25))
    for conv, shape in (
        (lateral, (8, 16, 1, 1)),
        (head.convs[0][0], (4, 8, 3, 3)),
        (head.predict, (1, 4, 1, 1)),
    ):
        weight = conv.sliced_weight()
        assert weight.shape == shape
        assert weight._base is conv.weight and weight.data_ptr() == conv.weight.data_ptr()
    # the fused levels keep the first 8 channels of each of the two 16-channel blocks
    fuse = model.decoder.fuse[0]
    expected = torch.cat([fuse.weight[:8, :8], fuse.weight[:8, 16:24]], dim=1)
    assert torch.equal(fuse.sliced_weight(), expected)
    assert "decoder.fuse.1.running_mean_w0500" in model.state_dict()  # statistics per width


def test_a_task_width_changes_only_that_task():
    model = _slim().eval()
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


def test_unknown_slot_and_untrained_width_are_refused():
    model = _slim()
    with pytest.raises(ValueError, match=r"unknown width slot 'edge'; slots: \['encoder'"):
        set_configuration(model, dict(decoder=0.5, edge=0.5))
    with pytest.raises(ValueError, match=r"width 0.3 is not offered for slot 'depth'.*0\.25"):
        set_configuration(model, dict(encoder=0.5, depth=0.3))
    with pytest.raises(ValueError, match="width half is not offered for slot 'semseg'"):
        set_configuration(model, dict(semseg="half"))
    with pytest.raises(ValueError, match="only trained widths"):
        with configuration(model, dict(encoder=0.6)):
            pass
    assert get_configuration(model) == full_configuration(model)  # nothing was changed
    set_width(model.backbone, 0.5)  # the backbone alone: the decoder refuses its features
    with pytest.raises(ValueError, match=r"encoder width 1.0 .* set_configuration"):
        model(_input(), mode="tensor")
    with pytest.raises(ValueError, match="already slimmable"):
        make_decoder_slimmable(model.decoder, model.heads)
    invpt = _model(decoder="CrossTaskAttentionDecoder")
    with pytest.raises(TypeError, match=r"CrossTaskAttentionDecoder is not slimmable yet.*Base"):
        make_model_slimmable(invpt)
    assert not isinstance(invpt.backbone.model.blocks[0].mlp.fc1, SlimLinear)  # left as it was


def test_narrowest_configuration_trains_only_the_first_channels():
    model = _slim()
    set_configuration(model, narrowest_configuration(model))  # every slot at 0.25
    x = _input()
    g = torch.Generator().manual_seed(2)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 32, 48, generator=g), dim=1)
    targets = dict(
        semseg=torch.randint(0, 5, (2, 32, 48), generator=g),
        depth=torch.rand(2, 1, 32, 48, generator=g) + 0.5,
        normals=normals,
    )
    sum(model(x, targets, mode="loss").values()).backward()

    def assert_only(weight: torch.Tensor, inside: torch.Tensor) -> None:
        assert weight.grad[inside].abs().sum() > 0
        assert weight.grad[~inside].abs().sum() == 0

    conv, predict = model.heads["semseg"].convs[0][0], model.heads["semseg"].predict
    inside = torch.zeros_like(conv.weight, dtype=torch.bool)
    inside[:4, :4] = True  # 4 of 16 task channels from 4 of 16 decoder channels
    assert_only(conv.weight, inside)
    inside = torch.zeros_like(predict.weight, dtype=torch.bool)
    inside[:, :4] = True  # every class, from the task's first 4 channels
    assert_only(predict.weight, inside)
    assert (predict.weight.grad[:, :4].abs().flatten(1).sum(1) > 0).all()
    lateral, fuse = model.decoder.lateral[0][0], model.decoder.fuse[0]
    inside = torch.zeros_like(lateral.weight, dtype=torch.bool)
    inside[:4, :8] = True  # 8 of the ViT's 32 channels at encoder width 0.25
    assert_only(lateral.weight, inside)
    inside = torch.zeros_like(fuse.weight, dtype=torch.bool)
    inside[:4, :4] = inside[:4, 16:20] = True  # the first 4 channels of each level's block
    assert_only(fuse.weight, inside)
