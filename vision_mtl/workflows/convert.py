"""Convert a published model's official checkpoint into a vision_mtl checkpoint.

``tools/convert_checkpoint.py --from invpt SRC DST [--config CONFIG]``: the official file is
read with ``weights_only=True``, its tensors are mapped onto the config's model (built on the
meta device, so a ViT-L costs no memory before the conversion succeeds) and written, atomically,
as ``{"state_dict", "meta"}`` that ``tools/test.py`` and every other tool load strictly.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from vision_mtl.apis.config import load_config
from vision_mtl.apis.inference import without_pretrained
from vision_mtl.convert.invpt import Conversion, convert_invpt, official_state_dict, official_tasks
from vision_mtl.engine import register_all_modules
from vision_mtl.models.builder import build_model
from vision_mtl.runtime.sidecar import file_sha256
from vision_mtl.utils import atomic_write_bytes, read_checkpoint

#: ``--from`` values.
FORMATS = ("invpt",)
#: The config each official InvPT task set converts into, relative to the repository root.
INVPT_CONFIGS = {
    ("depth", "edge", "normals", "semseg"): "configs/invpt/invpt_vit-l16_2xb2-40k_nyud-448x576.py",
    (
        "edge",
        "human_parts",
        "normals",
        "sal",
        "semseg",
    ): "configs/invpt/invpt_vit-l16_2xb2-40k_pascal-512x512.py",
}


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The official model tensors of ``path`` (a ``.pth`` read with ``weights_only=True``)."""
    try:
        data = read_checkpoint(path, mmap=True)
    except ValueError as err:
        if "weights_only" in str(err) or "Unpickl" in str(err):
            raise ValueError(
                f"{err}\nThe file pickles objects other than tensors (an optimizer's scheduler, "
                "arguments): keep only its weights in a trusted environment: torch.save("
                "{'model': torch.load(SRC, weights_only=False)['model']}, SRC_WEIGHTS)"
            ) from None
        raise
    try:
        return official_state_dict(data)
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from None


def default_invpt_config(state: dict[str, torch.Tensor], root: str | os.PathLike) -> Path:
    """The repository's InvPT ViT-L config for the checkpoint's task set (NYUD-v2 or PASCAL)."""
    tasks = tuple(sorted(official_tasks(state)))
    if tasks not in INVPT_CONFIGS:
        raise ValueError(
            f"no InvPT config for the task set {list(tasks)}: pass --config (NYUD-v2: "
            "semseg, depth, normals, edge; PASCAL-Context: semseg, human_parts, sal, normals, "
            "edge)"
        )
    return Path(root) / INVPT_CONFIGS[tasks]


def convert_checkpoint(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    config: str | os.PathLike | None = None,
    fmt: str = "invpt",
    cfg_options: dict | None = None,
    config_root: str | os.PathLike = ".",
) -> tuple[Conversion, Path]:
    """Convert ``source`` (official ``fmt`` checkpoint) for ``config``'s model into ``dest``.

    Args:
        source: the official checkpoint.
        dest: the vision_mtl checkpoint to write (atomically).
        config: the model's config; ``None``: the InvPT ViT-L config of the checkpoint's task
            set under ``config_root`` (:func:`default_invpt_config`).
        fmt: the official format (:data:`FORMATS`).
        cfg_options: overrides of the config.
        config_root: the repository root the default configs are found under.

    Returns:
        The conversion and the config it was made for.

    Raises:
        FileNotFoundError: ``source`` or ``config`` does not exist.
        ValueError: an unknown format, an unreadable file, or a checkpoint that does not fit
            the model (see :func:`~vision_mtl.convert.invpt.convert_invpt`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--from {fmt!r}: known formats are {list(FORMATS)}")
    source, dest = Path(source), Path(dest)
    if dest.resolve() == source.resolve():
        raise ValueError(f"destination {str(dest)!r} is the source checkpoint")
    official = read_official(source)
    if config is None:
        try:
            config = default_invpt_config(official, config_root)
        except ValueError as err:
            raise ValueError(f"{str(source)!r}: {err}") from None
    register_all_modules()
    cfg = load_config(config, cfg_options)
    without_pretrained(cfg)  # the checkpoint holds every weight: no download
    with torch.device("meta"):
        model = build_model(cfg.model)
    try:
        conversion = convert_invpt(official, model.state_dict(), list(model.tasks))
    except ValueError as err:
        raise ValueError(f"{str(source)!r} does not convert for {str(config)!r}: {err}") from None
    state = {k: v.detach().clone().contiguous() for k, v in conversion.state_dict.items()}
    meta = dict(
        converted_from=dict(
            format=fmt,
            file=source.name,
            sha256=file_sha256(source),
            tasks=conversion.tasks,
            unused=conversion.unused,
        ),
        config=str(config),
    )
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "meta": meta}, buffer)
    atomic_write_bytes(buffer.getvalue(), dest)
    return conversion, Path(config)
