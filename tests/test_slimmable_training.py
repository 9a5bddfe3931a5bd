"""Sandwich-rule training of a slimmable multitask model: accumulation, one step, distillation."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_BACKBONES
from mmengine.logging import MessageHub

from vision_mtl.engine.optim import GuardedOptimWrapper
from vision_mtl.models import MultiTaskModel
from vision_mtl.models.slimmable.model import (
    configuration,
    full_configuration,
    get_configuration,
    make_model_slimmable,
    narrowest_configuration,
)
from vision_mtl.models.slimmable.sandwich import (
    cikd_loss,
    distillation_loss,
    sample_configurations,
    sandwich_generator,
    sandwich_train_step,
)

TASKS = dict(semseg=dict(num_classes=5), depth={}, normals={}, edge={})
SIZE = (32, 48)


def _model() -> MultiTaskModel:
    name, indices, kwargs = TINY_BACKBONES["vit"]
    torch.manual_seed(0)
    model = MultiTaskModel(
        backbone=dict(
            type="TimmBackbone", model_name=name, out_indices=indices, model_kwargs=kwargs
        ),
        decoder=dict(type="BaselineDecoder", channels=16),
        tasks=TASKS,
        data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=8),
    )
    return make_model_slimmable(model)


def _batch() -> dict:
    g = torch.Generator().manual_seed(3)
    h, w = SIZE
    inputs = [torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g) for _ in range(2)]
    normals = [
        torch.nn.functional.normalize(torch.randn(3, h, w, generator=g), dim=0) for _ in range(2)
    ]
    targets = dict(
        semseg=[torch.randint(0, 5, (h, w), generator=g) for _ in range(2)],
        depth=[torch.rand(1, h, w, generator=g) + 0.5 for _ in range(2)],
        normals=normals,
        edge=[torch.randint(0, 2, (h, w), generator=g) for _ in range(2)],
    )
    meta = [dict(name=f"s{i}", ori_shape=SIZE) for i in range(2)]
    return dict(inputs=inputs, targets=targets, meta=meta)


def _wrapper(model: torch.nn.Module) -> GuardedOptimWrapper:
    return GuardedOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))


def test_one_step_accumulates_every_configuration_then_updates_once(monkeypatch):
    model = _model()
    reference = copy.deepcopy(model)
    wrapper = _wrapper(model)
    seen: dict[str, torch.Tensor] = {}
    calls = []
    step = wrapper.step

    def recording_step(**kwargs):
        calls.append("step")
        seen.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        step(**kwargs)

    monkeypatch.setattr(wrapper, "step", recording_step)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log = sandwich_train_step(model, _batch(), wrapper, num_random=0)

    assert calls == ["step"]  # one optimizer step for both configurations
    assert set(log) >= {"loss", "loss_semseg", "sandwich/max/loss", "sandwich/min/loss"}
    assert log["loss"] == pytest.approx(log["sandwich/max/loss"] + log["sandwich/min/loss"])
    assert get_configuration(model) == full_configuration(model)  # restored
    # the summed gradient is that of the widest plus that of the narrowest configuration
    data = reference.data_preprocessor(_batch(), True)
    for config in (full_configuration(reference), narrowest_configuration(reference)):
        with configuration(reference, config):
            sum(reference(**data, mode="loss").values()).backward()
    for name, param in reference.named_parameters():
        torch.testing.assert_close(seen[name], param.grad, msg=name)
    # a head conv: the narrowest slice and the rest of the weight both received gradient
    grad = seen["heads.semseg.convs.0.0.weight"]
    inside = torch.zeros_like(grad, dtype=torch.bool)
    inside[:4, :4] = True  # 4 of 16 task channels from 4 of 16 decoder channels
    assert grad[inside].abs().sum() > 0 and grad[~inside].abs().sum() > 0
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # every parameter was updated
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # zeroed


def test_random_configurations_depend_only_on_seed_and_iteration():
    model = _model()

    def draw(seed: int, iteration: int) -> list:
        return sample_configurations(model, 4, sandwich_generator(seed, iteration))

    configs = draw(7, 11)
    assert configs == draw(7, 11)  # what every DDP rank computes
    assert configs != draw(7, 12) and configs != draw(8, 11)
    assert [name for name, _ in configs] == ["max", "min", "rand0", "rand1", "rand2", "rand3"]
    offered = {"encoder", "decoder", *TASKS}
    for _, config in configs:
        assert set(config) == offered
    torch.manual_seed(123)  # the global random state plays no part
    assert draw(7, 11) == configs
    hub = MessageHub.get_instance("vision_mtl_sandwich_test")  # as the train loop sets it
    hub.update_info("iter", 11)
    assert sample_configurations(model, 4, sandwich_generator(7)) == configs
    with pytest.raises(ValueError, match="num_random"):
        sample_configurations(model, -1, sandwich_generator())


def test_uniform_configurations_give_every_slot_one_intermediate_width():
    model = _model()
    configs = sample_configurations(model, 2, sandwich_generator(3, 5), num_uniform=40)
    # the per-slot draws come first and are unchanged by the uniform ones
    assert configs[:4] == sample_configurations(model, 2, sandwich_generator(3, 5))
    uniform = configs[4:]
    assert [name for name, _ in uniform] == [f"uni{i}" for i in range(40)]
    widths = [set(config.values()) for _, config in uniform]
    assert all(len(w) == 1 for w in widths)  # one width for every slot
    assert set.union(*widths) == {0.5, 0.75}  # the intermediate widths, both drawn in 40
    assert set(uniform[0][1]) == {"encoder", "decoder", *TASKS}
    with pytest.raises(ValueError, match="num_uniform"):
        sample_configurations(model, 0, sandwich_generator(), num_uniform=-1)


def test_distillation_terms_vanish_at_the_widest_configuration():
    model = _model()
    log = sandwich_train_step(
        model, _batch(), _wrapper(model), num_random=1, distill_weight=1.0, cikd_weight=1.0
    )
    assert log["sandwich/max/distill"] == 0.0 and log["sandwich/max/cikd"] == 0.0
    assert log["sandwich/min/distill"] > 0 and log["sandwich/min/cikd"] > 0
    assert "sandwich/rand0/distill" in log
    plain = _model()
    plain_log = sandwich_train_step(plain, _batch(), _wrapper(plain), num_random=1)
    assert not any(key.endswith(("/distill", "/cikd")) for key in plain_log)
    # the weighted terms are part of the narrower configuration's loss
    assert log["sandwich/min/loss"] == pytest.approx(
        plain_log["sandwich/min/loss"] + log["sandwich/min/distill"] + log["sandwich/min/cikd"],
        rel=1e-4,
    )


def test_loss_functions_and_refused_accumulation():
    teacher = dict(semseg=torch.randn(2, 5, 4, 6), depth=torch.randn(2, 1, 4, 6))
    teacher["edge"] = torch.randn(2, 1, 4, 6)
    assert distillation_loss(teacher, teacher) == 0
    student = {t: v + 0.5 * torch.randn_like(v) for t, v in teacher.items()}
    assert distillation_loss(student, teacher) > 0
    wide = [torch.randn(2, 32, 4, 6), torch.randn(2, 32, 2, 3)]
    assert cikd_loss(wide, wide) == 0
    assert cikd_loss([w[:, :8] for w in wide], wide) == 0  # the overlapping channels only
    assert cikd_loss([w[:, :8] + 1 for w in wide], wide) == pytest.approx(1.0)
    model = _model()
    wrapper = GuardedOptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=2
    )
    with pytest.raises(ValueError, match="accumulative_counts"):
        sandwich_train_step(model, _batch(), wrapper)
