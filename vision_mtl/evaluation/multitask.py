"""One metric for a multitask model: every task's numbers, Δm, and a readable table of them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mmengine.evaluator import BaseMetric

from vision_mtl.evaluation.task_metrics import resolve_pending
from vision_mtl.registry import METRICS, SCOPE
from vision_mtl.tasks import get_task


def _check_baseline(task: str, base: Any) -> float:
    """A baseline as a float; Δm divides by it, so it must be finite and non-zero."""
    try:
        value = float(base)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value == 0:
        raise ValueError(
            f"baseline of task {task!r} must be a finite non-zero number (the single-task "
            f"{get_task(task).primary_metric}), got {base!r}"
        )
    return value


def compute_delta_m(
    metrics: Mapping[str, float], baselines: Mapping[str, float]
) -> dict[str, float]:
    """Δm of a multitask model against single-task baselines, and each task's share of it.

    ``Δm = (1/T) Σ_i (-1)^{l_i} (M_mt,i - M_st,i) / M_st,i × 100`` over the ``T`` tasks of
    ``baselines``, with ``M`` each task's primary metric (:attr:`TaskSpec.primary_metric`) and
    ``l_i = 1`` where lower is better. Positive means better than the single-task models.

    Args:
        metrics: results keyed ``<task>/<metric>``, as :class:`MultiTaskMetric` returns them.
        baselines: task → the single-task model's value of that task's primary metric, in the
            same units (mIoU in percent, depth RMSE in metres, ...).

    Returns:
        ``<task>/delta`` per task (its signed relative change in percent) and
        ``multitask/delta_m``, their mean. Where a task reports only an approximate primary
        metric (``<metric>_approx``, the fast boundary mode), that value is used and every
        returned key gets the ``_approx`` suffix too.

    Raises:
        ValueError: no baselines, a baseline that is zero or not finite, or a task whose primary
            metric is missing from ``metrics``.
    """
    if not baselines:
        raise ValueError("Δm needs at least one single-task baseline")
    out: dict[str, float] = {}
    approximate = False
    for task, base in baselines.items():
        spec = get_task(task)
        base = _check_baseline(task, base)
        key = f"{task}/{spec.primary_metric}"
        if key not in metrics and f"{key}_approx" in metrics:
            key, approximate = f"{key}_approx", True
        if key not in metrics:
            raise ValueError(
                f"a baseline is given for task {task!r} but the results have no {key!r}; "
                f"keys of that task: {sorted(k for k in metrics if k.startswith(task + '/'))}"
            )
        sign = 1.0 if spec.higher_is_better else -1.0
        out[f"{task}/delta"] = sign * (float(metrics[key]) - base) / abs(base) * 100
    out["multitask/delta_m"] = sum(out.values()) / len(baselines)
    if approximate:  # an approximate input (fast boundary mode) makes Δm approximate too
        out = {f"{k}_approx": v for k, v in out.items()}
    return out


@METRICS.register_module()
class MultiTaskMetric(BaseMetric):
    """Every task's metric in one evaluator, plus Δm against single-task baselines.

    One sub-metric per task is built from :attr:`TaskSpec.metric` (e.g. ``SegMetric`` for
    ``semseg``), given ``task=<task>``, ``num_classes``/``class_names`` for class tasks (those
    whose :attr:`TaskSpec.out_channels` is ``None``) and finally ``metric_overrides[task]``, which
    may change any argument, the ``type`` included.

    A class task whose class count is not given here is built when ``dataset_meta`` arrives
    (mmengine's loops set it from ``dataset.metainfo``, whose ``num_classes[task]`` it reads), so
    a config need not repeat the dataset's class counts. Processing before that is an error.

    How results travel: ``process`` hands each sample to every sub-metric's own ``process`` and
    moves what that appended into **one item per sample**, ``{task: [items]}``, in this metric's
    ``self.results``. So mmengine's ``collect_results`` (gather from all ranks, then truncate to
    the dataset size to drop sampler padding, which assumes one item per sample) sees exactly
    what a single-task metric would, and ``compute_metrics`` splits the gathered items by task and
    calls each sub-metric's ``compute_metrics``. The sub-metrics' own ``results`` stay empty.

    Args:
        tasks: the tasks to evaluate (keys of the samples' ``pred``/``gt``).
        num_classes: task → number of classes of class tasks (``semseg``, ``human_parts``);
            by default taken from ``dataset_meta['num_classes']``.
        class_names: task → class names for the per-class keys; optional (the dataset's names
            are adopted from ``dataset_meta`` when omitted).
        baselines: task → the single-task model's value of the task's primary metric; when
            given, every evaluated task needs one, and Δm is reported.
        metric_overrides: task → keyword arguments merged last into that task's metric config.
        collect_device: device for gathering results across ranks.
        prefix: prefix of the returned names; default none, so keys read ``semseg/mIoU``.

    Returns (from ``compute_metrics``): ``<task>/<metric>`` for every sub-metric result, and with
    ``baselines`` also ``<task>/delta`` and ``multitask/delta_m`` (see :func:`compute_delta_m`).

    Raises:
        ValueError: (at construction) a repeated task, a settings dict naming a task that is not
            evaluated, a baseline for a task not evaluated, an evaluated task without a baseline;
            (when ``dataset_meta`` is set) a class task the dataset gives no class count for.
        KeyError: an unknown task name.
    """

    default_prefix: ClassVar[str | None] = ""

    def __init__(
        self,
        tasks: Sequence[str],
        num_classes: Mapping[str, int] | None = None,
        class_names: Mapping[str, Sequence[str]] | None = None,
        baselines: Mapping[str, float] | None = None,
        metric_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(tasks, str):
            raise TypeError(f"tasks must be a list of task names, got the string {tasks!r}")
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("MultiTaskMetric needs at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"task list {self.tasks} names a task twice")
        for task in self.tasks:
            get_task(task)
        num_classes = dict(num_classes or {})
        class_names = dict(class_names or {})
        overrides = {t: dict(o) for t, o in (metric_overrides or {}).items()}
        for what, given in (
            ("num_classes", num_classes),
            ("class_names", class_names),
            ("metric_overrides", overrides),
        ):
            self._check_known(what, given)

        # task -> built metric, or None while a class task waits for dataset_meta's class count
        self.metrics: dict[str, BaseMetric | None] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        for task in self.tasks:
            spec = get_task(task)
            cfg: dict[str, Any] = dict(spec.metric, task=task)
            if spec.out_channels is None:
                if task in num_classes:
                    cfg["num_classes"] = int(num_classes[task])
                if task in class_names:
                    cfg["class_names"] = list(class_names[task])
            cfg.update(overrides.get(task, {}))
            # Pin the scope: under a runner whose default scope is another package, a bare
            # type name would otherwise be looked up in that package's registry.
            cfg.setdefault("_scope_", SCOPE)
            self._configs[task] = cfg
            waits = spec.out_channels is None and "num_classes" not in cfg
            self.metrics[task] = None if waits else METRICS.build(cfg)

        self.baselines: dict[str, float] | None = None
        if baselines is not None:
            self._check_known("baselines", baselines)
            missing = [t for t in self.tasks if t not in baselines]
            if missing:
                raise ValueError(
                    f"baselines are given, so every evaluated task needs one; missing for task(s) "
                    f"{missing} (the single-task value of "
                    f"{', '.join(get_task(t).primary_metric for t in missing)})"
                )
            self.baselines = {t: _check_baseline(t, baselines[t]) for t in self.tasks}

    def _check_known(self, what: str, given: Mapping[str, Any]) -> None:
        unknown = [t for t in given if t not in self.tasks]
        if unknown:
            raise ValueError(
                f"{what} names task(s) {unknown} that are not evaluated; evaluated tasks: "
                f"{self.tasks}"
            )

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict | None) -> None:
        """Build waiting class tasks from the dataset's class counts, then pass the metainfo on."""
        self._dataset_meta = dataset_meta
        counts = (dataset_meta or {}).get("num_classes") or {}
        for task, metric in self.metrics.items():
            if metric is None and dataset_meta is not None:
                if task not in counts:
                    raise ValueError(
                        f"task {task!r} predicts one class per pixel, but neither the metric's "
                        f"num_classes nor the dataset's metainfo ({sorted(counts)}) gives its "
                        f"class count"
                    )
                cfg = dict(self._configs[task], num_classes=int(counts[task]))
                self.metrics[task] = metric = METRICS.build(cfg)
            if metric is not None:
                metric.dataset_meta = dataset_meta

    def _built_metrics(self) -> dict[str, BaseMetric]:
        waiting = [t for t, m in self.metrics.items() if m is None]
        if waiting:
            raise RuntimeError(
                f"task(s) {waiting} need a class count: give MultiTaskMetric num_classes="
                f"{{{waiting[0]!r}: ...}} or set its dataset_meta (mmengine's loops do) first"
            )
        return self.metrics  # type: ignore[return-value]

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        """Run every sub-metric on each sample; keep one ``{task: [items]}`` per sample."""
        metrics = self._built_metrics()
        for sample in data_samples:
            item: dict[str, list] = {}
            for task, metric in metrics.items():
                start = len(metric.results)
                metric.process(data_batch, [sample])
                item[task] = metric.results[start:]
                del metric.results[start:]
            self.results.append(item)

    def evaluate(self, size: int) -> dict:
        """Wait for sub-metrics that score in worker processes, then gather and reduce."""
        resolve_pending(self.results)
        return super().evaluate(size)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Split the gathered items by task, reduce each with its sub-metric, add Δm."""
        out: dict[str, float] = {}
        for task, metric in self._built_metrics().items():
            items = [part for item in results for part in item[task]]
            for name, value in metric.compute_metrics(items).items():
                out[f"{task}/{name}"] = value
        if self.baselines is not None:
            out.update(compute_delta_m(out, self.baselines))
        return out

    def __repr__(self) -> str:
        return f"MultiTaskMetric(tasks={self.tasks})"


def primary_key(task: str) -> str:
    """The metrics key of ``task``'s primary metric, ``<task>/<metric>``."""
    return f"{task}/{get_task(task).primary_metric}"


def primary_metrics(
    metrics: Mapping[str, float], tasks: Sequence[str], source: str = "the metrics"
) -> dict[str, float]:
    """Task → its primary metric's value in ``metrics``: the references Δm is measured against.

    Raises:
        ValueError: a task's primary metric is not in ``metrics`` (naming ``source``).
    """
    keys = {task: primary_key(task) for task in tasks}
    absent = [key for key in keys.values() if key not in metrics]
    if absent:
        raise ValueError(f"{source} reports no {absent}")
    return {task: metrics[key] for task, key in keys.items()}


def delta_m_against(
    metrics: Mapping[str, float], reference: Mapping[str, float], tasks: Sequence[str]
) -> dict[str, float]:
    """Δm (:func:`compute_delta_m`) of ``metrics`` against a reference model's ``reference``."""
    return compute_delta_m(metrics, primary_metrics(reference, tasks, "the reference"))


def _split_key(key: str) -> tuple[str, str]:
    group, _, name = key.rpartition("/")
    return group, name


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4f}"


def format_metrics_table(
    metrics: Mapping[str, float],
    columns: Mapping[str, Mapping[str, float]] | None = None,
    *,
    name: str = "value",
    per_class: bool = False,
) -> str:
    """Render results as a fixed-width text table: one row per (task, metric), one column per set.

    Args:
        metrics: results keyed ``<task>/<metric>`` (a ``MultiTaskMetric`` result). Without
            ``columns`` they are the table's only column; with ``columns`` they only set the row
            order (their keys first), so ``format_metrics_table(m, {'model': m, 'trivial': t})``
            shows two columns.
        columns: named result sets, one column each, e.g. ``{'model': ..., 'trivial': ...}``.
        name: header of the single column when ``columns`` is not given.
        per_class: include per-class rows (``IoU.<class>``), left out by default to keep the
            table short.

    Returns:
        The table, rows grouped by task in order of first appearance, ``-`` where a set lacks a
        value. No trailing newline.
    """
    sets = dict(columns) if columns else {name: metrics}
    keys: dict[str, None] = {}
    for values in (metrics, *sets.values()):
        for key in values:
            if per_class or not _split_key(key)[1].startswith("IoU."):
                keys.setdefault(key, None)
    if not keys:
        return "(no metrics)"
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(_split_key(key)[0], []).append(key)

    header = ["task", "metric", *sets]
    rows: list[list[str]] = []
    for group, members in groups.items():
        for i, key in enumerate(members):
            cells = [group if i == 0 else "", _split_key(key)[1]]
            cells += [_format_value(values.get(key)) for values in sets.values()]
            rows.append(cells)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        text = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        text += [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(text).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    return "\n".join(out)
