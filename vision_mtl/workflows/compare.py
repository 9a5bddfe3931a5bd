"""Compare models by their task metrics: Δm against a reference, and trained configs side by side.

:func:`primary_metrics` and :func:`delta_m_against` measure one set of test metrics against a
reference model's (an unpruned model, an fp32 export); :func:`compare_configs` trains and tests
several configs the way a user's commands would and measures each multitask config against
single-task runs (the README's decoder comparison, ``tools/benchmark_decoders.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vision_mtl.apis.complexity import config_complexity
from vision_mtl.apis.runner import load_config, write_json
from vision_mtl.evaluation.multitask import compute_delta_m, primary_key
from vision_mtl.input_size import config_input_size
from vision_mtl.tasks import get_task

#: The checkout whose ``tools/train.py`` and ``tools/test.py`` :func:`run_config` runs.
REPO_ROOT = Path(__file__).resolve().parents[2]


def single_task_references(results: Sequence[Mapping]) -> dict[str, float]:
    """Task → primary metric of the single-task run that trained only that task.

    Raises:
        ValueError: a result scores more than one task, or two score the same task.
    """
    references: dict[str, float] = {}
    for result in results:
        tasks = {key.split("/")[0] for key in result["metrics"]}
        if len(tasks) != 1:
            raise ValueError(f"{result['config']}: a single-task config must score one task")
        task = tasks.pop()
        if task in references:
            raise ValueError(f"two single-task configs score {task!r}")
        references[task] = result["metrics"][primary_key(task)]
    return references


def run_config(
    config: str, work_root: str | os.PathLike, rerun: bool = False, root: Path = REPO_ROOT
) -> dict:
    """Train then test ``config`` with ``tools/train.py`` and ``tools/test.py``, each in its
    own process from ``root``; returns its test metrics and training time.

    A config whose ``benchmark.json`` already exists in ``work_root/<config stem>`` is not run
    again unless ``rerun``.
    """
    work_dir = Path(work_root) / Path(config).stem
    result_file = work_dir / "benchmark.json"
    if result_file.exists() and not rerun:
        return json.loads(result_file.read_text())
    python = sys.executable
    start = time.perf_counter()
    subprocess.run(
        [python, "tools/train.py", config, "--work-dir", str(work_dir)], check=True, cwd=root
    )
    train_seconds = time.perf_counter() - start
    metrics_file = work_dir / "metrics.json"
    checkpoint = str(work_dir / "last_checkpoint")
    subprocess.run(
        [python, "tools/test.py", config, checkpoint, "--work-dir", str(work_dir)]
        + ["--out", str(metrics_file)],
        check=True,
        cwd=root,
    )
    result = {
        "config": config,
        "train_seconds": round(train_seconds, 1),
        "metrics": json.loads(metrics_file.read_text())["model"],
    }
    write_json(result, result_file)
    return result


def compare_configs(
    multitask: Sequence[str],
    single_task: Sequence[str],
    work_root: str | os.PathLike,
    rerun: bool = False,
    shape: tuple[int, int] | None = None,
    root: Path = REPO_ROOT,
    run: Callable[[str, Path, bool, Path], dict] = run_config,
) -> dict:
    """Train and test every config; each multitask one with its size and Δm vs single-task runs.

    Args:
        multitask: configs to compare (paths relative to ``root``).
        single_task: one config per task, whose primary metrics are the Δm references.
        work_root: parent of each config's work dir.
        rerun: train and test even where results exist.
        shape: ``--shape H W`` for the parameter and MAC counts (``None``: each config's own
            input size, :func:`~vision_mtl.input_size.config_input_size`).
        root: the checkout the configs and tools are in.
        run: trains and tests one config (:func:`run_config`'s signature).

    Returns:
        ``single_task`` (their results), ``references`` (task → primary metric) and
        ``multitask``: each result with ``parameters``, ``macs``, ``input`` and ``delta``.

    Raises:
        InputSizeError: a multitask config has no input size and ``shape`` is not given
            (checked before anything is trained).
    """
    cfgs = {config: load_config(Path(root) / config) for config in multitask}
    sizes = {config: config_input_size(cfg, shape, config) for config, cfg in cfgs.items()}
    work_root = Path(work_root)
    single = [run(config, work_root, rerun, root) for config in single_task]
    references = single_task_references(single)
    multi = [run(config, work_root, rerun, root) for config in multitask]
    for config, result in zip(multitask, multi, strict=True):
        figures = config_complexity(cfgs[config], sizes[config])
        result.update(parameters=figures["params"], macs=figures["macs"], input=figures["input"])
        result["delta"] = compute_delta_m(result["metrics"], references)
    return {"single_task": single, "references": references, "multitask": multi}


def format_comparison_table(report: Mapping) -> list[str]:
    """The Markdown table of :func:`compare_configs`' report: sizes, primary metrics and Δm."""
    references = report["references"]
    tasks = list(references)
    header = ["config", "params (M)", "MACs (G)"]
    header += [f"{t} {get_task(t).primary_metric}" for t in tasks] + ["Δm (%)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in report["multitask"]:
        cells = [Path(result["config"]).stem, f"{result['parameters']['total'] / 1e6:.2f}"]
        cells.append(f"{result['macs']['total'] / 1e9:.2f}")
        cells += [f"{result['metrics'][primary_key(t)]:.4g}" for t in tasks]
        cells.append(f"{result['delta']['multitask/delta_m']:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    single = ["single-task", "", ""] + [f"{references[t]:.4g}" for t in tasks] + ["0"]
    lines.append("| " + " | ".join(single) + " |")
    return lines
