"""Choose, evaluate and deploy width configurations of a trained slimmable model.

``tools/search_widths.py`` and ``tools/analysis_tools/controllability.py`` run on this:

* :class:`ConfigurationEvaluator` measures any configuration of one trained
  :class:`~vision_mtl.models.SlimmableMultiTaskModel` on the first ``num_val`` validation
  samples, after recalibrating the batch norms of that configuration on a few training batches
  (:func:`~vision_mtl.models.slimmable.multitask.recalibrate_batch_norms`); Δm is measured
  against the widest configuration. Results are cached per configuration.
* :func:`run_search` turns a MAC budget and task preferences into a configuration
  (:func:`~vision_mtl.models.slimmable.search.search`), optionally beside uniform width
  scaling, and :func:`save_static` writes the chosen configuration as a plain static
  checkpoint (state dict + pruning record) that the slimmable config itself rebuilds in
  ``tools/test.py``, ``tools/export.py`` and ``init_model``.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vision_mtl.evaluation.multitask import delta_m_against, primary_key
from vision_mtl.models.slimmable.model import full_configuration, slot_widths
from vision_mtl.models.slimmable.multitask import SlimmableMultiTaskModel, recalibrate_batch_norms
from vision_mtl.models.slimmable.search import (
    macs_function,
    preference_configurations,
    search,
    uniform_search,
)
from vision_mtl.registry import METRICS, SCOPE
from vision_mtl.workflows.prune import loader_batches
from vision_mtl.workflows.pruning_steps import save_pruned_checkpoint

_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_macs(text: str) -> float:
    """``"3.2e8"``, ``"320M"`` or ``"0.32G"`` → MACs; anything else is a ValueError."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgG]?)\s*", str(text))
    try:
        value = float(match.group(1)) * _SUFFIXES[match.group(2).lower()] if match else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"--budget-macs: expected a positive number such as 3.2e8 or 320M, "
                         f"got {text!r}")  # fmt: skip
    return value


def parse_preferences(text: str | None, tasks: Sequence[str]) -> dict[str, float]:
    """``"semseg=2,depth=1"`` → task → preference; tasks left out get 1.

    Raises:
        ValueError: an item that is not ``TASK=NUMBER``, an unknown or repeated task, or a
            negative or non-finite preference.
    """
    prefs = {task: 1.0 for task in tasks}
    if not text:
        return prefs
    seen = set()
    for item in str(text).split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value) if sep else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"--prefs: expected TASK=NUMBER (>= 0), got {item!r}")
        if name not in prefs:
            raise ValueError(f"--prefs: unknown task {name!r}; the model's tasks: {list(tasks)}")
        if name in seen:
            raise ValueError(f"--prefs: task {name!r} given twice")
        seen.add(name)
        prefs[name] = number
    if not any(prefs.values()):
        raise ValueError(f"--prefs: at least one preference must be positive, got {prefs}")
    return prefs


def delta_m_value(
    metrics: Mapping[str, float], reference: Mapping[str, float], tasks: Sequence[str]
) -> float:
    """Δm of ``metrics`` against ``reference`` (its ``_approx`` variant where the metrics are)."""
    deltas = delta_m_against(metrics, reference, tasks)
    return float(next(v for k, v in deltas.items() if k.startswith("multitask/delta_m")))


def primary_value(metrics: Mapping[str, float], task: str) -> float:
    """``task``'s primary metric in ``metrics`` (or its ``_approx`` variant; NaN if absent)."""
    key = primary_key(task)
    return metrics.get(key, metrics.get(f"{key}_approx", float("nan")))


def _key(config: Mapping[str, float]) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in config.items()))


def _seeded_batches(loader_cfg, count: int, seed: int = 0) -> list[dict]:
    """The first ``count`` training batches, the same in every run (shuffle and augmentation
    seeded), so a configuration's recalibrated statistics and metrics are reproducible."""
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            return loader_batches(loader_cfg, count)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class ConfigurationEvaluator:
    """Metrics and Δm of configurations of one trained slimmable model, cached.

    Args:
        model: the trained model (its batch norms are recalibrated per configuration).
        cfg: its config: ``test_dataloader`` and ``test_evaluator`` give the validation
            subset and metrics, ``train_dataloader`` the calibration batches.
        num_val: validation samples used (the first ones, whole batches).
        calib_batches: training batches that recalibrate the batch norms.
    """

    def __init__(
        self, model: SlimmableMultiTaskModel, cfg: Config, num_val: int = 64, calib_batches: int = 8
    ) -> None:
        if num_val < 1 or calib_batches < 1:
            raise ValueError(f"num_val and calib_batches must be >= 1, got {num_val}, "
                             f"{calib_batches}")  # fmt: skip
        self.model = model.eval()
        self.cfg = cfg
        self.tasks = list(model.tasks)
        with DefaultScope.overwrite_default_scope(SCOPE):
            loader = Runner.build_dataloader(copy.deepcopy(cfg.test_dataloader))
            spec = cfg.test_evaluator
            self.metric_cfgs = spec if isinstance(spec, list) else [spec]
        self.dataset_meta = loader.dataset.metainfo
        self.val_batches, self.num_val = [], 0
        for batch in loader:
            if self.num_val >= num_val:
                break
            self.val_batches.append(batch)
            self.num_val += len(batch["inputs"])
        calib = _seeded_batches(cfg.train_dataloader, calib_batches)
        self.calibration = [model.data_preprocessor(b, False)["inputs"] for b in calib]
        self.cache: dict[tuple, dict[str, float]] = {}
        self.reference = self.metrics(full_configuration(model))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """The config's test metrics of ``model`` (as it is configured) on the validation subset."""
        with DefaultScope.overwrite_default_scope(SCOPE):
            evaluator = Evaluator([METRICS.build(copy.deepcopy(m)) for m in self.metric_cfgs])
        evaluator.dataset_meta = self.dataset_meta
        model.eval()
        for batch in self.val_batches:
            evaluator.process(data_samples=model.test_step(batch), data_batch=batch)
        return {k: float(v) for k, v in evaluator.evaluate(self.num_val).items()}

    def metrics(self, config: Mapping[str, float]) -> dict[str, float]:
        """The config's test metrics on the validation subset at ``config`` (recalibrated)."""
        key = _key(config)
        if key not in self.cache:
            model = self.model
            recalibrate_batch_norms(model, config, self.calibration)
            previous, model.eval_configuration = model.eval_configuration, dict(config)
            try:
                self.cache[key] = self.evaluate(model)
            finally:
                model.eval_configuration = previous
        return dict(self.cache[key])

    def static(self, config: Mapping[str, float], canvas: tuple[int, int]) -> torch.nn.Module:
        """``config`` as a plain static network, with statistics recalibrated for it."""
        from vision_mtl.models.slimmable.static import static_model

        recalibrate_batch_norms(self.model, config, self.calibration)
        plain = SlimmableMultiTaskModel.plain_config(self.cfg.model)
        return static_model(self.model, config, plain, example_input(self.model, canvas).cpu())

    def delta_m(self, metrics: Mapping[str, float]) -> float:
        """Δm of ``metrics`` against the widest configuration's."""
        return delta_m_value(metrics, self.reference, self.tasks)

    def __call__(self, config: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """``(Δm, metrics)`` of ``config``: the ``evaluate_fn`` of the search."""
        metrics = self.metrics(config)
        return self.delta_m(metrics), metrics


def example_input(model: torch.nn.Module, canvas: tuple[int, int]) -> torch.Tensor:
    """A zero batch of one image at ``canvas`` on the model's device (MAC counting, tracing)."""
    device = next(model.parameters()).device
    return torch.zeros(1, 3, *canvas, device=device)


def run_search(
    evaluator: ConfigurationEvaluator,
    canvas: tuple[int, int],
    budget: float,
    prefs: Mapping[str, float],
    uniform: bool = False,
    exhaustive: bool = False,
    table=None,
) -> dict:
    """Search a configuration for ``budget`` and ``prefs``; the report as plain data.

    Args:
        evaluator: measures configurations of the trained model.
        canvas: input size the MACs are counted at.
        budget: MACs the configuration may use at most.
        prefs: task → preference (higher: a wider head).
        uniform: also report uniform width scaling at the same budget.
        exhaustive: evaluate every configuration within the budget, not the few the paper's
            rule keeps.
        table: a :class:`~vision_mtl.models.slimmable.search.MacTable` to reuse.

    Returns:
        ``budget``, ``preferences``, ``full`` (the widest configuration's MACs and metrics),
        ``search`` (:meth:`SearchResult.to_dict`) and, with ``uniform``, ``uniform``.
    """
    model = evaluator.model
    table = table or macs_function(model, example_input(model, canvas))
    offered = slot_widths(model)
    candidates = preference_configurations(offered, prefs)
    result = search(
        candidates, table, evaluator, budget, keep_per_encoder=None if exhaustive else 1
    )
    full = full_configuration(model)
    report = dict(
        budget=float(budget),
        canvas=list(canvas),
        preferences=dict(prefs),
        num_val=evaluator.num_val,
        full=dict(configuration=full, macs=table(full), metrics=evaluator.reference),
        search=result.to_dict(),
    )
    if uniform:
        report["uniform"] = uniform_search(offered, table, evaluator, budget).to_dict()
    return report


def save_static(
    evaluator: ConfigurationEvaluator,
    config: Mapping[str, float],
    canvas: tuple[int, int],
    path: str | os.PathLike,
) -> Path:
    """Write ``config`` of the evaluator's model as a plain static checkpoint, atomically.

    The batch norms take the statistics recalibrated for ``config``; the checkpoint's
    ``meta.pruning`` holds the width record, so the slimmable config rebuilds it.
    """
    static = evaluator.static(config, canvas)
    return save_pruned_checkpoint(static, static.pruning_record, path, evaluator.dataset_meta)


def load_slimmable(
    config: str | os.PathLike, checkpoint: str | os.PathLike, cfg_options: dict | None = None
) -> tuple[SlimmableMultiTaskModel, Config]:
    """The trained slimmable model of ``config`` + ``checkpoint`` (strict load) and its config.

    Raises:
        ValueError: the config's model is not a ``SlimmableMultiTaskModel``, or the checkpoint
            is a deployed (static) configuration rather than the slimmable model.
    """
    from vision_mtl.apis import init_model, load_config
    from vision_mtl.models.builder import checkpoint_record
    from vision_mtl.utils import resolve_checkpoint

    cfg = load_config(config, cfg_options)
    kind = str(cfg.model.get("type", "")).rsplit(".", 1)[-1]
    if kind != SlimmableMultiTaskModel.__name__:
        raise ValueError(
            f"config {str(config)!r}: model.type is {kind!r}; width search needs a "
            "SlimmableMultiTaskModel (e.g. configs/slimmable/)"
        )
    path = resolve_checkpoint(checkpoint)
    if checkpoint_record(path) is not None:
        raise ValueError(
            f"checkpoint {str(path)!r} is a deployed static configuration (it holds a pruning "
            "record); search on the slimmable training checkpoint"
        )
    return init_model(cfg, path), cfg


def alone_config(cfg: Config, width: float, canvas: tuple[int, int]) -> Config:
    """The config training one configuration of ``cfg``'s slimmable model on its own.

    Every slot at ``width``: the plain ``MultiTaskModel`` of the same architecture, with the
    width record of :func:`~vision_mtl.models.slimmable.static.width_record` as its pruning
    record below 1.0 (a network with that many channels, trained from scratch with the normal
    train step). The baseline the slimmable model's configurations are compared with.
    """
    from vision_mtl.models.slimmable.search import uniform_configuration
    from vision_mtl.models.slimmable.static import width_record

    out = copy.deepcopy(cfg)
    plain = SlimmableMultiTaskModel.plain_config(cfg.model)
    widths = tuple(float(w) for w in cfg.model.get("widths", (width,)))
    if not any(abs(w - width) < 1e-9 for w in widths):
        raise ValueError(f"--width {width} is not one of the config's widths {list(widths)}")
    if width < 1.0:
        from vision_mtl.models.builder import build_model

        model = build_model(dict(plain))
        slots = {s: widths for s in ("encoder", "decoder", *model.tasks)}
        config = uniform_configuration(slots, width)
        plain["pruning"] = width_record(plain, config, torch.zeros(1, 3, *canvas))
    out.model = plain
    return out
