"""Loss weighting and gradient aggregation (vision_mtl.losses.weighting, models.weighted_step).

Closed forms on a two-task problem with conflicting gradients, the integration's update on a real
tiny model, uncertainty's log variances, checkpointed state, DDP equality and mixed precision.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from ddp_weighting_worker import build, global_batch, train
from mmengine.logging import MessageHub

from vision_mtl.engine.optim import AutocastOptimWrapper, GuardedOptimWrapper
from vision_mtl.losses.weighting import IMTLG, MGDA, CAGrad, PCGrad, Uncertainty
from vision_mtl.registry import WEIGHTINGS

# Two conflicting task gradients (g1·g2 < 0) in a 2-D shared space.
G1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
G2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)


def _update(weighting, rows: torch.Tensor) -> torch.Tensor:
    gramian = rows @ rows.T
    weights = weighting.weights(gramian, torch.ones(len(rows)), step=0, jacobian=rows)
    return weighting.combine_rows(rows, weights)


def _pcgrad_two(g1, g2):
    def project(a, b):
        dot = a @ b
        return a - dot / (b @ b) * b if dot < 0 else a

    return project(g1, g2) + project(g2, g1)


def _mgda_two(g1, g2):
    alpha = ((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1)
    return alpha * g1 + (1 - alpha) * g2


def _imtlg_two(g1, g2):
    u1, u2 = g1 / g1.norm(), g2 / g2.norm()
    d, u = g1 - g2, u1 - u2
    alpha2 = (g1 @ u) / (d @ u)
    return (1 - alpha2) * g1 + alpha2 * g2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_task_rules_match_their_closed_forms(seed):
    rows = torch.stack([G1, G2])
    if seed:  # random conflicting pairs in 5-D as well
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(5, generator=g, dtype=torch.float64)
        b = -0.5 * a + torch.randn(5, generator=g, dtype=torch.float64) * 0.3
        rows = torch.stack([a, b])
        assert a @ b < 0
    g1, g2 = rows
    tasks = ["a", "b"]
    torch.testing.assert_close(_update(PCGrad(tasks), rows), _pcgrad_two(g1, g2))
    torch.testing.assert_close(
        _update(MGDA(tasks), rows), _mgda_two(g1, g2), atol=2e-3, rtol=2e-3
    )  # Frank–Wolfe stops at epsilon 1e-3
    torch.testing.assert_close(_update(IMTLG(tasks), rows), _imtlg_two(g1, g2))
    # IMTL-G's defining property: equal projections on both unit gradients
    d = _update(IMTLG(tasks), rows)
    assert d @ g1 / g1.norm() == pytest.approx(float(d @ g2 / g2.norm()), rel=1e-6)


def test_cagrad_matches_its_closed_form():
    """g0 = (0, .5), ‖g0‖ = .5; with c = .5 the worst-case direction is g1 (w = (1, 0), found by
    setting the derivative of g_w·g0 + c‖g0‖‖g_w‖ to zero), so d = g0 + c‖g0‖/‖g1‖·g1."""
    rows = torch.stack([G1, G2])
    expected = torch.tensor([0.25, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        _update(CAGrad(["a", "b"], c=0.5), rows), expected, atol=1e-4, rtol=0
    )
    # c = 0 is plain gradient averaging
    torch.testing.assert_close(
        _update(CAGrad(["a", "b"], c=0.0), rows), (G1 + G2) / 2, atol=1e-5, rtol=0
    )


def _sgd_step(model, lr=0.1, batch=None):
    optim = GuardedOptimWrapper(torch.optim.SGD(model.parameters(), lr=lr))
    MessageHub.get_current_instance().update_info("iter", 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logs = model.train_step(batch or global_batch(0, 0, 2), optim)
    after = dict(model.named_parameters())
    return {n: (before[n] - after[n].detach()) / lr for n in before}, logs


def _task_losses(model, batch, features=None):
    data = model.data_preprocessor(batch, True)
    feats = model.backbone(data["inputs"]) if features is None else features
    losses = model.loss_from_features(feats, data["inputs"], data["targets"])
    return model.task_loss_vector(losses), feats


@pytest.mark.parametrize("target", ["parameters", "representation"])
def test_step_applies_the_combined_gradient_to_the_backbone_and_the_sum_elsewhere(target):
    """IMTL-G on the tiny model: the backbone moves along Σ α_t g_t (α from the closed form of
    the independently computed task gradients); decoder and heads along Σ_t ∇L_t."""
    batch = global_batch(0, 0, 2)
    reference = build(dict(type="IMTLG", target=target))
    shared = [p for p in reference.backbone.parameters()]
    names = {id(p): n for n, p in reference.named_parameters()}
    losses, feats = _task_losses(reference, batch)
    wrt = shared if target == "parameters" else feats
    rows = [torch.autograd.grad(loss, wrt, retain_graph=True) for loss in losses]
    flat = torch.stack([torch.cat([g.reshape(-1) for g in r]) for r in rows]).double()
    weights = IMTLG(["semseg", "depth", "normals"]).weights(flat @ flat.T, losses, 0)
    # closed form of IMTL-G for T tasks: α_{2:T} = g1 Uᵀ (D Uᵀ)⁻¹, α1 = 1 − Σ α_{2:T}
    units = flat / flat.norm(dim=1, keepdim=True)
    d, u = flat[0] - flat[1:], units[0] - units[1:]
    tail = flat[0] @ u.T @ torch.linalg.inv(d @ u.T)
    torch.testing.assert_close(weights, torch.cat([1 - tail.sum(0, keepdim=True), tail]))
    if target == "parameters":
        combined = weights.float() @ flat.float()
        expected_backbone = torch.split(combined, [p.numel() for p in shared])
    else:
        combined = (weights.float() @ flat.float()).split([f.numel() for f in feats])
        grads = [c.view_as(f) for c, f in zip(combined, feats)]
        expected_backbone = torch.autograd.grad(feats, shared, grads, retain_graph=True)
    others = [p for p in reference.parameters() if id(p) not in {id(s) for s in shared}]
    expected_others = torch.autograd.grad(losses.sum(), others, allow_unused=True)

    moved, logs = _sgd_step(build(dict(type="IMTLG", target=target)), batch=batch)
    for p, g in zip(shared, expected_backbone):
        torch.testing.assert_close(moved[names[id(p)]], g.reshape(p.shape), atol=2e-5, rtol=2e-4)
    for p, g in zip(others, expected_others):
        g = torch.zeros_like(p) if g is None else g
        torch.testing.assert_close(moved[names[id(p)]], g, atol=2e-5, rtol=2e-4)
    assert float(logs["weight/semseg"]) == pytest.approx(float(weights[0]), rel=1e-4)
    assert -1 <= float(logs["cos/semseg-depth"]) <= 1


@pytest.mark.parametrize(
    "weighting",
    [dict(type="PCGrad"), dict(type="IMTLG", target="representation"), dict(type="Uncertainty")],
)
def test_gradient_accumulation_averages_the_combined_updates(weighting):
    """accumulative_counts=2: no update after the first iteration; after the second, the mean
    of the updates each half-batch would have made alone (SGD, the same starting weights)."""

    def run(batches, counts):
        model = build(weighting)
        optim = GuardedOptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.05), accumulative_counts=counts
        )
        optim.initialize_count_status(model, 0, len(batches))  # what the train loop does
        start = {k: v.clone() for k, v in model.state_dict().items()}
        moves = []
        for step, batch in enumerate(batches):
            MessageHub.get_current_instance().update_info("iter", step)
            model.train_step(batch, optim)
            moves.append({k: v - start[k] for k, v in model.state_dict().items()})
        return moves

    halves = [global_batch(0, 0, 2), global_batch(0, 2, 2)]
    accumulated = run(halves, 2)
    alone = [run([half], 1)[0] for half in halves]
    assert all(not v.any() for v in accumulated[0].values() if v.is_floating_point())
    for key, value in accumulated[1].items():
        if value.is_floating_point():
            expected = (alone[0][key] + alone[1][key]) / 2
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-4, msg=key)


def test_uncertainty_log_variances_move_as_the_closed_form_says():
    """∂/∂s (½e^{−s}L + ½s) = ½(1 − e^{−s}L): from s = 0, SGD raises s for a loss above 1 and
    lowers it below 1, by exactly lr·½(L − 1); with the losses held, s converges to log L."""
    model = build(dict(type="Uncertainty"))
    batch = global_batch(0, 0, 2)
    with torch.no_grad():
        losses, _ = _task_losses(model, batch)
    moved, logs = _sgd_step(model, batch=batch)
    expected = 0.5 * (1 - losses)  # gradient at s = 0; moved = −Δs/lr = gradient
    torch.testing.assert_close(moved["weighting.log_var"], expected, atol=1e-6, rtol=1e-5)
    assert float(logs["weight/depth"]) == pytest.approx(0.5)
    held = torch.tensor([4.0, 0.25, 1.0])
    weighting = Uncertainty(["a", "b", "c"])
    optim = torch.optim.SGD(weighting.parameters(), lr=0.5)
    for _ in range(300):
        optim.zero_grad()
        weighting.combine(held, held, 0).backward()
        optim.step()
    torch.testing.assert_close(weighting.log_var.detach(), held.log(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "weighting",
    [dict(type="DWA", interval=1), dict(type="FAMO"), dict(type="GradNorm"), dict(type="DBMTL")],
)
def test_state_is_checkpointed_and_a_resumed_run_continues_it(tiny_cfg, tmp_path, weighting):
    """4 iterations in one run equal 2 iterations, a resume, and 2 more: the weighting's state
    (DWA's window averages, FAMO's logits and Adam moments, GradNorm's logits and initial
    losses, DB-MTL's gradient averages) travels in the checkpoint."""
    from vision_mtl.apis import build_train_runner, load_config
    from vision_mtl.utils import read_checkpoint

    def run(work, max_iters, resume=False):
        # mmengine names a run's logger and message hub after the config file and the second it
        # started: a config file per run keeps runs started in the same second apart
        config = tmp_path / f"tiny_{weighting['type']}_{work.name}.py"
        tiny_cfg.dump(str(config))
        options = {"model.weighting": weighting, "train_cfg.max_iters": max_iters}
        options["train_cfg.val_interval"] = 100
        cfg = load_config(config, options, work_dir=str(work))
        resume_from = str(tmp_path / "half" / "iter_2.pth") if resume else False
        runner = build_train_runner(cfg, resume=resume_from)
        runner.train()
        return runner

    run(tmp_path / "full", 4)
    run(tmp_path / "half", 2)
    half = read_checkpoint(tmp_path / "half" / "iter_2.pth")["state_dict"]
    state = {k: v for k, v in half.items() if k.startswith("weighting.")}
    assert state, "the weighting's state is in the checkpoint"
    resumed = run(tmp_path / "resumed", 4, resume=True)
    full = read_checkpoint(tmp_path / "full" / "iter_4.pth")["state_dict"]
    again = resumed.model.state_dict()
    for key, value in full.items():
        if key.startswith("weighting."):
            if isinstance(value, dict):  # DB-MTL's extra state
                assert value["steps"] == again[key]["steps"] == 4
                torch.testing.assert_close(again[key]["average"], value["average"])
            else:
                torch.testing.assert_close(again[key], value, msg=key)
    log = next((tmp_path / "resumed").glob("*/*.log")).read_text()
    assert "weight/semseg:" in log  # the per-task weights reach the training log
    if weighting["type"] in ("GradNorm", "DBMTL"):
        assert "cos/semseg-depth:" in log
    if weighting["type"] == "DWA":
        assert int(full["weighting.num_averages"]) == 4
        assert not torch.equal(full["weighting.averages"][0], full["weighting.averages"][1])
    if weighting["type"] == "FAMO":
        assert int(full["weighting.adam_steps"]) == 4
        assert full["weighting.logits"].abs().sum() > 0


def _torchrun_worker(
    weighting_type: str, target: str, out, options: str = ""
) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0",
        str(ROOT / "tests/ddp_weighting_worker.py"), weighting_type, target, str(out), options,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "weighting_type,target",
    [
        ("PCGrad", "parameters"),
        ("PCGrad", "representation"),
        ("IMTLG", "representation"),
        ("Uncertainty", "-"),
    ],
)
def test_two_process_ddp_equals_one_process_on_the_global_batch(tmp_path, weighting_type, target):
    """Parameters within 1e-5 after 3 steps; and, since the backbone moves little in 3 SGD steps,
    every tensor's *update* within 1e-3 of the single-process update (a missing reduction of the
    task gradients or of their Gramian shows as several percent)."""
    done = _torchrun_worker(weighting_type, target, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    weighting = dict(type=weighting_type)
    if target != "-":
        weighting["target"] = target
    model = build(weighting)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    single = train(model, model, 0, 4)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key, value in single.items():
        for rank in ranks:
            torch.testing.assert_close(rank[key], value, atol=1e-5, rtol=0, msg=key)
        if value.is_floating_point() and not torch.equal(value, initial[key]):
            step = value - initial[key]
            for rank in ranks:
                relative = float((rank[key] - initial[key] - step).norm() / step.norm())
                assert relative < 1e-3, f"{key}: update differs by {relative:.2%}"
    backbone = [k for k in single if k.startswith("backbone.") and single[k].is_floating_point()]
    assert any(not torch.equal(single[k], initial[k]) for k in backbone)


def _train_without_non_finite_steps(model, optim, steps: int = 4) -> None:
    hub = MessageHub.get_current_instance()
    for step in range(steps):
        hub.update_info("iter", step)
        logs = model.train_step(global_batch(step, 0, 2), optim)
        assert all(math.isfinite(float(v)) for v in logs.values()), logs
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    "weighting_type,target,options",
    [("Uncertainty", "-", "find_unused"), ("PCGrad", "representation", "train")],
)
def test_ddp_runs_with_unused_parameter_search_and_keeps_batchnorm_buffers_in_step(
    tmp_path, weighting_type, target, options
):
    """Uncertainty's log variances are used inside the DDP forward (find_unused_parameters
    needs that); a gradient method's forward bypasses the wrapper but still receives rank 0's
    BatchNorm statistics at every step, as DDP's own forward gives them (rank 1 starts with
    running means of 5: after 3 steps they are rank 0's but for the last batch's update, where
    without the broadcast they would still be about 5·0.9³ = 3.6)."""
    done = _torchrun_worker(weighting_type, target, tmp_path, options)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key, value in ranks[0].items():
        if options == "train" and key.endswith(("running_mean", "running_var")):
            assert float((ranks[1][key] - value).abs().max()) < 0.5, key
        else:
            torch.testing.assert_close(ranks[1][key], value, atol=1e-5, rtol=0, msg=key)
    assert any(k.endswith("running_mean") for k in ranks[0])


@pytest.mark.parametrize(
    "weighting", [dict(type="PCGrad"), dict(type="MGDA", target="representation")]
)
def test_bf16_autocast_trains_a_gradient_method_without_non_finite_steps(weighting):
    model = build(weighting).train()
    optim = AutocastOptimWrapper(
        dtype="bfloat16", optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3)
    )
    _train_without_non_finite_steps(model, optim)


@pytest.mark.parametrize(
    "weighting", [dict(type="PCGrad"), dict(type="IMTLG", target="representation")]
)
def test_scaled_task_gradients_are_unscaled_before_they_are_combined(weighting):
    """A fixed loss scale of 2^10 (a power of two: scaling is exact) gives the unscaled run's
    parameters: the task gradients are unscaled before combining, and the combined gradient is
    scaled back for the scaler to unscale once."""
    results = []
    for loss_scale in (None, 1024.0):
        model = build(weighting)
        optim = AutocastOptimWrapper(
            dtype="bfloat16",
            loss_scale=loss_scale,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        )
        for step in range(2):
            MessageHub.get_current_instance().update_info("iter", step)
            model.train_step(global_batch(step, 0, 2), optim)
        results.append(model.state_dict())
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_an_overflowing_scaled_step_is_skipped_and_the_scale_backs_off():
    """fp16 autocast with a scale of 2^40: the fp16 backward overflows, the task gradients are
    non-finite, the combined gradient too, so the scaler skips the step and halves the scale."""
    model = build(dict(type="PCGrad"))
    optim = AutocastOptimWrapper(
        dtype="float16",
        loss_scale=dict(init_scale=2.0**40),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    MessageHub.get_current_instance().update_info("iter", 0)
    model.train_step(global_batch(0, 0, 2), optim)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert optim.loss_scaler.get_scale() == 2.0**39
    optim.loss_scaler.update(2.0**8)
    MessageHub.get_current_instance().update_info("iter", 1)
    model.train_step(global_batch(1, 0, 2), optim)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 GradScaler needs CUDA")
def test_fp16_grad_scaler_trains_a_gradient_method_on_cuda():  # pragma: no cover - GPU only
    from mmengine.optim import AmpOptimWrapper

    model = build(dict(type="PCGrad")).train().cuda()
    optim = AmpOptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    _train_without_non_finite_steps(model, optim)


def test_every_strategy_is_registered_and_refuses_bad_settings():
    names = set(WEIGHTINGS.module_dict)
    assert {
        "Fixed", "Uncertainty", "DWA", "RLW", "LogSum", "DBMTL", "FAMO", "PCGrad", "CAGrad",
        "IMTLG", "NashMTL", "AlignedMTL", "MGDA", "UPGrad", "GradNorm",
    } <= names  # fmt: skip
    with pytest.raises(KeyError, match="Did you mean 'PCGrad'"):
        build(dict(type="PCgrad"))
    with pytest.raises(ValueError, match="target='parameters'"):
        build(dict(type="DBMTL", target="representation"))
    with pytest.raises(ValueError, match="target must be one of"):
        build(dict(type="MGDA", target="decoder"))
    with pytest.raises(ValueError, match="differs from the model's tasks"):
        build(dict(type="DWA", tasks=["depth"]))


def test_fixed_weighting_adds_nothing_to_the_model_or_its_checkpoints():
    model = build(None)
    assert model.weighting.is_fixed and model.ddp_wrapper is None
    assert not [k for k in model.state_dict() if k.startswith("weighting")]
    assert build(dict(type="RLW")).ddp_wrapper == "vision_mtl.WeightedDistributedDataParallel"


def test_slimmable_models_refuse_another_weighting():
    from vision_mtl.models.builder import build_model

    with pytest.raises(ValueError, match="sandwich rule"):
        build_model(
            dict(
                type="SlimmableMultiTaskModel",
                backbone=dict(type="TimmBackbone", model_name="resnet18", out_indices=[1, 2, 3, 4]),
                decoder=dict(type="BaselineDecoder", channels=16),
                tasks=dict(semseg=dict(num_classes=3), depth={}),
                weighting=dict(type="Uncertainty"),
            )
        )


def test_step_time_benchmark_interleaves_strategies_against_fixed(tiny_cfg):
    from vision_mtl.workflows.weighting_benchmark import benchmark_weightings, format_rows

    weightings = [dict(type="Fixed"), dict(type="FAMO"), dict(type="PCGrad", target="parameters")]
    weightings.append(dict(type="PCGrad", target="representation"))
    report = benchmark_weightings(tiny_cfg, weightings, steps=2, warmup=1)
    rows = {r["weighting"]: r for r in report["rows"]}
    assert list(rows) == ["Fixed", "FAMO", "PCGrad", "PCGrad(representation)"]
    assert rows["Fixed"]["relative_to_fixed"] == 1.0 and len(rows["PCGrad"]["step_ms"]) == 2
    assert rows["FAMO"]["forward_passes"] == 2 and rows["FAMO"]["extra_floats"] == 0
    from vision_mtl.models.builder import build_model

    model = build_model(tiny_cfg.model)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert rows["PCGrad"]["extra_floats"] == 4 * backbone  # four tasks' gradients
    assert rows["PCGrad"]["backward_passes"] == 5
    assert 0 < rows["PCGrad(representation)"]["extra_floats"] < rows["PCGrad"]["extra_floats"]
    assert format_rows(report)[2].startswith("| Fixed | ")
    with pytest.raises(ValueError, match="first weighting must be"):
        benchmark_weightings(tiny_cfg, weightings[1:], steps=1)
