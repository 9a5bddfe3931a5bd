"""Build a TensorRT engine from an exported (or quantized) ONNX model and its sidecar.

``python deploy/build_engine.py MODEL.onnx --out model.plan [--fp16] [--int8] [--workspace 1024]``

Explicit batch; FP16 on request; INT8 only from a QDQ graph (``tools/quantize.py``), whose
scales TensorRT takes as they are (no calibrator); one optimization profile covering the
sidecar's batch range (or the fixed batch); a workspace limit. Writes the engine and
``<engine>.json`` (the sidecar plus an ``engine`` section) through temporary files. Runs where
TensorRT and a GPU exist (a Jetson, a CUDA workstation); elsewhere it exits saying why.
The trtexec equivalent is in deploy/jetson/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trt_runtime import engine_sidecar_path, tensorrt_unavailable  # noqa: E402

from vision_mtl.engine.checkpoint import atomic_write_bytes  # noqa: E402
from vision_mtl.export import check_graph, format_problems, load_deployment  # noqa: E402
from vision_mtl.export.onnx_export import file_sha256  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .onnx file (its .json sidecar beside it)")
    parser.add_argument("--out", required=True, help="engine file to write (.plan)")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--int8", action="store_true", help="use the graph's Q/DQ scales")
    parser.add_argument("--workspace", type=int, default=1024, help="MiB")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    deployment = load_deployment(args.model)
    onnx_path = deployment.onnx_path
    graph = onnx.load(str(onnx_path))
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
    atomic_write_bytes(bytes(serialized), out)
    sidecar = dict(deployment.sidecar)
    sidecar["engine"] = dict(
        file=out.name,
        sha256=file_sha256(out),
        onnx_sha256=deployment.sidecar["onnx_sha256"],
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
