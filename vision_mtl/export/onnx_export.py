"""Export a multitask model to one ONNX file plus the sidecar JSON every runtime reads.

The graph is the model in ``tensor`` mode: input ``image`` (B×3×H×W, RGB, normalized with the
data preprocessor's mean and std, padded at the bottom/right with 0 to the export canvas), one
output per task named after it, in :data:`~vision_mtl.tasks.TASKS` order, holding the raw head
output at the canvas size. The sidecar records everything a runtime needs to turn an image into
that input and the outputs into predictions (normalization, canvas, per-task decoding, class
names, palettes), the SHA-256 of the ONNX file, so a mismatched pair is refused, and a digest
of its own content (:mod:`vision_mtl.export.validate`), so an edited sidecar is refused too.
Once the checks pass, :func:`attach_reference` adds ``<stem>_reference.npz``: a few of the
compared images, preprocessed, with their SHA-256 in the sidecar
(:mod:`vision_mtl.runtime.reference`), so a device can compare its own engines with ONNX Runtime.

The TorchScript exporter is used (``dynamo=False``): it writes a single file below 2 GB and its
opset-17 graphs are what TensorRT 8.6 parses. The spatial size is fixed at the canvas (the
decoders resize between levels, and a traced graph keeps the canvas's sizes); only the batch
axis may be dynamic, with its optimization-profile range in the sidecar.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import vision_mtl
from vision_mtl.export.validate import (
    SIDECAR_FORMAT,
    file_sha256,
    is_plain_file_name,
    seal_sidecar,
    sidecar_bytes,
)
from vision_mtl.runtime.deployment import Deployment
from vision_mtl.runtime.reference import (
    REFERENCE_KEY,
    reference_bytes,
    reference_file_name,
    reference_section,
)
from vision_mtl.tasks import get_task, make_palette

INPUT_NAME = "image"


class TensorOutputs(nn.Module):
    """The model in tensor mode, returning a tuple of task outputs in the model's task order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.tasks = list(model.tasks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image, mode="tensor")
        return tuple(outputs[t] for t in self.tasks)


def export_canvas(cfg, shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (H, W) the graph is exported at: :func:`vision_mtl.input_size.config_input_size`.

    Raises:
        ValueError: no size can be found, or a given size is not positive or not a multiple of
            the preprocessor's ``size_divisor``.
    """
    from vision_mtl.input_size import config_input_size

    return config_input_size(cfg, shape)


def make_sidecar(
    model: nn.Module,
    onnx_path: Path,
    canvas: tuple[int, int],
    opset: int,
    max_batch: int | None,
) -> dict:
    """What a runtime needs besides the graph (see the module docstring)."""
    pre = model.data_preprocessor
    meta = dict(getattr(model, "dataset_meta", {}) or {})
    class_names = meta.get("class_names") or {}
    outputs = []
    for task in model.tasks:
        spec = get_task(task)
        outputs.append(
            dict(
                name=task,
                task=task,
                channels=spec.num_outputs(model.num_classes.get(task)),
                decode=spec.decode,
                meaning=spec.description,
            )
        )
    palettes = {
        t: make_palette(n).tolist()
        for t, n in model.num_classes.items()
        if get_task(t).colormap == "palette"
    }
    batch = "batch" if max_batch else 1
    return dict(
        format=SIDECAR_FORMAT,
        onnx=onnx_path.name,
        onnx_sha256=file_sha256(onnx_path),
        opset=opset,
        input=dict(
            name=INPUT_NAME,
            shape=[batch, 3, *canvas],
            dtype="float32",
            layout="NCHW",
            color="RGB",
            mean=[float(v) for v in pre.mean.flatten()],
            std=[float(v) for v in pre.std.flatten()],
            padding="bottom/right, value 0 after normalization; crop outputs back",
        ),
        batch_profile=dict(min=1, opt=1, max=int(max_batch)) if max_batch else None,
        outputs=outputs,
        num_classes=dict(model.num_classes),
        class_names={t: list(v) for t, v in class_names.items()},
        palettes=palettes,
        versions=dict(
            vision_mtl=vision_mtl.__version__, torch=torch.__version__, onnx=onnx.__version__
        ),
    )


def check_padding(model: nn.Module) -> None:
    """Refuse a model that pads inputs other than at the bottom/right, as every runtime does."""
    position = getattr(model.data_preprocessor, "pad_position", "bottom_right")
    if position != "bottom_right":
        raise ValueError(
            f"the model pads inputs at {position!r}; exported runtimes pad at the bottom/right. "
            "Export with --cfg-options model.data_preprocessor.pad_position=bottom_right (images "
            "that fill the canvas are unaffected)"
        )


def check_export_name(name: str) -> str:
    """``name`` if it can be the stem of files inside the output directory.

    Raises:
        ValueError: it has a directory part (``/``, ``\\``), is empty, ``.``/``..`` or starts
            with ``.`` (hidden, like the staging directories).
    """
    if not isinstance(name, str) or not is_plain_file_name(f"{name}.onnx") or name[:1] in ("", "."):
        raise ValueError(
            f"export name {name!r} must be a plain file stem (no '/', '\\' or leading '.'), "
            "so that the files stay in the output directory"
        )
    return name


@dataclass
class Exported:
    """An exported pair in a staging directory, not yet published."""

    onnx_path: Path
    sidecar_path: Path
    sidecar: dict
    #: files the sidecar names besides the graph (the reference inputs), published before it
    extra: list[Path] = field(default_factory=list)


def export_onnx(
    model: nn.Module,
    staging_dir: str | os.PathLike,
    canvas: tuple[int, int],
    opset: int = 17,
    max_batch: int | None = None,
    name: str = "model",
    simplify_graph: bool = False,
) -> Exported:
    """Export ``model`` (eval mode, CPU) to ``staging_dir/<name>.onnx`` and its sidecar.

    Args:
        model: a :class:`~vision_mtl.models.MultiTaskModel`.
        staging_dir: where to write; :func:`publish` moves the pair to its destination once
            every check has passed.
        canvas: input (H, W).
        opset: ONNX opset (17: TensorRT 8.6 and 10.x both parse it).
        max_batch: make the batch axis dynamic up to this size (``None``: batch 1).
        name: file stem: a plain file name (no directory part), so both files stay in
            ``staging_dir``.
        simplify_graph: run :func:`simplify` on the graph before the sidecar is written.

    Raises:
        ValueError: ``name`` has a directory part or is ``.``/``..``, or the model pads its
            inputs other than at the bottom/right (:func:`check_padding`).
    """
    check_export_name(name)
    check_padding(model)
    model = model.cpu().eval()
    wrapper = TensorOutputs(model).eval()
    staging_dir = Path(staging_dir)
    onnx_path = staging_dir / f"{name}.onnx"
    dummy = torch.zeros(1, 3, *canvas)
    dynamic_axes = None
    if max_batch:
        dynamic_axes = {INPUT_NAME: {0: "batch"}, **{t: {0: "batch"} for t in wrapper.tasks}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: shapes are fixed at the canvas
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(onnx_path),
            input_names=[INPUT_NAME],
            output_names=wrapper.tasks,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    extra = sorted(p.name for p in staging_dir.iterdir() if p != onnx_path)
    if extra:
        raise RuntimeError(f"the exporter wrote external data files {extra}; expected one file")
    onnx.checker.check_model(str(onnx_path))
    simplified = simplify(onnx_path) if simplify_graph else None
    sidecar = make_sidecar(model, onnx_path, canvas, opset, max_batch)
    sidecar["simplified"] = simplified
    sidecar = seal_sidecar(sidecar)
    sidecar_path = staging_dir / f"{name}.json"
    sidecar_path.write_bytes(sidecar_bytes(sidecar))
    return Exported(onnx_path, sidecar_path, sidecar)


def simplify(onnx_path: Path) -> dict[str, int]:
    """Rewrite ``onnx_path`` in place with ONNX Runtime's basic, provider-independent passes.

    Constant folding, removal of redundant nodes (Identity, duplicate subexpressions) and
    conv/normalization folding: standard ONNX operators only, so the result is still checked
    against TensorRT and for parity like any export. Returns node counts before and after.
    """
    import onnxruntime as ort

    before = len(onnx.load(str(onnx_path)).graph.node)
    simplified = onnx_path.with_name(f".{onnx_path.stem}.simplified.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(simplified)
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(simplified))
    onnx.checker.check_model(model)
    os.replace(simplified, onnx_path)
    return {"nodes_before": before, "nodes_after": len(model.graph.node)}


def staging_dir(out_dir: str | os.PathLike) -> Path:
    """A fresh directory inside ``out_dir`` (same file system, so publishing is a rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))


def attach_reference(exported: Exported, images: list[np.ndarray], split: str = "val") -> Exported:
    """Write ``images`` as the staged pair's reference inputs and record them in its sidecar.

    The images are preprocessed by the staged sidecar's own rules and written to
    ``<stem>_reference.npz`` beside the graph (:mod:`vision_mtl.runtime.reference`); the
    sidecar gains a ``reference`` section naming the file and its SHA-256 and is sealed again.
    """
    batch, sizes = Deployment(exported.sidecar_path, exported.sidecar).preprocess(images)
    path = exported.onnx_path.with_name(reference_file_name(exported.onnx_path.stem))
    path.write_bytes(reference_bytes(batch, sizes))
    sidecar = dict(exported.sidecar)
    sidecar[REFERENCE_KEY] = reference_section(path, len(images), split)
    sidecar = seal_sidecar(sidecar)
    exported.sidecar_path.write_bytes(sidecar_bytes(sidecar))
    return Exported(exported.onnx_path, exported.sidecar_path, sidecar, [*exported.extra, path])


def add_sidecar_section(exported: Exported, key: str, section: dict) -> Exported:
    """The staged pair with ``section`` added to its sidecar under ``key``, sealed again."""
    if key in exported.sidecar:
        raise ValueError(f"the sidecar already has a {key!r} section")
    sidecar = seal_sidecar({**exported.sidecar, key: section})
    exported.sidecar_path.write_bytes(sidecar_bytes(sidecar))
    return Exported(exported.onnx_path, exported.sidecar_path, sidecar, list(exported.extra))


def publish(exported: Exported, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Move a checked pair into ``out_dir``: the ONNX file, its extra files, then the sidecar.

    Each move is an atomic rename; a runtime that finds the sidecar also finds every file it
    names.
    """
    out_dir = Path(out_dir)
    onnx_path = out_dir / exported.onnx_path.name
    sidecar_path = out_dir / exported.sidecar_path.name
    os.replace(exported.onnx_path, onnx_path)
    for path in exported.extra:
        os.replace(path, out_dir / path.name)
    os.replace(exported.sidecar_path, sidecar_path)
    shutil.rmtree(exported.onnx_path.parent, ignore_errors=True)
    return onnx_path, sidecar_path
