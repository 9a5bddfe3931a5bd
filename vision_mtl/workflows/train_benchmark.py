"""Time of a training step through the toolbox's Runner against a bare PyTorch loop, in one run.

The toolbox step is a real iteration of the Runner :func:`vision_mtl.apis.build_train_runner`
builds for the config: every hook it registers (timer, logger, parameter scheduler, checkpoint,
progress bar, work-dir lock, ...), the data preprocessor, the model's train step, the guarded
optimizer wrapper (finite-gradient check, clipping) and the loss parsing. The bare loop is what a
user writes by hand: normalize the images, the model's losses, their sum, ``backward``, gradient
clipping if the config clips, ``optimizer.step`` (under ``--amp`` the same autocast dtype,
normalization layers in fp32 and, for fp16, a GradScaler). It builds the optimizer from the
config's ``optimizer`` (one parameter group: per-parameter settings, ``paramwise_cfg``, are not
reproduced). Models with a train step of their own (slimmable, gradient weightings) are refused. Both train their own copy of the same model
(same initial weights) with the same optimizer and settings. The toolbox iteration is timed from
its first hook to its last, the batch already drawn from the config's dataloader (data loading is
timed separately, below); the bare loop trains on one batch held in memory.

The two are interleaved in blocks (``block`` toolbox iterations, then ``block`` bare steps, and
so on), so a change in machine load touches both alike; the median step times and their ratio
are reported. Separately, the config's training dataloader (its own ``num_workers``) is timed
cold (SynthScenes rendering every scene) and warm (its cache filled): samples per second against
the samples per second the toolbox step consumes.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Mapping

import torch
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vision_mtl.apis import build_train_runner, load_config
from vision_mtl.engine.optim import fp32_norms
from vision_mtl.registry import SCOPE


class _BareLoop:
    """The hand-written training step on a copy of the model."""

    def __init__(self, model: torch.nn.Module, batch: Mapping, optim_cfg: Mapping, amp) -> None:
        self.model = copy.deepcopy(model).train()
        if amp is not None:  # the toolbox's autocast policy: normalization layers in fp32
            fp32_norms(self.model)
        preprocessor = self.model.data_preprocessor
        self.mean, self.std = preprocessor.mean, preprocessor.std
        data = preprocessor(batch, True)  # stacked targets, padded as the toolbox pads them
        self.images = torch.stack(list(batch["inputs"])).to(self.mean.device)
        self.targets = data["targets"]
        settings = dict(optim_cfg["optimizer"])
        kind = getattr(torch.optim, str(settings.pop("type")))
        self.optimizer = kind(self.model.parameters(), **settings)
        clip = optim_cfg.get("clip_grad") or {}
        self.max_norm = clip.get("max_norm")
        self.norm_type = clip.get("norm_type", 2.0)
        self.amp = amp
        scaled = amp == torch.float16 and optim_cfg.get("loss_scale") is not None
        self.scaler = torch.amp.GradScaler(self.mean.device.type) if scaled else None

    def step(self) -> None:
        inputs = (self.images.float() - self.mean) / self.std
        device = inputs.device.type
        with torch.autocast(device, dtype=self.amp, enabled=self.amp is not None):
            losses = self.model.loss(inputs, self.targets)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm, self.norm_type)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()


class _StepStart(Hook):
    """First hook of every iteration: when the Runner's iteration began (its batch in hand)."""

    priority = "HIGHEST"

    def __init__(self) -> None:
        self.time = 0.0

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        _synchronize()
        self.time = time.perf_counter()


def _synchronize() -> None:
    """Wait for queued CUDA work, so a timed region holds its own kernels (no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Interleave(Hook):
    """Last hook of every iteration: times the toolbox iteration (every hook before and after
    it, the train step) and runs the bare loop's blocks."""

    priority = "LOWEST"

    def __init__(self, start: _StepStart, batch, optim_cfg: Mapping, amp, warmup, block) -> None:
        self.start, self.batch, self.optim_cfg, self.amp = start, batch, optim_cfg, amp
        self.warmup, self.block = warmup, block
        self.toolbox: list[float] = []
        self.bare: list[float] = []

    def before_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        self.loop = _BareLoop(model, self.batch, self.optim_cfg, self.amp)
        for _ in range(self.warmup):
            self.loop.step()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if batch_idx < self.warmup:
            return
        _synchronize()
        self.toolbox.append(time.perf_counter() - self.start.time)
        if (batch_idx - self.warmup + 1) % self.block == 0:
            for _ in range(self.block):
                begin = time.perf_counter()
                self.loop.step()
                _synchronize()
                self.bare.append(time.perf_counter() - begin)


def _loader_speed(batches, count: int) -> float:
    """Samples per second over ``count`` batches drawn from the iterator ``batches``."""
    samples, start = 0, time.perf_counter()
    for _ in range(count):
        samples += len(next(batches)["inputs"])
    return samples / (time.perf_counter() - start)


def benchmark_training(
    config: str,
    cfg_options: Mapping | None = None,
    steps: int = 40,
    warmup: int = 5,
    block: int = 5,
    amp: str | None = None,
    data_batches: int = 40,
) -> dict:
    """Toolbox step against the bare loop (interleaved), and the dataloader's throughput.

    Args:
        config: the config file.
        cfg_options: ``--cfg-options`` overrides.
        steps: timed steps of each kind (a multiple of ``block``).
        warmup: untimed steps of each kind first.
        block: steps per block of the interleaving.
        amp: ``None`` (fp32) or as ``tools/train.py --amp`` (``auto``, ``bf16``, ``fp16``).
        data_batches: batches timed for each dataloader measurement.

    Returns:
        ``toolbox`` and ``bare`` (median and mean seconds per step), ``ratio`` (toolbox median
        over bare median), ``data`` (samples/s cold and warm, consumption, their ratios).
    """
    if steps % block:
        raise ValueError(f"steps ({steps}) must be a multiple of block ({block})")
    with tempfile.TemporaryDirectory(prefix="vision_mtl_train_benchmark_") as work:
        cfg = load_config(config, dict(cfg_options or {}), work_dir=work)
        with DefaultScope.overwrite_default_scope(SCOPE):
            loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader))
        # One iterator throughout: mmengine's InfiniteSampler cannot be iterated twice.
        batches = iter(loader)
        batch = next(batches)  # worker start-up is not throughput
        cold = _loader_speed(batches, data_batches)
        dataset = loader.dataset
        if getattr(dataset, "cache", False) and not loader.num_workers:
            for index in range(len(dataset)):  # fill the cache (kept in this process)
                dataset[index]
        warm = _loader_speed(batches, data_batches)
        del batches
        batch_size = len(batch["inputs"])

        cfg.train_cfg.max_iters = warmup + steps
        # no validation and no checkpoint, not even the last one: only training steps
        cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_iters + 1
        cfg.default_hooks.checkpoint.save_last = False
        runner = build_train_runner(cfg, amp=amp or False)
        own_step = getattr(runner.model, "ddp_wrapper", None)
        if own_step:
            raise ValueError(
                f"{config}: this model trains with its own step ({own_step}); the bare loop "
                "times the plain step of a fixed-weight multitask model only"
            )
        dtype = runner.cfg.optim_wrapper.get("dtype")
        cast = getattr(torch, dtype) if amp and dtype else None
        start = _StepStart()
        timer = _Interleave(start, batch, cfg.optim_wrapper, cast, warmup, block)
        runner.register_hook(start)
        runner.register_hook(timer)
        runner.train()

    toolbox, bare = statistics.median(timer.toolbox), statistics.median(timer.bare)
    consumption = batch_size / toolbox
    return dict(
        config=str(config),
        amp=amp,
        threads=torch.get_num_threads(),
        batch_size=batch_size,
        steps=steps,
        block=block,
        toolbox=dict(median_s=toolbox, mean_s=statistics.fmean(timer.toolbox)),
        bare=dict(median_s=bare, mean_s=statistics.fmean(timer.bare)),
        ratio=toolbox / bare,
        data=dict(
            num_workers=int(getattr(loader, "num_workers", 0)),
            cold_samples_per_s=cold,
            warm_samples_per_s=warm,
            consumed_samples_per_s=consumption,
            cold_ratio=cold / consumption,
            warm_ratio=warm / consumption,
        ),
    )


def format_train_benchmark(report: Mapping) -> list[str]:
    """The report as printed lines."""
    data = report["data"]
    return [
        f"{report['config']} (batch {report['batch_size']}, {report['threads']} threads, "
        f"amp={report['amp']})",
        f"  toolbox step {report['toolbox']['median_s'] * 1000:.1f} ms, bare loop "
        f"{report['bare']['median_s'] * 1000:.1f} ms (medians of {report['steps']}, "
        f"interleaved in blocks of {report['block']}): ratio {report['ratio']:.3f}",
        f"  data ({data['num_workers']} workers): {data['cold_samples_per_s']:.0f} samples/s "
        f"cold, {data['warm_samples_per_s']:.0f} warm; the step consumes "
        f"{data['consumed_samples_per_s']:.1f}: {data['cold_ratio']:.1f}x cold, "
        f"{data['warm_ratio']:.1f}x warm",
    ]
