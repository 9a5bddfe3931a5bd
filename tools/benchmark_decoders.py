"""Train and test several configs the same way and compare them by every metric and by Δm.

Used for the README's SynthScenes decoder comparison: multitask configs that differ only in the
decoder, and single-task configs that give the per-task references Δm is measured against.
Each config is trained by ``tools/train.py`` and tested by ``tools/test.py`` in its own
process, so a run here is exactly what a user's command would do; a config whose
``metrics.json`` already exists in its work dir is not run again (``--rerun`` forces it).

Example::

    python tools/benchmark_decoders.py \\
        --multitask configs/quickstart/*.py configs/taskexpert/*synthscenes*.py \\
        --single-task configs/single_task/*.py --out docs/benchmarks/decoders.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from vision_mtl.apis import init_model, write_json
from vision_mtl.complexity import count_macs, count_parameters
from vision_mtl.evaluation.multitask import compute_delta_m
from vision_mtl.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--multitask", nargs="+", required=True, help="configs to compare")
    parser.add_argument(
        "--single-task", nargs="+", required=True, help="one config per task, for Δm"
    )
    parser.add_argument("--work-root", default="work_dirs/decoder_comparison")
    parser.add_argument("--out", default="docs/benchmarks/decoders.json")
    parser.add_argument("--rerun", action="store_true", help="train even if results exist")
    return parser.parse_args(argv)


def run_config(config: str, work_root: Path, rerun: bool) -> dict:
    """Train then test ``config``; returns its test metrics, training time and parameters."""
    work_dir = work_root / Path(config).stem
    result_file = work_dir / "benchmark.json"
    if result_file.exists() and not rerun:
        return json.loads(result_file.read_text())
    python = sys.executable
    start = time.perf_counter()
    subprocess.run(
        [python, "tools/train.py", config, "--work-dir", str(work_dir)], check=True, cwd=ROOT
    )
    train_seconds = time.perf_counter() - start
    metrics_file = work_dir / "metrics.json"
    subprocess.run(
        [
            python,
            "tools/test.py",
            config,
            str(work_dir / "last_checkpoint"),
            "--work-dir",
            str(work_dir),
            "--out",
            str(metrics_file),
        ],
        check=True,
        cwd=ROOT,
    )
    result = {
        "config": config,
        "train_seconds": round(train_seconds, 1),
        "metrics": json.loads(metrics_file.read_text())["model"],
    }
    write_json(result, result_file)
    return result


def complexity(config: str) -> dict:
    """Parameters and MACs (one 1×3×H×W image at the test set's size) of ``config``'s model."""
    model = init_model(str(ROOT / config), None, device="cpu")
    size = model.cfg.test_dataloader.dataset.image_size
    macs = count_macs(model, torch.zeros(1, 3, *size), mode="tensor")
    return {"parameters": count_parameters(model), "macs": macs, "input": [1, 3, *size]}


def single_task_references(results: list[dict]) -> dict[str, float]:
    """Task → primary metric of the single-task run that trained only that task."""
    references: dict[str, float] = {}
    for result in results:
        tasks = {key.split("/")[0] for key in result["metrics"]}
        if len(tasks) != 1:
            raise ValueError(f"{result['config']}: a single-task config must score one task")
        task = tasks.pop()
        if task in references:
            raise ValueError(f"two single-task configs score {task!r}")
        references[task] = result["metrics"][f"{task}/{get_task(task).primary_metric}"]
    return references


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work_root = ROOT / args.work_root
    single = [run_config(c, work_root, args.rerun) for c in args.single_task]
    references = single_task_references(single)
    multi = [run_config(c, work_root, args.rerun) for c in args.multitask]
    for result in multi:
        result.update(complexity(result["config"]))
        result["delta"] = compute_delta_m(result["metrics"], references)
    report = {"single_task": single, "references": references, "multitask": multi}
    write_json(report, ROOT / args.out)
    tasks = list(references)
    header = ["config", "params (M)", "MACs (G)"]
    header += [f"{t} {get_task(t).primary_metric}" for t in tasks] + ["Δm (%)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = [(r["config"], r) for r in multi] + [("single-task", None)]
    for name, r in rows:
        if r is None:
            cells = [name, "", ""] + [f"{references[t]:.4g}" for t in tasks] + ["0"]
        else:
            cells = [Path(name).stem, f"{r['parameters']['total'] / 1e6:.2f}"]
            cells.append(f"{r['macs']['total'] / 1e9:.2f}")
            primary = [r["metrics"][f"{t}/{get_task(t).primary_metric}"] for t in tasks]
            cells += [f"{v:.4g}" for v in primary] + [f"{r['delta']['multitask/delta_m']:+.2f}"]
        print("| " + " | ".join(cells) + " |")
    return report


if __name__ == "__main__":
    main()
