"""Build a TensorRT engine from an exported (or quantized) ONNX model and its sidecar.

``python deploy/build_engine.py MODEL.onnx --out model.plan [--fp16] [--int8] [--workspace 1024]``

Explicit batch; FP16 on request; INT8 only from a QDQ graph (``tools/quantize.py``), whose
scales TensorRT takes as they are (no calibrator); one optimization profile covering the
sidecar's batch range (or the fixed batch); a workspace limit. Writes the engine and
``<engine>.json`` (the sidecar plus an ``engine`` section, sealed with the digest of its content)
through temporary files; ``--out`` may not be the source model or its sidecar. Runs where
TensorRT and a GPU exist (a Jetson, a CUDA workstation); elsewhere it exits saying why.
The trtexec equivalent is in deploy/jetson/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trt_runtime import (  # noqa: E402
    engine_sidecar_path,
    make_engine_sidecar,
    tensorrt_unavailable,
)

from vision_mtl.export.tensorrt_check import check_graph, format_problems  # noqa: E402
from vision_mtl.export.validate import int_at_least, load_onnx  # noqa: E402
from vision_mtl.runtime import Deployment, DeploymentError, load_deployment  # noqa: E402
from vision_mtl.utils import atomic_write_bytes  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .onnx file (its .json sidecar beside it)")
    parser.add_argument("--out", required=True, help="engine file to write (.plan)")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--int8", action="store_true", help="use the graph's Q/DQ scales")
    parser.add_argument("--workspace", type=int_at_least(1), default=1024, help="MiB")
    return parser.parse_args(argv)


def check_destination(out: Path, deployment: Deployment) -> None:
    """Refuse an ``--out`` whose engine or sidecar would overwrite the source model's files."""
    sources = {deployment.onnx_path.resolve(), deployment.sidecar_path.resolve()}
    sidecar = engine_sidecar_path(out)
    if sidecar.resolve() == out.resolve():
        raise SystemExit(
            f"--out {str(out)!r} ends in .json, the engine sidecar's suffix; use .plan"
        )
    clobbered = [str(p) for p in (out, sidecar) if p.resolve() in sources]
    if clobbered:
        raise SystemExit(
            f"--out {str(out)!r} would overwrite the source model's {clobbered}; choose another "
            "engine file name (e.g. model.plan)"
        )
    if out.is_dir():
        raise SystemExit(f"--out {str(out)!r} is a directory; give the engine file's path")


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    try:
        deployment = load_deployment(args.model)
        check_destination(Path(args.out), deployment)
        graph = load_onnx(deployment.onnx_path)
    except DeploymentError as err:
        raise SystemExit(str(err)) from None
    onnx_path = deployment.onnx_path
    quantized = any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    if args.int8 and not quantized:
        raise SystemExit(
            f"--int8 needs a Q/DQ graph from tools/quantize.py; {onnx_path} has no QuantizeLinear"
        )
    profile = deployment.sidecar.get("batch_profile")
    input_name = deployment.sidecar["input"]["name"]
    ranges = {input_name: {0: (profile["min"], profile["opt"], profile["max"])}} if profile else {}
    problems = check_graph(graph, profiles=ranges)
    if problems:
        raise SystemExit(f"{onnx_path} would not build:\n{format_problems(problems)}")
    reason = tensorrt_unavailable()
    if reason:
        raise SystemExit(f"cannot build a TensorRT engine here: {reason}")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SystemExit(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace << 20)
    if args.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if args.int8:
        config.set_flag(trt.BuilderFlag.INT8)
    shape = list(deployment.sidecar["input"]["shape"])
    low = opt = high = [1, *shape[1:]]
    if profile:
        low, opt, high = ([n, *shape[1:]] for n in (profile["min"], profile["opt"], profile["max"]))
    optimization = builder.create_optimization_profile()
    optimization.set_shape(input_name, low, opt, high)
    config.add_optimization_profile(optimization)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SystemExit("TensorRT failed to build the engine (see its log above)")
    out = Path(args.out)
    atomic_write_bytes(bytes(serialized), out)  # the engine first: its sidecar names its hash
    sidecar = make_engine_sidecar(
        deployment,
        out,
        tensorrt=trt.__version__,
        precision="int8" if args.int8 else "fp16" if args.fp16 else "fp32",
        profile=dict(min=low, opt=opt, max=high),
        workspace_mib=args.workspace,
    )
    atomic_write_bytes(json.dumps(sidecar, indent=2).encode(), engine_sidecar_path(out))
    print(f"wrote {out} ({sidecar['engine']['precision']}, TensorRT {trt.__version__})")
    return out


if __name__ == "__main__":
    main()
