"""Write samples in the on-disk layouts the field distributes, so the real loaders run end to end.

``tools/make_synthscenes.py`` uses these to write SynthScenes as an NYUD-v2 tree; tests use them to
build fixtures. Every file goes through a temporary name and a rename, so an interrupted write
never leaves a file a loader would half-read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from vision_mtl.utils import atomic_write_bytes


def _write_png(array: np.ndarray, path: Path) -> None:
    image = array[..., ::-1] if array.ndim == 3 else array  # RGB -> BGR for OpenCV
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise RuntimeError(f"could not encode {str(path)!r}")
    atomic_write_bytes(encoded.tobytes(), path)


def _write_npy(array: np.ndarray, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(buffer.getvalue(), path)


def encode_nyud_segmentation(labels: np.ndarray) -> np.ndarray:
    """Train ids 0..39 -> 1..40, 255 (void) -> 0: the inverse of the loader's decoding."""
    raw = labels.astype(np.int64) + 1
    raw[labels == 255] = 0
    if raw.max(initial=0) > 40:
        raise ValueError(f"NYUD-v2 holds at most 40 classes, got train id {int(labels.max())}")
    return raw.astype(np.uint8)


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals -> uint8 RGB with v = (n + 1) / 2 * 255; invalid (zero) pixels -> 127."""
    return np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)


def write_nyud_layout(samples: Iterable[dict], root: str | Path, split: str) -> list[str]:
    """Write samples (``image``, ``semseg``, ``depth``, ``normals``, ``edge``) as an NYUD-v2 tree.

    Sample ids are ``meta['name']``; ``gt_sets/<split>.txt`` lists them (replacing that split's
    list). Returns the ids written.
    """
    root = Path(root)
    ids = []
    for sample in samples:
        sample_id = str(sample["meta"]["name"])
        _write_png(sample["image"], root / "images" / f"{sample_id}.png")
        _write_png(
            encode_nyud_segmentation(sample["semseg"]), root / "segmentation" / f"{sample_id}.png"
        )
        _write_npy(np.asarray(sample["depth"], np.float32), root / "depth" / f"{sample_id}.npy")
        _write_png(encode_normals(sample["normals"]), root / "normals" / f"{sample_id}.png")
        edge = (np.asarray(sample["edge"]) > 0).astype(np.uint8) * 255
        _write_png(edge, root / "edge" / f"{sample_id}.png")
        ids.append(sample_id)
    atomic_write_bytes(("\n".join(ids) + "\n").encode(), root / "gt_sets" / f"{split}.txt")
    return ids


# SynthScenes semseg classes as PASCAL-Context LabelMap ids (floor, wall, ceiling, ball, box,
# barrel, cone): all are classes on which the protocol keeps distilled normals.
SYNTH_TO_CONTEXT = np.array([158, 440, 68, 10, 37, 13, 87], np.uint16)
# SynthScenes part classes 1..3 written as PASCAL-Part person parts of classes 1..3.
SYNTH_PART_NAMES = {1: "head", 2: "torso", 3: "luarm"}


def _parts_mat(saliency: np.ndarray, parts: np.ndarray) -> dict:
    """A PASCAL-Part 'anno' struct with one person (category 15) covering every object."""
    names = [n for k, n in SYNTH_PART_NAMES.items() if (parts == k).any()]
    part_arr = np.empty((1, len(names)), dtype=[("part_name", "O"), ("mask", "O")])
    for i, name in enumerate(names):
        cls = next(k for k, n in SYNTH_PART_NAMES.items() if n == name)
        part_arr[0, i] = (name, (parts == cls).astype(np.uint8))
    objs = np.empty(
        (1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    )
    objs[0, 0] = ("person", np.array([[15]]), saliency.astype(np.uint8), part_arr)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("synthscenes", objs)
    return {"anno": anno}


def write_pascal_layout(samples: Iterable[dict], root: str | Path, split: str) -> list[str]:
    """Write samples with the PASCAL-like tasks as a PASCAL_MT tree (JPEG images, VOC12 semseg,
    PASCAL-Part .mat parts, distilled-style normals and saliency, a Context LabelMap .mat)."""
    import io

    from scipy.io import savemat

    root = Path(root)
    ids = []
    for sample in samples:
        sample_id = str(sample["meta"]["name"])
        ok, jpg = cv2.imencode(".jpg", sample["image"][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f"could not encode the image of {sample_id!r}")
        atomic_write_bytes(jpg.tobytes(), root / "JPEGImages" / f"{sample_id}.jpg")
        _write_png(
            sample["semseg"].astype(np.uint8), root / "semseg" / "VOC12" / f"{sample_id}.png"
        )
        _write_png(encode_normals(sample["normals"]), root / "normals_distill" / f"{sample_id}.png")
        _write_png(
            sample["saliency"].astype(np.uint8) * 255, root / "sal_distill" / f"{sample_id}.png"
        )
        for relative, content in (
            (f"human_parts/{sample_id}.mat", _parts_mat(sample["saliency"], sample["human_parts"])),
            (
                f"pascal-context/trainval/{sample_id}.mat",
                {"LabelMap": SYNTH_TO_CONTEXT[sample["semseg"]]},
            ),
        ):
            buffer = io.BytesIO()
            savemat(buffer, content)
            atomic_write_bytes(buffer.getvalue(), root / relative)
        ids.append(sample_id)
    atomic_write_bytes(
        ("\n".join(ids) + "\n").encode(), root / "ImageSets" / "Context" / f"{split}.txt"
    )
    return ids


# SynthScenes semseg classes as Cityscapes raw label ids (road, building, sky, car, truck, bus,
# traffic sign): each has a train id, so the loader's official table maps them back one to one.
SYNTH_TO_CITYSCAPES = np.array([7, 11, 23, 26, 27, 28, 20], np.uint8)
SYNTH_BASELINE_M = 0.2  # a stereo baseline for the written disparity


def write_cityscapes_layout(
    samples: Iterable[dict], root: str | Path, split: str, fov_y: float = 60.0
) -> list[str]:
    """Write samples (``image``, ``semseg``, ``depth``) as a Cityscapes tree with disparity.

    Disparity is ``baseline · fx / depth`` for a 0.2 m baseline and the camera's focal length
    (from ``fov_y``), stored as ``d · 256 + 1`` in uint16 PNGs; the camera JSON holds both, so
    the loader's metric depth recovers the input depth.
    """
    import json
    import math

    root = Path(root)
    ids = []
    for sample in samples:
        name = str(sample["meta"]["name"])
        stem = f"synth/{name}"
        height = sample["image"].shape[0]
        fx = 0.5 * height / math.tan(math.radians(fov_y) / 2)
        depth = np.asarray(sample["depth"], np.float32)
        disparity = np.where(depth > 0, SYNTH_BASELINE_M * fx / np.maximum(depth, 1e-6), 0.0)
        raw = np.where(depth > 0, np.clip(np.rint(disparity * 256 + 1), 1, 65535), 0).astype(
            np.uint16
        )
        path = {k: root / k / split / f"{stem}_{k}" for k in ("leftImg8bit", "disparity", "camera")}
        _write_png(sample["image"], path["leftImg8bit"].with_name(f"{name}_leftImg8bit.png"))
        labels = SYNTH_TO_CITYSCAPES[sample["semseg"]]
        _write_png(labels, root / "gtFine" / split / f"{stem}_gtFine_labelIds.png")
        _write_png(raw, path["disparity"].with_name(f"{name}_disparity.png"))
        camera = {"extrinsic": {"baseline": SYNTH_BASELINE_M}, "intrinsic": {"fx": fx, "fy": fx}}
        atomic_write_bytes(
            json.dumps(camera).encode(), path["camera"].with_name(f"{name}_camera.json")
        )
        ids.append(stem)
    return ids
