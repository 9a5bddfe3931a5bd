"""Channel pruning on real tiny models: shapes kept, records restorable, bad settings refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONES, assert_onnx_parity, load_tool, run_schedulers

from vision_mtl.apis import init_model
from vision_mtl.compress import PruningError, apply_record, prune
from vision_mtl.export import check_graph
from vision_mtl.models import MultiTaskModel
from vision_mtl.models.builder import build_model
from vision_mtl.tasks import get_task
from vision_mtl.workflows.prune_report import format_report_table

TASKS = {"semseg": {"num_classes": 7}, "depth": {}, "normals": {}, "edge": {}}  # SynthScenes


DECODERS = {
    "baseline": dict(type="BaselineDecoder", channels=16),
    "cross_task": dict(type="CrossTaskAttentionDecoder", channels=16, dims=(24, 16, 8)),
    "task_expert": dict(type="TaskExpertDecoder", channels=16, num_experts=3),
}
SIZES = {"vit": (32, 48), "swin": (32, 64), "cnn": (32, 64)}


def _model(pruning=None, kind: str = "cnn", decoder: str = "baseline") -> MultiTaskModel:
    name, indices, kwargs = TINY_BACKBONES[kind]
    torch.manual_seed(0)
    backbone = dict(type="TimmBackbone", model_name=name, out_indices=indices, model_kwargs=kwargs)
    cfg = dict(type="MultiTaskModel", backbone=backbone, decoder=DECODERS[decoder], tasks=TASKS)
    return build_model(dict(cfg, pruning=pruning)).eval()


def _parameters(model, prefix: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def _assert_exports_with_parity(model, x, path) -> None:
    """ONNX export at opset 17, TensorRT operator check, ONNX Runtime within 1e-4."""
    from vision_mtl.export.onnx_export import TensorOutputs

    assert_onnx_parity(TensorOutputs(model), (x,), ["image"], path, list(model.tasks))


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("kind", ["vit", "swin", "cnn"])
def test_every_backbone_and_decoder_prunes_restores_and_exports(kind, decoder, tmp_path):
    model = _model(kind=kind, decoder=decoder)
    x = torch.randn(1, 3, *SIZES[kind])
    with torch.no_grad():
        shapes = {k: v.shape for k, v in model(x, mode="tensor").items()}
    before = {part: _parameters(model, part) for part in ("backbone", "decoder")}
    record = prune(model, torch.zeros(1, 3, *SIZES[kind]), 0.3, round_to=None)
    with torch.no_grad():
        out = model(x, mode="tensor")
    assert {k: v.shape for k, v in out.items()} == shapes
    for part, count in before.items():  # both the backbone and the decoder became narrower
        assert _parameters(model, part) < 0.65 * count, part
    if kind != "cnn":  # heads keep their count, each narrower; timm's attributes follow
        assert record["attention"]
        for name, attributes in record["attention"].items():
            attn = model.get_submodule(name)
            assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
            assert attributes["head_dim"] == attn.head_dim
    if kind == "swin":  # PatchMerging's 2×2-interleaved input follows its input's channels
        merge = model.backbone.model.layers[1].downsample
        assert (
            merge.reduction.in_features
            == 4 * model.backbone.model.layers[0].blocks[0].norm1.normalized_shape[0]
        )
    json.dumps(record)
    rebuilt = _model(pruning=record, kind=kind, decoder=decoder)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        again = rebuilt(x, mode="tensor")
    for task in out:
        torch.testing.assert_close(again[task], out[task])
    _assert_exports_with_parity(rebuilt, x, tmp_path / "pruned.onnx")


def _batches(size=(32, 64), n: int = 2) -> list[dict]:
    from vision_mtl.datasets import SynthScenesDataset
    from vision_mtl.datasets.transforms import multitask_collate

    pipeline = [dict(type="PackMultiTaskInputs")]
    data = SynthScenesDataset(num_samples=4 * n, image_size=size, pipeline=pipeline)
    return [multitask_collate([data[4 * i + j] for j in range(4)]) for i in range(n)]


@pytest.mark.parametrize(
    "kind,importance", [("cnn", "taylor"), ("cnn", "task-taylor"), ("vit", "task-taylor")]
)
def test_gradient_importances_keep_outputs_and_restore(kind, importance):
    model = _model(kind=kind)
    size = (32, 48) if kind == "vit" else (32, 64)
    x = torch.randn(1, 3, *size)
    shapes = {k: v.shape for k, v in model(x, mode="tensor").items()}
    params = sum(p.numel() for p in model.parameters())
    batches = _batches(size) if importance != "magnitude" else ()
    record = prune(model, torch.zeros(1, 3, *size), 0.4, importance, batches=batches, round_to=None)
    out = model(x, mode="tensor")
    assert {k: v.shape for k, v in out.items()} == shapes
    assert sum(p.numel() for p in model.parameters()) < 0.6 * params
    for task in TASKS:  # task output layers are never pruned
        spec = get_task(task)
        assert model.heads[task].predict.out_channels == spec.num_outputs(
            TASKS[task].get("num_classes")
        )
    # The record is plain data and rebuilds the same architecture on a fresh model.
    json.dumps(record)
    rebuilt = _model(pruning=record, kind=kind)
    if kind == "vit":  # heads keep their count, each narrower; timm's attn_dim follows
        attn = rebuilt.backbone.model.blocks[0].attn
        assert attn.attn_dim == attn.num_heads * attn.head_dim < 32
    rebuilt.load_state_dict(model.state_dict())
    again = rebuilt(x, mode="tensor")
    for task in out:
        torch.testing.assert_close(again[task], out[task])


@pytest.mark.parametrize("rank", ["magnitude", "task-taylor"])
def test_greedy_prunes_each_group_within_its_share_of_the_loss_budget(rank):
    import math

    from vision_mtl.compress.greedy import greedy_prune, task_losses

    model = _model(kind="vit", decoder="task_expert")
    batches = _batches(SIZES["vit"], 1)
    example = torch.zeros(1, 3, *SIZES["vit"])
    before, params = task_losses(model, batches), _parameters(model, "")
    lines = []
    budget = 0.02
    ranking = dict(rank=rank, grad_batches=_batches(SIZES["vit"], 1) if rank != "magnitude" else ())
    record = greedy_prune(
        model, example, 0.5, batches, budget, 0.25, round_to=None, log=lines.append, **ranking
    )
    after = task_losses(model, batches)
    ratios = record["greedy"]["ratios"]
    assert record["importance"] == "greedy" and record["greedy"]["rank"] == rank
    assert ratios and len(lines) > len(ratios)
    assert all(0 < r <= 0.5 for r in ratios.values())
    assert _parameters(model, "") < params
    # Each accepted group raised every task's loss by at most its share, and the shares sum to
    # the budget: the product of (1 + share) is at most exp(budget).
    for task in before:
        assert after[task] <= before[task] * math.exp(budget) * (1 + 1e-5), task
    rebuilt = _model(pruning=record, kind="vit", decoder="task_expert")
    rebuilt.load_state_dict(model.state_dict())
    assert task_losses(rebuilt, batches) == pytest.approx(after, rel=1e-5)
    # A tighter budget never prunes more.
    tight = _model(kind="vit", decoder="task_expert")
    greedy_prune(tight, example, 0.5, batches, 0.005, 0.25, round_to=None, **ranking)
    assert _parameters(tight, "") >= _parameters(model, "")


@pytest.mark.parametrize(
    "kind,decoder", [("vit", "task_expert"), ("swin", "baseline"), ("cnn", "cross_task")]
)
def test_greedy_counts_layer_macs_with_the_complexity_counter(kind, decoder):
    """Greedy pruning's per-layer MACs come from FlopCounterMode, as ``count_macs``'s do.

    The reference is the forward-hook counter greedy pruning had, with one miscount fixed: it
    divided by a layer's leading dimension, which for Swin's window attention is batch ×
    windows (32 times too few MACs here). Every other layer's figure is what greedy pruning
    used before. (Transposed convolutions, which it also miscounted, are checked by hand in
    test_complexity.py.)
    """
    from torch import nn

    from vision_mtl.complexity import count_macs
    from vision_mtl.compress.greedy import layer_macs

    model = _model(kind=kind, decoder=decoder)
    example = torch.zeros(2, 3, *SIZES[kind])
    hooked, images = {}, example.shape[0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            per_output = module.in_features
        else:
            per_output = module.weight[0].numel()  # in channels / groups × kernel
        hooked[module] = hooked.get(module, 0.0) + output.numel() / images * per_output

    layers = (nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    with torch.no_grad():
        model(example, mode="tensor")
    for handle in handles:
        handle.remove()
    counted = layer_macs(model, example)
    assert counted == hooked and len(counted) > 10
    # Per image, and inside the component totals of the one counter.
    single = count_macs(model, example[:1], mode="tensor")
    decoder_layers = set(model.decoder.modules())
    in_decoder = sum(v for m, v in counted.items() if m in decoder_layers)
    assert 0 < in_decoder <= single["decoder"]
    assert sum(counted.values()) <= single["total"]


def test_vit_heads_can_be_removed_whole_and_swin_heads_cannot(tmp_path):
    model = _model(kind="vit")
    x = torch.randn(1, 3, *SIZES["vit"])
    record = prune(model, torch.zeros(1, 3, *SIZES["vit"]), 0.25, round_to=None, head_ratio=0.5)
    for name, attributes in record["attention"].items():  # 2 heads of 16 → 1 head of 12
        attn = model.get_submodule(name)
        assert attn.num_heads == attributes["num_heads"] == 1
        assert attn.qkv.out_features == 3 * attn.head_dim == 3 * 12
    rebuilt = _model(pruning=record, kind="vit")
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected, again = model(x, mode="tensor"), rebuilt(x, mode="tensor")
    for task in expected:
        torch.testing.assert_close(again[task], expected[task])
    _assert_exports_with_parity(rebuilt, x, tmp_path / "heads.onnx")
    with pytest.raises(PruningError, match="relative position bias table"):
        prune(_model(kind="swin"), torch.zeros(1, 3, *SIZES["swin"]), 0.25, head_ratio=0.5)
    with pytest.raises(PruningError, match="no timm attention"):  # a CNN has no heads at all
        prune(_model(kind="cnn"), torch.zeros(1, 3, *SIZES["cnn"]), 0.25, head_ratio=0.5)


def test_task_taylor_keeps_a_channel_only_one_task_needs():
    from vision_mtl.compress.pruning import TaskTaylorImportance

    scores = {"a": torch.tensor([10.0, 0.0, 1.0]), "b": torch.tensor([0.0, 0.0, 1.0])}

    class Fake(TaskTaylorImportance):
        def __init__(self):
            self.gradients = {t: {} for t in scores}
            self.calls = iter(scores.values())
            self.taylor = lambda group: next(self.calls)

    combined = Fake()(None)
    # Summed Taylor scores (10, 0, 2) would rank channel 2 far below channel 0, though it is
    # all task b has; normalized per task, each task's vital channel is among the top two.
    assert set(combined.topk(2).indices.tolist()) == {0, 2}
    assert combined[2] >= combined[0]


def test_bad_records_are_refused():
    model = _model()
    record = prune(model, torch.zeros(1, 3, 32, 64), 0.3)
    with pytest.raises(PruningError, match="not a pruning record"):
        apply_record(_model(), {"format": "torch-pruning"})
    broken = dict(record, history=[["decoder.nothing", True, [0]]])
    with pytest.raises(PruningError, match="lacks"):
        apply_record(_model(), broken)
    with pytest.raises(PruningError, match=r"in \(0, 1\)"):
        prune(_model(), torch.zeros(1, 3, 32, 64), 1.0)
    with pytest.raises(PruningError, match="needs training batches"):
        prune(_model(), torch.zeros(1, 3, 32, 64), 0.3, "taylor")


@pytest.mark.parametrize("iters", [1, 2, 8])
def test_short_finetuning_keeps_a_valid_contiguous_schedule(iters, tmp_path):
    from conftest import QUICKSTART

    from vision_mtl.apis import load_config
    from vision_mtl.workflows.pruning_steps import check_finetune, finetune_config

    cfg = load_config(QUICKSTART)  # warm-up 0-50, poly 50-800: round() made the warm-up 0-0
    tuned = finetune_config(cfg, None, tmp_path / "pruned.pth", iters, tmp_path / "finetune")
    assert tuned.train_cfg.max_iters == iters and cfg.train_cfg.max_iters == 800
    bounds = [(s["begin"], s["end"]) for s in tuned.param_scheduler]
    assert all(0 <= begin < end <= iters for begin, end in bounds)
    assert bounds[0][0] == 0 and bounds[-1][1] == iters
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # contiguous
    types = [s["type"] for s in tuned.param_scheduler]
    # A warm-up needs two iterations to end at the full rate (mmengine's LinearLR over one
    # iteration applies its 1% start factor and never lifts it): with fewer than two per phase
    # the decay keeps the run; with eight the warm-up takes two (1/16 of 8 rounds to 0).
    assert types == (["PolyLR"] if iters < 4 else ["LinearLR", "PolyLR"])
    if iters == 8:
        assert bounds == [(0, 2), (2, 8)]
    lrs = run_schedulers(tuned.param_scheduler, iters)
    assert all(0 <= lr <= 1e-3 for lr in lrs) and max(lrs) == pytest.approx(1e-3), lrs
    if iters == 8:  # the warm-up starts at 1% of the rate and reaches it; then the decay
        assert lrs[:3] == pytest.approx([1e-5, 1e-3, 1e-3]) and lrs[3] < 1e-3
    # The tool's pre-flight check builds and steps the same schedule through mmengine.
    assert [(s.begin, s.end) for s in check_finetune(cfg, iters)] == bounds


def test_scaled_schedules_never_collapse_a_phase_that_fits():
    from vision_mtl.engine.schedules import scale_schedulers

    def phase(kind, begin, end, **kw):
        return dict(type=kind, by_epoch=False, begin=begin, end=end, **kw)

    schedules = {  # original length: schedulers (warm-ups, a constant tail, overlaps, gaps)
        40000: [phase("LinearLR", 0, 5), phase("PolyLR", 5, 40000)],
        800: [
            phase("LinearLR", 0, 10),
            phase("CosineAnnealingLR", 10, 600, T_max=590),
            phase("ConstantLR", 600, 800, factor=0.1),
            phase("CosineAnnealingMomentum", 0, 800),
        ],
        1000: [phase("LinearLR", 100, 200), phase("MultiStepLR", 300, 1000, milestones=[100, 600])],
    }
    for original, schedulers in schedules.items():
        tagged = [dict(s, tag=i) for i, s in enumerate(schedulers)]
        phases = len({p for s in schedulers for p in (s["begin"], s["end"])} | {0, original}) - 1
        for iters in [1, 2, 3, 4, 5, 8, 13, 100, original]:
            scaled = scale_schedulers(tagged, original, iters)
            assert scaled and (len(scaled) == len(schedulers) or iters < 2 * phases), iters
            mapped = {}
            for after in scaled:
                before = schedulers[after["tag"]]
                assert 0 <= after["begin"] < after["end"] <= iters, (before, after, iters)
                assert after["end"] - after["begin"] >= min(2, iters)  # a warm-up completes
                for key in ("begin", "end"):  # a shared boundary stays shared
                    assert mapped.setdefault(before[key], after[key]) == after[key]
                assert after.get("T_max", 1) >= 1 and min(after.get("milestones", [1])) >= 1
            if iters == original:
                assert [dict(s, tag=None) for s in scaled] == [
                    dict(s, tag=None) for s in schedulers
                ]
    # A scheduler that begins after the original run ended never acted: it is dropped.
    late = [phase("LinearLR", 0, 50), phase("PolyLR", 900, 1000)]
    assert [s["type"] for s in scale_schedulers(late, 800, 8)] == ["LinearLR"]


def test_finetuning_refuses_a_config_it_cannot_scale(tmp_path):
    from conftest import QUICKSTART

    from vision_mtl.apis import load_config
    from vision_mtl.workflows.pruning_steps import check_finetune, finetune_config

    cfg = load_config(QUICKSTART)
    with pytest.raises(PruningError, match="at least 1 iteration, got 0"):
        finetune_config(cfg, None, tmp_path / "p.pth", 0, tmp_path)
    epochs = load_config(QUICKSTART, {"param_scheduler.0.by_epoch": True})
    with pytest.raises(PruningError, match="'LinearLR' counts epochs"):
        finetune_config(epochs, None, tmp_path / "p.pth", 8, tmp_path)
    no_iters = load_config(
        QUICKSTART, {"train_cfg": dict(_delete_=True, type="EpochBasedTrainLoop", max_epochs=2)}
    )
    with pytest.raises(PruningError, match="train_cfg.max_iters is None"):
        finetune_config(no_iters, None, tmp_path / "p.pth", 8, tmp_path)
    unknown = load_config(QUICKSTART, {"param_scheduler.1.type": "PolyLRR"})
    with pytest.raises(PruningError, match="schedule for 8 iterations cannot run.*PolyLRR"):
        check_finetune(unknown, 8)


def tiny_config_and_checkpoint(tmp) -> tuple:
    """The tiny quickstart dumped to ``tmp/tiny.py`` and its initial weights in ``tmp/model.pth``.

    The schedule is the quickstart's own (a 50-iteration warm-up, then poly decay, over 800
    iterations): short fine-tuning must scale it without collapsing the warm-up.
    """
    from conftest import QUICKSTART, TINY_OPTIONS

    from vision_mtl.apis import load_config

    options = {k: v for k, v in TINY_OPTIONS.items() if k != "param_scheduler"}
    options["train_cfg.max_iters"] = 800
    cfg = load_config(QUICKSTART, options, work_dir=str(tmp / "work"))
    assert [s["end"] for s in cfg.param_scheduler] == [50, 800]
    config = tmp / "tiny.py"
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = init_model(config, None, device="cpu")
    checkpoint = tmp / "model.pth"
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    return config, checkpoint


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny quickstart, its checkpoint, and tools/prune.py run on it with fine-tuning.

    Two fine-tuning iterations of the 800-iteration schedule: the warm-up's end rounded to 0
    before, and mmengine refused the schedule after the pruning.
    """
    tmp = tmp_path_factory.mktemp("prune")
    config, checkpoint = tiny_config_and_checkpoint(tmp)
    out = tmp / "pruned"
    report = load_tool("prune").main(
        [str(config), str(checkpoint), "--ratio", "0.5", "--finetune-iters", "2"]
        + ["--importance", "task-taylor", "--grad-batches", "1"]
        + ["--out", str(out), "--latency-runs", "3", "--round-to", "0"]
        + ["--quantize", "--calib-samples", "2"]
    )
    return config, checkpoint, out, report


def test_prune_tool_reports_and_writes_restorable_checkpoints(tiny_run, tmp_path):
    config, _, out, report = tiny_run
    for stage in ("before", "pruned", "finetuned"):
        assert set(report[stage]) >= {"parameters", "macs", "ort_latency_ms", "metrics", "delta_m"}
    assert report["pruned"]["macs"] < 0.6 * report["before"]["macs"]
    assert report["before"]["delta_m"] == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["finetuned"]["macs"] == report["finetuned"]["macs"]
    # The checkpoints load with weights_only and rebuild through the config, in every tool.
    checkpoint = out / "pruned_finetuned.pth"
    meta = torch.load(checkpoint, weights_only=True)["meta"]
    assert meta["pruning"]["ratio"] == 0.5 and meta["pruning"]["importance"] == "task-taylor"
    model = init_model(config, checkpoint, device="cpu")
    assert sum(p.numel() for p in model.parameters()) == report["finetuned"]["parameters"]
    metrics = load_tool("test").main(
        [str(config), str(checkpoint), "--out", str(tmp_path / "metrics.json")]
    )
    assert metrics["model"]["depth/rmse"] == pytest.approx(
        report["finetuned"]["metrics"]["depth/rmse"], rel=1e-5
    )
    exported = load_tool("export").main(
        [str(config), str(checkpoint), "--out", str(tmp_path / "export"), "--parity-samples", "2"]
    )
    assert max(exported["max_abs_diff"].values()) <= 1e-4


def test_prune_then_quantize_reports_the_int8_stage_against_unpruned_fp32(tiny_run):
    _, _, out, report = tiny_run
    int8 = report["int8"]
    assert int8["parameters"] == report["finetuned"]["parameters"]  # the fine-tuned model, as is
    assert int8["onnx"] == str(out / "export" / "model_int8.onnx")
    assert check_graph(str(out / "export" / "model_int8.onnx")) == []
    assert np.isfinite(int8["delta_m"]) and int8["speedup"] > 0
    assert json.loads((out / "report.json").read_text())["int8"]["delta_m"] == int8["delta_m"]
    assert format_report_table(report, ["depth"])[-1].startswith("| int8 |")


def test_prune_tool_refuses_bad_settings_before_writing(tiny_run, tmp_path):
    config, checkpoint, _, _ = tiny_run
    tool = load_tool("prune")
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"in \(0, 1\), got 1.5"):
        tool.main([str(config), str(checkpoint), "--ratio", "1.5", "--out", str(out)])
    with pytest.raises(SystemExit, match="heads.depth.predict' is protected"):
        tool.main(
            [str(config), str(checkpoint), "--ratio", "0.3", "--out", str(out)]
            + ["--layer-ratio", "heads.depth.predict=0.5"]
        )
    protected = "backbone.model.stages.2.blocks.1.context_module.main.qkv.conv"  # config's list
    with pytest.raises(SystemExit, match=f"{protected}' is protected"):
        tool.main(
            [str(config), str(checkpoint), "--ratio", "0.3", "--out", str(out)]
            + ["--layer-ratio", f"{protected}=0.5"]
        )
    with pytest.raises(SystemExit, match="do not apply"):
        tool.main(
            [str(config), str(checkpoint), "--ratio", "0.3", "--out", str(out)]
            + ["--importance", "greedy", "--global"]
        )
    with pytest.raises(SystemExit, match="greedy-step"):
        tool.main(
            [str(config), str(checkpoint), "--ratio", "0.3", "--out", str(out)]
            + ["--importance", "greedy", "--greedy-step", "0.5"]
        )
    other = tmp_path / "other.pth"
    torch.save(dict(state_dict={"backbone.x": torch.zeros(1)}, meta={}), other)
    with pytest.raises(SystemExit, match="does not fit config"):
        tool.main([str(config), str(other), "--ratio", "0.3", "--out", str(out)])
    assert not out.exists()


def test_protected_patterns_are_not_pruned(tiny_run):
    config, checkpoint, _, _ = tiny_run
    model = init_model(config, checkpoint, device="cpu")
    attention = {
        n: m.weight.shape
        for n, m in model.named_modules()
        if "context_module" in n and hasattr(m, "weight")
    }
    patterns = list(model.cfg.pruning.protected)
    prune(model, torch.zeros(1, 3, 32, 64), 0.5, protected=patterns, round_to=None)
    after = {n: m.weight.shape for n, m in model.named_modules() if n in attention}
    assert attention and after == attention


def test_untraceable_modules_stop_with_a_clear_error(tiny_run):
    config, checkpoint, _, _ = tiny_run
    model = init_model(config, checkpoint, device="cpu")
    # Without its config's protected patterns, EfficientViT's linear attention (reshapes into
    # heads DepGraph cannot map) would be pruned inconsistently: refused, naming the remedy.
    with pytest.raises(PruningError, match="pruning.protected"):
        prune(model, torch.zeros(1, 3, 32, 64), 0.3, round_to=None)
