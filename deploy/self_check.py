"""Device self-check: build FP16 and INT8 engines from an export, compare them with ONNX Runtime.

``python deploy/self_check.py EXPORT_DIR [--out DIR] [--runs 200] [--warmup 20]
[--workspace 1024] [--name model]``

EXPORT_DIR is what ``tools/export.py`` wrote (``model.onnx``, ``model.json`` and
``model_reference.npz``), optionally with ``tools/quantize.py``'s ``model_int8.onnx`` and
``model_int8.json``; or what ``tools/qat.py`` wrote (``qat/``: the Q/DQ graph as ``model.onnx``,
checked as INT8 only). On the device it:

1. builds an FP16 engine from the fp32 graph and, if the INT8 pair is there, an INT8 engine from
   its Q/DQ graph with FP16 enabled for the layers left in fp32 (``deploy/build_engine.py``);
2. runs each engine and ONNX Runtime (CPU) on the same graph on the export's reference inputs
   (the first validation images the export's parity check compared, preprocessed;
   :mod:`vision_mtl.runtime.reference`), one image at a time;
3. prints per task the largest raw-output difference and an agreement figure chosen by the
   task's decoding rule (:data:`AGREEMENTS`), pass or fail against that figure's bound for the
   engine's precision, and the engine's median and p90 latency (batch 1, after warm-up).

Everything is checked before any work and nothing is written until it is: the sidecars'
digests and the graphs' checksums, the reference file's SHA-256, that the INT8 pair was
quantized from this export, and that no file in ``--out`` would be overwritten. Then, without the
``tensorrt`` package or a CUDA GPU, it exits with one sentence saying which is missing. The
engines (with their sidecars) and ``self_check.json`` go to ``--out``: by default a new
directory ``self_check_<name>_<date>-<time>`` in the current directory; never the export
directory itself. The exit status is 0 when every task of every engine passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trt_runtime import TrtRunner, engine_sidecar_path, tensorrt_unavailable  # noqa: E402

from vision_mtl.export.timing import measure_latency  # noqa: E402
from vision_mtl.export.validate import int_at_least  # noqa: E402
from vision_mtl.runtime import (  # noqa: E402
    DecodeRule,
    Deployment,
    DeploymentError,
    OrtRunner,
    decode_array,
    load_deployment,
)
from vision_mtl.runtime.reference import ReferenceInputs, load_reference  # noqa: E402
from vision_mtl.utils import write_json  # noqa: E402

REPORT = "self_check.json"
PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class Agreement:
    """How one decoding rule's predictions are compared, and the bound per engine precision.

    Attributes:
        figure: what is measured, as printed.
        unit: ``%`` or ``°``.
        at_least: whether the figure must reach the bound (agreement) or stay under it
            (difference).
        bounds: precision → bound. FP16 keeps about 3 significant digits, so an FP16 engine
            should change almost no decision; an INT8 engine is compared with ONNX Runtime on
            the same Q/DQ graph, and rounds an activation one step differently where TensorRT
            fuses layers or runs the fp32 layers in FP16, hence the wider bounds. They are
            starting points, not yet measured on a device (deploy/jetson/README.md).
    """

    figure: str
    unit: str
    at_least: bool
    bounds: dict[str, float]


_SAME_SIDE = Agreement("same side of 0.5", "%", True, {"fp16": 99.0, "int8": 97.0})
#: decoding rule → its agreement figure (every rule of vision_mtl.runtime.DECODE_RULES)
AGREEMENTS: dict[str, Agreement] = {
    "argmax": Agreement("same class", "%", True, {"fp16": 99.0, "int8": 97.0}),
    "softmax_fg": _SAME_SIDE,
    "sigmoid": _SAME_SIDE,
    "relu": Agreement("mean relative difference", "%", False, {"fp16": 1.0, "int8": 3.0}),
    "unit": Agreement("mean angle", "°", False, {"fp16": 1.0, "int8": 3.0}),
}


@dataclass
class TaskComparison:
    """One task's figures: an engine's outputs against ONNX Runtime's on the reference inputs."""

    task: str
    rule: str
    max_abs_diff: float
    figure: str
    value: float
    bound: float
    unit: str
    at_least: bool
    non_finite: int
    ok: bool

    def describe(self) -> str:
        """One line: the task, its figure, the bound and, when it fails, why."""
        relation = ">=" if self.at_least else "<="
        text = (
            f"{self.task}: {self.figure} {self.value:.3f}{self.unit} (needs {relation} "
            f"{self.bound:g}{self.unit}), max |diff| {self.max_abs_diff:.3g}"
        )
        if self.non_finite:
            text += f", {self.non_finite} non-finite values"
        return text


def _figure(rule: str, reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """The agreement figure of ``rule`` over decoded predictions (one array per image)."""
    if rule in ("argmax", "softmax_fg", "sigmoid"):
        same = total = 0
        for a, b in zip(reference, candidate, strict=True):
            if rule != "argmax":
                a, b = a > 0.5, b > 0.5
            same += int((a == b).sum())
            total += a.size
        return 100.0 * same / total
    if rule == "relu":
        pairs = zip(reference, candidate, strict=True)
        difference = sum(float(np.abs(b - a).sum()) for a, b in pairs)
        scale = sum(float(np.abs(a).sum()) for a in reference)
        return 100.0 * difference / scale if scale else (0.0 if difference == 0 else np.inf)
    # unit vectors (C×h×w): the angle atan2(|a×b|, a·b), 0° for two zero vectors; in float64,
    # so the cancellation in |a×b|² = |a|²|b|² - (a·b)² leaves far under 0.001° of error
    angles = []
    for a, b in zip(reference, candidate, strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)
        dot = (a * b).sum(axis=0)
        cross = np.sqrt(np.maximum((a * a).sum(axis=0) * (b * b).sum(axis=0) - dot * dot, 0))
        angles.append(np.degrees(np.arctan2(cross, dot)).ravel())
    return float(np.concatenate(angles).mean())


def compare_outputs(
    rules: dict[str, DecodeRule],
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    sizes: list[tuple[int, int]],
    precision: str,
) -> list[TaskComparison]:
    """Compare a candidate's raw outputs with the reference's, task by task (pure NumPy).

    Both are decoded with the sidecar's rules and cropped to each image's size before padding;
    each task gets its rule's agreement figure (:data:`AGREEMENTS`) judged against the bound for
    ``precision``. A candidate with any non-finite output (FP16 overflow) fails.

    Args:
        rules: task → decoding rule (:attr:`Deployment.rules`).
        reference: task → N×C×H×W raw outputs (ONNX Runtime).
        candidate: task → N×C×H×W raw outputs (the engine), same shapes.
        sizes: per image, (height, width) before padding.
        precision: ``fp16`` or ``int8``: which bounds apply.

    Raises:
        ValueError: an unknown precision, a task missing from either output set, or shapes
            that differ (naming the task).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    results = []
    given = {"reference": reference, "candidate": candidate}
    for task, rule in rules.items():
        absent = [name for name, outputs in given.items() if task not in outputs]
        if absent:
            raise ValueError(f"{task}: missing from the {' and '.join(absent)} outputs")
        ref, cand = np.asarray(reference[task]), np.asarray(candidate[task])
        if ref.shape != cand.shape or ref.ndim != 4 or ref.shape[0] != len(sizes):
            raise ValueError(
                f"{task}: outputs of shape {list(cand.shape)} against {list(ref.shape)}, "
                f"expected equal N×C×H×W shapes with N = {len(sizes)} images"
            )
        non_finite = int((~np.isfinite(cand)).sum())
        crops = [
            (slice(i, i + 1), slice(None), slice(0, h), slice(0, w))
            for i, (h, w) in enumerate(sizes)
        ]
        agreement = AGREEMENTS[rule.name]
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite outputs are counted
            max_diff = max(float(np.abs(cand[c] - ref[c]).max()) for c in crops)
            decoded = [[decode_array(rule, v[c])[0] for c in crops] for v in (ref, cand)]
            value = _figure(rule.name, *decoded)
        bound = agreement.bounds[precision]
        within = value >= bound if agreement.at_least else value <= bound
        results.append(
            TaskComparison(
                task,
                rule.name,
                max_diff,
                agreement.figure,
                float(value),
                bound,
                agreement.unit,
                agreement.at_least,
                non_finite,
                bool(within and non_finite == 0),
            )
        )
    return results


@dataclass
class Plan:
    """Everything the self-check will use and write, checked before any work."""

    fp32: Deployment
    int8: Deployment | None
    reference: ReferenceInputs
    out: Path
    name: str
    notes: list[str]

    @property
    def precisions(self) -> tuple[str, ...]:
        """The engines to build: FP16, and INT8 when the export has its INT8 pair; INT8 only
        for a quantization-aware export, whose graph is Q/DQ itself."""
        if self.int8 is self.fp32:
            return PRECISIONS[1:]
        return PRECISIONS if self.int8 is not None else PRECISIONS[:1]

    def engine_path(self, precision: str) -> Path:
        return self.out / f"{self.name}_{precision}.plan"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="the directory tools/export.py wrote")
    parser.add_argument(
        "--out", help="directory for the engines and self_check.json (default: a new one here)"
    )
    parser.add_argument("--runs", type=int_at_least(1), default=200, help="timed runs per engine")
    parser.add_argument("--warmup", type=int_at_least(0), default=20)
    parser.add_argument("--workspace", type=int_at_least(1), default=1024, help="MiB")
    parser.add_argument("--name", default="model", help="the export's file stem")
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace) -> Plan:
    """Load and check every input and the output directory; nothing is written.

    Raises:
        SystemExit: naming the directory, file or option at fault and what was expected.
    """
    export = Path(args.export)
    if not export.is_dir():
        raise SystemExit(
            f"export directory {str(export)!r} does not exist or is not a directory; give the "
            "directory tools/export.py wrote"
        )
    notes = []
    try:
        fp32 = load_deployment(export / f"{args.name}.json")
        reference = load_reference(fp32)
        int8 = None
        int8_sidecar = export / f"{args.name}_int8.json"
        if isinstance(fp32.sidecar.get("quantization"), dict):  # tools/qat.py's Q/DQ graph
            int8 = fp32
            notes.append(f"{str(fp32.onnx_path)!r} is a Q/DQ graph: INT8 engine only")
        elif int8_sidecar.is_file():
            int8 = load_deployment(int8_sidecar)
            _check_int8(int8, fp32)
        else:
            notes.append(
                f"INT8 not checked: {str(int8_sidecar)!r} does not exist (tools/quantize.py "
                "writes it)"
            )
    except DeploymentError as err:
        raise SystemExit(str(err)) from None
    out = _output_directory(args.out, export, args.name)
    plan = Plan(fp32, int8, reference, out, args.name, notes)
    names = [REPORT]
    for precision in plan.precisions:
        engine = plan.engine_path(precision)
        names += [engine.name, engine_sidecar_path(engine).name]
    existing = sorted(name for name in names if (out / name).exists())
    if existing:
        raise SystemExit(
            f"--out {str(out)!r} already holds {existing}, which the self-check would overwrite; "
            "choose a new directory"
        )
    return plan


def _check_int8(int8: Deployment, fp32: Deployment) -> None:
    """Refuse an INT8 pair that is not a quantization of ``fp32`` with the same reference."""
    path = str(int8.sidecar_path)
    quantization = int8.sidecar.get("quantization")
    if not isinstance(quantization, dict):
        raise DeploymentError(
            f"sidecar {path!r} has no 'quantization' section, so it is not an INT8 pair from "
            "tools/quantize.py; quantize the export again"
        )
    if quantization.get("fp32_onnx_sha256") != fp32.sidecar["onnx_sha256"]:
        raise DeploymentError(
            f"{path!r} was quantized from another fp32 graph than {str(fp32.onnx_path)!r} "
            "(its fp32_onnx_sha256 differs); quantize this export again"
        )
    if int8.sidecar.get("reference") != fp32.sidecar.get("reference"):
        raise DeploymentError(
            f"{path!r} names other reference inputs than {str(fp32.sidecar_path)!r}; quantize "
            "this export again"
        )


def _output_directory(out: str | None, export: Path, name: str) -> Path:
    """``--out`` checked, or the default new directory in the current one."""
    if out is None:
        path = Path.cwd() / f"self_check_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
        if path.resolve().is_relative_to(export.resolve()):
            raise SystemExit(
                f"the default output directory {str(path)!r} would be inside the export "
                f"directory {str(export)!r}; run from elsewhere or give --out"
            )
        if path.exists():
            raise SystemExit(f"the default output directory {str(path)!r} exists; give --out")
        return path
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"--out {out!r} exists and is not a directory")
    if path.resolve() == export.resolve():
        raise SystemExit(
            f"--out {out!r} is the export directory; engines and their .json sidecars would mix "
            "with the export's files: choose another directory (a subdirectory is fine)"
        )
    return path


def check_dependencies() -> None:
    """Refuse, in one sentence, a device without onnx or onnxruntime (TensorRT is checked first).

    Raises:
        SystemExit: naming the missing package, what needs it and how to install it.
    """
    for module, purpose in (
        ("onnx", "deploy/build_engine.py checks each graph with it before a build"),
        ("onnxruntime", "the engines are compared with ONNX Runtime"),
    ):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise SystemExit(
                f"cannot run the self-check here: {err}; {purpose} (pip install {module})"
            ) from None


def build(onnx_path: Path, engine: Path, int8: bool, workspace: int) -> Path:
    """Build one engine with ``deploy/build_engine.py`` (FP16 always; INT8 from Q/DQ scales)."""
    import build_engine

    argv = [str(onnx_path), "--out", str(engine), "--fp16", "--workspace", str(workspace)]
    return build_engine.main([*argv, "--int8"] if int8 else argv)


def run_each(run, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Raw outputs for every reference image, run one at a time, stacked per task."""
    outputs = [run(inputs[i : i + 1]) for i in range(len(inputs))]
    return {task: np.concatenate([np.array(o[task]) for o in outputs]) for task in outputs[0]}


def check_engine(plan: Plan, precision: str, args: argparse.Namespace) -> dict:
    """Build, compare and time one engine; a failed build is recorded, not raised."""
    deployment = plan.fp32 if precision == "fp16" else plan.int8
    engine = plan.engine_path(precision)
    result = dict(
        engine=str(engine),
        compared_with=f"ONNX Runtime (CPU) on {deployment.onnx_path.name}",
    )
    try:
        build(deployment.onnx_path, engine, precision == "int8", args.workspace)
    except SystemExit as err:  # build_engine.py's one-sentence errors
        return dict(result, ok=False, failures=[f"{precision} engine build: {err}"])
    try:
        runner = TrtRunner(engine)
        reference = OrtRunner(deployment, providers=["CPUExecutionProvider"])
    except DeploymentError as err:  # an engine TensorRT cannot load, a graph ORT cannot
        return dict(result, ok=False, failures=[f"{precision} engine: {err}"])
    inputs = plan.reference.inputs
    tasks = compare_outputs(
        deployment.rules,
        run_each(reference.run, inputs),
        run_each(runner.run, inputs),
        plan.reference.sizes,
        precision,
    )
    latency = measure_latency(lambda: runner.run(inputs[:1]), args.warmup, args.runs)
    failures = [f"{precision} {t.describe()}" for t in tasks if not t.ok]
    return dict(
        result,
        tasks={t.task: asdict(t) for t in tasks},
        latency=latency,
        ok=not failures,
        failures=failures,
    )


def format_engine(precision: str, result: dict) -> list[str]:
    """The lines printed for one engine: a row per task, then its latency."""
    lines = [f"{precision} engine vs {result['compared_with']}:"]
    if "tasks" not in result:
        return lines + [f"  {failure}" for failure in result["failures"]]
    lines.append(
        f"  {'task':<12} {'max |diff|':>10}  {'figure':<26} {'value':>9}  {'bound':>9}  result"
    )
    for t in result["tasks"].values():
        relation = ">=" if t["at_least"] else "<="
        verdict = "pass" if t["ok"] else "FAIL"
        if t["non_finite"]:
            verdict += f" ({t['non_finite']} non-finite)"
        lines.append(
            f"  {t['task']:<12} {t['max_abs_diff']:>10.3g}  {t['figure']:<26} "
            f"{t['value']:>8.3f}{t['unit']}  {relation}{t['bound']:>6g}{t['unit']}  {verdict}"
        )
    latency = result["latency"]
    lines.append(
        f"  latency, batch 1: median {latency['median_ms']:.2f} ms, p90 {latency['p90_ms']:.2f} ms "
        f"({latency['runs']} runs)"
    )
    return lines


def main(argv: list[str] | None = None) -> dict:
    """Run the self-check; returns the report. Exits 1 when a task fails or a build fails."""
    args = parse_args(argv)
    plan = check_inputs(args)
    reason = tensorrt_unavailable()
    if reason:
        raise SystemExit(
            f"cannot run the self-check here: {reason}; it needs TensorRT and a CUDA GPU "
            "(a Jetson with JetPack, or a CUDA machine with TensorRT)"
        )
    check_dependencies()
    import tensorrt

    reference = plan.reference
    height, width = plan.fp32.canvas
    print(
        f"self-check of {plan.fp32.sidecar_path.parent} with TensorRT {tensorrt.__version__}: "
        f"{len(reference.inputs)} reference images at {height}x{width} ({reference.path.name})"
    )
    plan.out.mkdir(parents=True, exist_ok=True)
    engines = {}
    for precision in plan.precisions:
        engines[precision] = check_engine(plan, precision, args)
        print("\n".join(format_engine(precision, engines[precision])))
    for note in plan.notes:
        print(note)
    failures = [f for result in engines.values() for f in result["failures"]]
    report = dict(
        export=str(plan.fp32.sidecar_path.parent),
        tensorrt=tensorrt.__version__,
        reference=dict(file=reference.path.name, samples=len(reference.inputs)),
        warmup=args.warmup,
        runs=args.runs,
        engines=engines,
        notes=plan.notes,
        ok=not failures,
    )
    write_json(report, plan.out / REPORT)
    if failures:
        raise SystemExit(
            f"self-check failed ({'; '.join(failures)}); report in {plan.out / REPORT}"
        )
    print(f"self-check passed; engines and {REPORT} in {plan.out}")
    return report


if __name__ == "__main__":
    main()
