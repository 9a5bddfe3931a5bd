"""The inputs of the SEISM golden fixtures: ground truths and noisy boundary predictions.

``tests/fixtures/seism/seism_reference.json`` holds what the original SEISM code (run under GNU
Octave, outside this repository) computed on exactly these inputs; ``test_seism_fixtures.py``
regenerates them, checks their SHA-256 against the ones recorded there (so a change of numpy's
random streams fails loudly instead of comparing different images) and scores them with
:class:`~vision_mtl.evaluation.BoundaryMetric`.

Run as a script to write the inputs in the layout the SEISM harness reads::

    python tests/seism_inputs.py OUT_DIR
    # OUT_DIR/<group>/gt/<id>.png     ground truth, a label map (SEISM's db_gt: uint32(imread))
    # OUT_DIR/<group>/pred/<id>.png   prediction, (255 * p).astype(uint8) as the published repos
    # OUT_DIR/<group>/ids.txt         image ids;  OUT_DIR/inputs.json  groups, maxDist, hashes

Two groups, as SEISM scores them: ``nyud`` (425×560, maxDist 0.011; the edge PNG itself is the
"segmentation", values 0/255) and ``pascal`` (375×500, maxDist 0.0075; a Context-style label map).
Predictions are soft responses around displaced, partly missed boundaries, with clutter and
noise of increasing strength, plus one all-zero prediction.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

GROUPS = {
    "nyud": {"shape": (425, 560), "max_dist": 0.011},
    "pascal": {"shape": (375, 500), "max_dist": 0.0075},
}

# (group, id, noise level; None = all-zero prediction)
IMAGES = [
    ("nyud", "n1", 0.05),
    ("nyud", "n2", 0.15),
    ("nyud", "n3", 0.30),
    ("nyud", "n4", None),
    ("pascal", "p1", 0.05),
    ("pascal", "p2", 0.20),
    ("pascal", "p3", 0.35),
]


def _label_map(rng: np.random.Generator, shape: tuple[int, int], regions: int) -> np.ndarray:
    """Overlapping random polygons and ellipses on a background: a segmentation."""
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    for k in range(1, regions + 1):
        if rng.random() < 0.5:
            n = int(rng.integers(3, 7))
            centre = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
            radius = rng.uniform(0.08, 0.3) * min(h, w)
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            pts = centre + radius * np.stack([np.cos(angles), np.sin(angles)], 1)
            cv2.fillPoly(labels, [np.round(pts).astype(np.int32)], int(k))
        else:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(15, w // 3)), int(rng.integers(15, h // 3)))
            cv2.ellipse(labels, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(k), -1)
    return labels


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Where a pixel differs from its right or lower neighbour."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


def _prediction(rng: np.random.Generator, edges: np.ndarray, noise: float) -> np.ndarray:
    """A soft detector output: displaced, partly missed boundaries, clutter and noise."""
    h, w = edges.shape
    # Smooth random displacement field of a few pixels.
    flow = rng.normal(0.0, 1.0, (2, h // 16 + 2, w // 16 + 2)).astype(np.float32)
    flow = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in flow])
    flow *= 1.5 + 6 * noise
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    src = edges.astype(np.float32)
    keep = cv2.resize(
        (rng.random((h // 24 + 1, w // 24 + 1)) > noise).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_NEAREST,
    )
    src *= keep  # miss whole stretches of boundary
    moved = cv2.remap(src, grid_x + flow[0], grid_y + flow[1], cv2.INTER_LINEAR)
    clutter = _boundaries(_label_map(rng, (h, w), 4)).astype(np.float32) * (
        rng.random((h, w)) < 0.6
    )
    sigma = 1.0 + 2.5 * noise
    # Confidence varies smoothly over the image: a line's peak response between 0.3 and 0.95.
    peak = cv2.resize(
        rng.uniform(0.3, 0.95, (h // 48 + 2, w // 48 + 2)).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_LINEAR,
    )
    gain = peak * np.sqrt(2 * np.pi) * sigma  # a blurred one-pixel line peaks at 1/(√(2π)σ)
    response = cv2.GaussianBlur(moved + 0.6 * clutter, (0, 0), sigma) * gain
    response += np.abs(rng.normal(0.0, noise, (h, w))) * 0.5 + noise * cv2.GaussianBlur(
        rng.random((h, w)).astype(np.float32), (0, 0), 3.0
    )
    return np.clip(response, 0.0, 1.0)


def make_inputs() -> list[dict]:
    """Every fixture image: group, id, maxDist, the ground-truth label map and the 8-bit PNG."""
    rng = np.random.default_rng(2026_11_30)
    out = []
    for group, image_id, noise in IMAGES:
        shape = GROUPS[group]["shape"]
        labels = _label_map(rng, shape, 6 if group == "nyud" else 12)
        edges = _boundaries(labels)
        if group == "nyud":
            # The NYUD-v2 edge PNG: boundaries 1-2 pixels wide, 0/255, read as a segmentation.
            thick = cv2.dilate(edges.astype(np.uint8), np.ones((2, 2), np.uint8))
            gt = (thick * 255).astype(np.uint8)
        else:
            gt = labels  # the Context LabelMap, boundaries by seg2bmap
        if noise is None:
            prob = np.zeros(shape)
        else:
            prob = _prediction(rng, edges, noise)
        pred = (255 * prob).astype(np.uint8)  # truncation, as the published repos write it
        out.append(
            {
                "group": group,
                "id": image_id,
                "max_dist": GROUPS[group]["max_dist"],
                "gt": gt,
                "pred": pred,
            }
        )
    return out


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes."""
    h = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def write_inputs(out_dir: Path) -> None:
    """Write the inputs as PNGs in the layout of the SEISM harness (see the module docstring)."""
    items = make_inputs()
    index: dict = {"groups": {}, "images": {}}
    for item in items:
        group_dir = out_dir / item["group"]
        for sub in ("gt", "pred"):
            (group_dir / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(group_dir / sub / f"{item['id']}.png"), item[sub])
        index["groups"][item["group"]] = {"max_dist": item["max_dist"]}
        index["images"][item["id"]] = {
            "group": item["group"],
            "gt_sha256": digest(item["gt"]),
            "pred_sha256": digest(item["pred"]),
        }
    for group in index["groups"]:
        ids = [i["id"] for i in items if i["group"] == group]
        (out_dir / group / "ids.txt").write_text("\n".join(ids) + "\n")
    (out_dir / "inputs.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/seism_inputs.py OUT_DIR")
    write_inputs(Path(sys.argv[1]))
