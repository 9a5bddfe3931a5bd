"""From a compute budget and task preferences to a width configuration (Aich et al., ICCV 2023).

A slimmable model (:mod:`.model`) offers one configuration per choice of the ``"encoder"``,
``"decoder"`` and per-task slot widths. "Efficient Controllable Multi-Task Architectures" picks
one for a budget and a preference vector in two steps, which this module implements:

1. **Preferences → task widths** (:func:`preference_configurations`). Preferred tasks get the
   wider heads: at each *level* ``s`` (each width the task slots offer), task ``t`` gets the
   offered width nearest to ``s * pref_t / max(pref)``. The candidates are every encoder width ×
   every decoder width × these task-width assignments.
2. **Budget → the rest** (:func:`search`). Candidates above the budget are dropped; for each
   encoder width only the fitting candidates with the largest MACs are kept (the decoder and
   heads get as much as the budget leaves at that encoder width), so only a handful — about one
   per encoder width — are evaluated on a validation subset. The best Δm wins.

The baseline it is compared with, uniform width scaling, sets every slot to one width and
ignores preferences (:func:`uniform_configuration`, :func:`uniform_search`).

MACs come from a :class:`MacTable` (:func:`mac_table`): the model's MACs are a sum of parts that
each depend on at most two slots — the backbone on the encoder width, the decoder on the
(encoder, decoder) widths, a head on the (decoder, task) widths — so a few forward passes give
the MACs of every configuration exactly, without running it.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vision_mtl.complexity import count_macs
from vision_mtl.evaluation.pareto import pareto_front
from vision_mtl.models.slimmable.decoders import DECODER, ENCODER
from vision_mtl.models.slimmable.model import configuration
from vision_mtl.models.slimmable.model import slot_widths as model_slot_widths

#: a configuration: slot → width
Config = dict[str, float]


def _match(slot: str, width: Any, offered: Sequence[float]) -> float:
    """The offered width equal to ``width`` (compared with a tolerance), or a ValueError."""
    number = isinstance(width, int | float) and not isinstance(width, bool)
    found = [w for w in offered if number and abs(float(width) - w) < 1e-9]
    if not found:
        raise ValueError(
            f"width {width!r} is not offered for slot {slot!r}; offered: {list(offered)}"
        )
    return found[0]


def _complete(config: Mapping[str, float], offered: Mapping[str, Sequence[float]]) -> Config:
    """``config`` with canonical widths; every slot named, no other."""
    unknown = [s for s in config if s not in offered]
    missing = [s for s in offered if s not in config]
    if unknown or missing:
        raise ValueError(
            f"a configuration must name every slot {list(offered)}; "
            f"missing {missing}, unknown {unknown}"
        )
    return {slot: _match(slot, config[slot], offered[slot]) for slot in offered}


def _tasks(offered: Mapping[str, Sequence[float]]) -> list[str]:
    if ENCODER not in offered or DECODER not in offered:
        raise ValueError(f"slot widths need {ENCODER!r} and {DECODER!r} slots, got {list(offered)}")
    return [s for s in offered if s not in (ENCODER, DECODER)]


@dataclass(frozen=True)
class MacTable:
    """MACs of every configuration, from additive parts measured once (see :func:`mac_table`).

    Attributes:
        slot_widths: slot → offered widths, as :func:`.model.slot_widths` reports them.
        encoder: encoder width → backbone MACs.
        decoder: ``(encoder width, decoder width)`` → decoder MACs.
        heads: task → ``(decoder width, task width)`` → that head's MACs.
        other: MACs outside backbone, decoder and heads (the final resizes); the same for every
            configuration.
    """

    slot_widths: dict[str, tuple[float, ...]]
    encoder: dict[float, int]
    decoder: dict[tuple[float, float], int]
    heads: dict[str, dict[tuple[float, float], int]]
    other: int

    def parts(self, config: Mapping[str, float]) -> dict[str, int]:
        """MACs of ``config`` per part (``backbone``, ``decoder``, ``heads.<task>``, ``other``)
        and ``total``.

        Raises:
            ValueError: ``config`` misses a slot, names an unknown one, or asks for a width its
                slot does not offer.
        """
        full = _complete(config, self.slot_widths)
        e, d = full[ENCODER], full[DECODER]
        out = {"backbone": self.encoder[e], "decoder": self.decoder[(e, d)]}
        for task, table in self.heads.items():
            out[f"heads.{task}"] = table[(d, full[task])]
        out["other"] = self.other
        out["total"] = sum(out.values())
        return out

    def macs(self, config: Mapping[str, float]) -> int:
        """Total MACs of ``config`` (every slot must be given)."""
        return self.parts(config)["total"]

    __call__ = macs


def _record(table: dict, key: object, value: int, part: str) -> None:
    """Store a measurement; a second, different one means the parts are not additive."""
    if table.setdefault(key, value) != value:
        raise RuntimeError(
            f"{part} MACs at {key} measured as {table[key]} and {value}: they depend on more "
            "slots than assumed, so configurations' MACs are not sums of parts"
        )


def mac_table(model: nn.Module, example: torch.Tensor, **forward_kwargs: Any) -> MacTable:
    """Measure the additive parts of a slimmable model's MACs (count_macs' FlopCounterMode).

    Runs ``2 × |decoder widths| × max(|encoder widths|, |task widths|)`` forward passes (32
    for the default four widths): at each decoder width, the encoder and every task cycle
    through their widths together, so every (encoder, decoder) and (decoder, task) pair is
    seen; the second round shifts the task widths by one, so every part is seen again with the
    *other* slots changed. Parts seen twice must agree, which checks the additivity the table
    relies on: a decoder whose own MACs depend on the task widths (e.g. per-task layers inside
    the decoder, as in TaskExpert) is refused rather than mis-counted. The model is run in eval
    mode (batch norm statistics untouched) and its configuration and modes are restored.

    Args:
        model: a model converted by :func:`.model.make_model_slimmable`.
        example: an input batch; use one image at the deployment resolution for per-image MACs
            (MACs scale with batch size and resolution).
        forward_kwargs: passed to the forward call; ``mode="tensor"`` by default.

    Returns:
        The table; ``table.macs(config)`` equals ``count_macs(model, example)["total"]`` at
        ``config``.

    Raises:
        RuntimeError: a part's MACs depend on more slots than assumed.
    """
    forward_kwargs.setdefault("mode", "tensor")
    offered = model_slot_widths(model)
    tasks = _tasks(offered)
    components = ("backbone", "decoder", *(f"heads.{t}" for t in tasks))
    encoder: dict[float, int] = {}
    decoder: dict[tuple[float, float], int] = {}
    heads: dict[str, dict[tuple[float, float], int]] = {t: {} for t in tasks}
    other: dict[str, int] = {}
    steps = max(len(offered[slot]) for slot in (ENCODER, *tasks))
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        for d, shift, k in itertools.product(offered[DECODER], (0, 1), range(steps)):
            config = {ENCODER: offered[ENCODER][k % len(offered[ENCODER])], DECODER: d}
            config.update({t: offered[t][(k + shift) % len(offered[t])] for t in tasks})
            e = config[ENCODER]
            with configuration(model, config):
                counts = count_macs(model, example, components, **forward_kwargs)
            _record(encoder, e, counts["backbone"], "backbone")
            _record(decoder, (e, d), counts["decoder"], "decoder")
            for task in tasks:
                _record(heads[task], (d, config[task]), counts[f"heads.{task}"], task)
            _record(other, "other", counts["other"], "other")
    finally:
        for module, training in modes.items():
            module.training = training
    return MacTable(
        slot_widths={s: tuple(w) for s, w in offered.items()},
        encoder=encoder,
        decoder=decoder,
        heads=heads,
        other=other["other"],
    )


class CountedMacs:
    """MACs of any configuration counted directly (one forward pass per new configuration).

    The fallback for models whose MACs are not sums of :class:`MacTable`'s parts (TaskExpert:
    per-task layers inside the decoder). Counts are cached per configuration; the model runs in
    eval mode and its configuration and modes are restored.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, **forward_kwargs: Any) -> None:
        self.model, self.example = model, example
        self.forward_kwargs = {"mode": "tensor", **forward_kwargs}
        self.slot_widths = {s: tuple(w) for s, w in model_slot_widths(model).items()}
        self.cache: dict[tuple, int] = {}

    def macs(self, config: Mapping[str, float]) -> int:
        """Total MACs of ``config`` (every slot named)."""
        full = _complete(config, self.slot_widths)
        key = tuple(sorted(full.items()))
        if key not in self.cache:
            modes = {module: module.training for module in self.model.modules()}
            self.model.eval()
            try:
                with configuration(self.model, full):
                    counts = count_macs(self.model, self.example, **self.forward_kwargs)
            finally:
                for module, training in modes.items():
                    module.training = training
            self.cache[key] = int(counts["total"])
        return self.cache[key]

    __call__ = macs


def macs_function(
    model: nn.Module, example: torch.Tensor, **forward_kwargs: Any
) -> MacTable | CountedMacs:
    """A :class:`MacTable` where the parts are additive, else :class:`CountedMacs`."""
    try:
        return mac_table(model, example, **forward_kwargs)
    except RuntimeError:
        return CountedMacs(model, example, **forward_kwargs)


def _check_preferences(tasks: Sequence[str], prefs: Mapping[str, float]) -> dict[str, float]:
    unknown = [t for t in prefs if t not in tasks]
    missing = [t for t in tasks if t not in prefs]
    if unknown:
        raise ValueError(f"preferences name unknown task(s) {unknown}; the tasks are {tasks}")
    if missing:
        raise ValueError(f"preferences miss task(s) {missing}; every task {tasks} needs one")
    out = {}
    for task in tasks:
        value = prefs[task]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"preference of task {task!r} must be a finite number >= 0, got {value!r}"
            )
        out[task] = float(value)
    if max(out.values()) <= 0:
        raise ValueError(f"at least one preference must be positive, got {out}")
    return out


def _nearest(target: float, offered: Sequence[float]) -> float:
    """The offered width nearest to ``target``; halfway between two, the wider one."""
    return min(offered, key=lambda w: (abs(w - target), -w))


def task_widths(
    slot_widths: Mapping[str, Sequence[float]], prefs: Mapping[str, float]
) -> list[dict[str, float]]:
    """The task-width assignments of :func:`preference_configurations`, narrowest level first.

    At each level ``s`` in the task slots' widths, task ``t`` gets the offered width nearest to
    ``s * prefs[t] / max(prefs)`` (halfway → the wider); repeated assignments are dropped. So
    the most preferred task gets ``s`` itself, and rounding a monotone target onto one grid
    keeps the widths monotone in the preferences: a strictly more preferred task never gets a
    narrower head, and equally preferred tasks get the same width.

    Raises:
        ValueError: preferences missing a task, naming an unknown one, negative or not finite,
            all zero; or task slots offering different widths (the rule needs one grid).
    """
    tasks = _tasks(slot_widths)
    prefs = _check_preferences(tasks, prefs)
    grid = tuple(sorted(slot_widths[tasks[0]]))
    differ = [t for t in tasks if tuple(sorted(slot_widths[t])) != grid]
    if differ:
        raise ValueError(
            f"task slots {differ} offer other widths than {tasks[0]!r} {list(grid)}; the "
            "preference rule needs every task to offer the same widths"
        )
    top = max(prefs.values())
    out: list[dict[str, float]] = []
    for level in grid:
        assignment = {t: _nearest(level * prefs[t] / top, grid) for t in tasks}
        if assignment not in out:
            out.append(assignment)
    return out


def preference_configurations(
    slot_widths: Mapping[str, Sequence[float]], prefs: Mapping[str, float]
) -> list[Config]:
    """The candidate configurations for a preference vector (the paper's rule).

    Every encoder width × every decoder width × each assignment of :func:`task_widths`
    (preferred tasks get the wider heads, at each level of head width). :func:`search` then
    picks among them by budget and Δm.

    Args:
        slot_widths: slot → offered widths (:func:`.model.slot_widths` of the model).
        prefs: task → preference, a number >= 0 for every task slot (only ratios matter).

    Returns:
        Complete configurations (every slot), without repeats.

    Raises:
        ValueError: see :func:`task_widths`.
    """
    assignments = task_widths(slot_widths, prefs)
    return [
        {ENCODER: e, DECODER: d, **a}
        for e in slot_widths[ENCODER]
        for d in slot_widths[DECODER]
        for a in assignments
    ]


def uniform_configuration(slot_widths: Mapping[str, Sequence[float]], width: float) -> Config:
    """Every slot at ``width`` (uniform width scaling, the baseline that ignores preferences).

    Raises:
        ValueError: a slot that does not offer ``width`` (naming it and its widths).
    """
    return {slot: _match(slot, width, offered) for slot, offered in slot_widths.items()}


#: evaluate_fn(config) -> (Δm, metrics): runs the model at ``config`` on validation data
EvaluateFn = Callable[[Config], tuple[float, Mapping[str, float]]]
MacsFn = Callable[[Mapping[str, float]], float]


@dataclass
class SearchResult:
    """The chosen configuration and every evaluated candidate.

    Attributes:
        configuration: the chosen configuration (every slot).
        macs: its MACs.
        delta_m: its Δm, as ``evaluate_fn`` reported it.
        metrics: its metrics, as ``evaluate_fn`` reported them.
        budget: the MAC budget searched under.
        table: one row per evaluated candidate, in evaluation order: ``configuration``,
            ``macs``, ``delta_m``, ``metrics``, ``pareto`` (no other evaluated row has at least
            its Δm with at most its MACs, one of them strictly) and ``chosen``.
        num_candidates: candidates given (after removing repeats).
        num_within_budget: of those, how many fit the budget.
    """

    configuration: Config
    macs: float
    delta_m: float
    metrics: dict[str, float]
    budget: float
    table: list[dict[str, Any]] = field(default_factory=list)
    num_candidates: int = 0
    num_within_budget: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (e.g. for ``json.dump``)."""
        return asdict(self)


def _within_budget(
    candidates: Sequence[Mapping[str, float]], macs_fn: MacsFn, budget: float
) -> tuple[list[tuple[Config, float]], int]:
    """``(config, MACs)`` of the distinct candidates within ``budget``, and their number."""
    if not isinstance(budget, numbers.Real) or isinstance(budget, bool) or math.isnan(budget):
        raise ValueError(f"budget must be a number of MACs, got {budget!r}")
    unique: list[Config] = []
    for config in candidates:
        if dict(config) not in unique:
            unique.append(dict(config))
    if not unique:
        raise ValueError("no candidate configurations to search")
    sized = [(config, macs_fn(config)) for config in unique]
    fits = [(config, macs) for config, macs in sized if macs <= budget]
    if not fits:
        smallest, macs = min(sized, key=lambda item: item[1])
        raise ValueError(
            f"no configuration fits the budget of {budget:,} MACs; the smallest candidate needs "
            f"{macs:,} MACs ({smallest})"
        )
    return fits, len(unique)


def _evaluate(
    kept: Sequence[tuple[Config, float]],
    evaluate_fn: EvaluateFn,
    budget: float,
    total: int,
    fit: int,
) -> SearchResult:
    """Evaluate ``kept`` and choose the best Δm (ties: fewer MACs, then the earlier one)."""
    rows: list[dict[str, Any]] = []
    for config, macs in kept:
        result = evaluate_fn(dict(config))
        if not (isinstance(result, tuple | list) and len(result) == 2):
            raise TypeError(
                f"evaluate_fn must return (delta_m, metrics), got {type(result).__name__} for "
                f"{config}"
            )
        delta_m, metrics = float(result[0]), dict(result[1])
        rows.append(dict(configuration=dict(config), macs=macs, delta_m=delta_m, metrics=metrics))
    finite = [i for i, row in enumerate(rows) if math.isfinite(row["delta_m"])]
    if not finite:
        raise ValueError(
            f"evaluate_fn returned no finite Δm for any of the {len(rows)} candidates: "
            f"{[row['delta_m'] for row in rows]}"
        )
    front = {
        finite[i] for i in pareto_front([(rows[i]["delta_m"], -rows[i]["macs"]) for i in finite])
    }
    best = max(finite, key=lambda i: (rows[i]["delta_m"], -rows[i]["macs"], -i))
    for i, row in enumerate(rows):
        row["pareto"], row["chosen"] = i in front, i == best
    chosen = rows[best]
    return SearchResult(
        configuration=dict(chosen["configuration"]),
        macs=chosen["macs"],
        delta_m=chosen["delta_m"],
        metrics=dict(chosen["metrics"]),
        budget=budget,
        table=rows,
        num_candidates=total,
        num_within_budget=fit,
    )


def search(
    candidates: Sequence[Mapping[str, float]],
    macs_fn: MacsFn,
    evaluate_fn: EvaluateFn,
    budget: float,
    keep_per_encoder: int | None = 1,
) -> SearchResult:
    """The candidate with the best Δm within a MAC budget, evaluating only a few.

    Following the paper, the budget is spent on the decoder and heads first: among the
    candidates within ``budget``, for each encoder width only those with the ``keep_per_encoder``
    largest MAC values are evaluated (all of them when tied), i.e. for each encoder width the
    largest decoder/head widths the budget leaves. With :func:`preference_configurations` and the
    default that is about one evaluation per encoder width. The winner has the best Δm; ties go
    to fewer MACs, then to the earlier candidate. A non-finite Δm never wins.

    Args:
        candidates: complete configurations (e.g. :func:`preference_configurations`); repeats
            are evaluated once.
        macs_fn: config → MACs (a :class:`MacTable`).
        evaluate_fn: config → ``(Δm, metrics)``, the caller's validation run at ``config``.
        budget: the most MACs the result may have (never exceeded).
        keep_per_encoder: MAC levels evaluated per encoder width; ``None`` evaluates every
            candidate within the budget (exhaustive).

    Returns:
        The chosen configuration with its MACs, Δm and metrics, and the table of evaluations.

    Raises:
        ValueError: no candidates, a candidate without an ``"encoder"`` slot, a bad
            ``keep_per_encoder``, a budget no candidate fits (naming the smallest one's MACs),
            or no finite Δm among the evaluated.
        TypeError: ``evaluate_fn`` not returning ``(delta_m, metrics)``.
    """
    if keep_per_encoder is not None and (
        not isinstance(keep_per_encoder, int) or keep_per_encoder < 1
    ):
        raise ValueError(f"keep_per_encoder must be None or an int >= 1, got {keep_per_encoder!r}")
    for i, config in enumerate(candidates):
        if ENCODER not in config:
            raise ValueError(f"candidate {i} has no {ENCODER!r} slot: {dict(config)}")
    fits, total = _within_budget(candidates, macs_fn, budget)
    kept = fits
    if keep_per_encoder is not None:
        levels: dict[float, list[float]] = {}
        for config, macs in fits:
            levels.setdefault(config[ENCODER], []).append(macs)
        top = {e: sorted(set(m), reverse=True)[:keep_per_encoder] for e, m in levels.items()}
        kept = [(config, macs) for config, macs in fits if macs in top[config[ENCODER]]]
    return _evaluate(kept, evaluate_fn, budget, total, len(fits))


def uniform_search(
    slot_widths: Mapping[str, Sequence[float]],
    macs_fn: MacsFn,
    evaluate_fn: EvaluateFn,
    budget: float,
) -> SearchResult:
    """Uniform width scaling: the widest single width for every slot that fits ``budget``.

    Only that configuration is evaluated (the baseline chooses by budget alone, not by Δm), so
    the table has one row.

    Args:
        slot_widths: slot → offered widths; the widths offered by every slot are tried.
        macs_fn: config → MACs (a :class:`MacTable`).
        evaluate_fn: config → ``(Δm, metrics)``.
        budget: the most MACs the result may have.

    Raises:
        ValueError: no width offered by every slot, or none within the budget (naming the
            smallest configuration's MACs).
    """
    common = set.intersection(*(set(w) for w in slot_widths.values()))
    if not common:
        raise ValueError(f"no width is offered by every slot: {dict(slot_widths)}")
    candidates = [uniform_configuration(slot_widths, w) for w in sorted(common)]
    fits, total = _within_budget(candidates, macs_fn, budget)
    widest = max(fits, key=lambda item: item[0][ENCODER])
    return _evaluate([widest], evaluate_fn, budget, total, len(fits))
