"""TaskExpertDecoder: gates, memory, gradients, ONNX parity and argument checks."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_decoder_exports

from vision_mtl.models.decoders import TaskExpertDecoder

TASKS = ["semseg", "depth", "normals", "edge"]
PYRAMID = ([8, 16, 24, 32], [4, 8, 16, 32])


def pyramid_features(batch: int = 2, size=(64, 96)):
    return [
        torch.randn(batch, c, size[0] // s, size[1] // s) for c, s in zip(*PYRAMID, strict=True)
    ]


def decoder(**kwargs) -> TaskExpertDecoder:
    settings = dict(channels=16, num_experts=4, num_classes={"semseg": 5}) | kwargs
    return TaskExpertDecoder(*PYRAMID, TASKS, **settings)


@pytest.mark.parametrize("gate", ["sample", "pixel"])
def test_gates_are_per_sample_distributions_over_experts_and_memory(gate):
    torch.manual_seed(0)
    trace = decoder(gate=gate).eval().route(pyramid_features(batch=3))
    assert len(trace.gates) == 4
    for i, level in enumerate(trace.gates):
        for task, gates in level.items():
            grid = () if gate == "sample" else (16 // 2**i, 24 // 2**i)
            assert gates.shape == (3, 4 + 1, *grid), task  # 4 experts + the memory
            assert (gates >= 0).all()
            torch.testing.assert_close(gates.sum(dim=1), torch.ones(3, *grid))
            assert not torch.allclose(gates[0], gates[1])  # conditioned on the sample
    first = trace.gates[0]
    assert not torch.allclose(first["semseg"], first["depth"])  # and on the task


def test_memory_changes_across_depths_and_feeds_the_heads():
    trace = decoder().eval().route(pyramid_features())
    assert len(trace.memory) == 5  # the seed, then one update per level
    for task in TASKS:
        states = [m[task] for m in trace.memory]
        assert all(s.shape == (2, 16, 16, 24) for s in states)  # finest stride, 4
        for before, after in zip(states, states[1:]):
            assert not torch.allclose(before, after)
    assert not torch.allclose(trace.memory[-1]["depth"], trace.memory[-1]["edge"])


def test_memory_update_rules():
    """residual: m ← m + LN(f); replace: m ← LN(f) (LayerNorm at its initial identity affine)."""
    torch.manual_seed(0)  # LN(f) has unit deviation only while f's variance dwarfs LN's eps
    feats = pyramid_features()

    def normalized(x: torch.Tensor) -> bool:
        mean, std = x.mean(dim=1), x.std(dim=1, unbiased=False)
        return bool(mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-2)

    with torch.no_grad():
        kept = decoder(memory_update="residual").eval().route(feats).memory
        lost = decoder(memory_update="replace").eval().route(feats).memory
    for task in TASKS:
        for i in range(1, len(kept)):
            assert normalized(kept[i][task] - kept[i - 1][task])  # each update is LN(f)
            assert normalized(lost[i][task])  # only the latest LN(f) is kept
        assert not normalized(kept[-1][task])  # the residual memory accumulates


@pytest.mark.parametrize("gate", ["sample", "pixel"])
def test_every_expert_gate_and_head_receives_gradient(gate):
    model = decoder(gate=gate)
    trace = model.route(pyramid_features())
    loss = sum(f.square().mean() for f in trace.features.values())
    loss = loss + sum(v.square().mean() for s in trace.aux_logits.values() for v in s.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    for layer in model.layers:
        for expert in layer.experts:
            assert expert[0].weight.grad.abs().sum() > 0
        for gate in layer.gates.values():
            assert gate.weight.grad.abs().sum() > 0


def test_level_supervision_in_training_only_and_plain_vit_strides():
    model = TaskExpertDecoder([32] * 4, [16] * 4, ["depth", "edge"], channels=16)
    feats = [torch.randn(1, 32, 6, 8) for _ in range(4)]
    trace = model.route(feats)
    assert sorted(trace.aux_logits) == ["expert0", "expert1", "expert2", "expert3"]
    assert trace.features["depth"].shape == (1, 16, 24, 32)  # stride 16 memory, out stride 4
    assert not model.eval().route(feats).aux_logits  # inference skips the level heads
    silent = TaskExpertDecoder([32] * 2, [16] * 2, ["depth"], channels=8, supervise_levels=False)
    assert not silent([torch.randn(1, 32, 6, 8)] * 2).aux_logits


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(memory_update="gru"), "memory_update 'gru'"),
        (dict(gate="token"), "gate 'token'"),
        (dict(num_experts=0), "num_experts"),
        (dict(out_stride=3), "out_stride 3"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decoder(**kwargs)


def test_wrong_number_of_levels_is_named():
    with pytest.raises(ValueError, match="expected 4 feature maps"):
        decoder()(pyramid_features()[:3])


def test_per_pixel_gates_export_with_parity(tmp_path):
    # The per-sample gate's export is tested with every backbone in test_pruning.py.
    feats = tuple(pyramid_features(batch=1))
    assert_decoder_exports(decoder(gate="pixel").eval(), feats, TASKS, tmp_path / "decoder.onnx")
