"""The image operations of the SEISM boundary benchmark, ported to NumPy.

Each function is a port of one routine of the reference code that the multitask papers' boundary
numbers come from (SEISM as packaged in prismformore/Boundary-Detection-Evaluation-Tools, which
bundles Piotr Dollár's toolbox and Structured Edge code). The reference computes in single
precision with running sums; the ports follow its arithmetic operation by operation in float32,
so that the suppressed maps agree bit for bit, not merely to a tolerance: a threshold compares
against those values, and a last-bit difference would move a pixel across it.

* :func:`conv_tri` — ``convTri.m`` / ``convConst.cpp`` (``convTri``, ``convTriY``);
* :func:`gradient2` — ``gradient2.m`` / ``gradientMex.cpp`` (``grad1``);
* :func:`nms_orientation` — the orientation in ``read_one_cont_png.m``;
* :func:`edges_nms` — ``edgesNmsMex.cpp``;
* :func:`seg2bmap` — ``seg2bmap.m`` (BSDS);
* :func:`thin` — MATLAB's ``bwmorph(bw, 'thin', Inf)``.
"""

from __future__ import annotations

import cv2
import numpy as np

F32 = np.float32


def conv_tri(image: np.ndarray, radius: int) -> np.ndarray:
    """Dollár's ``convTri``: triangle filter of integer radius, symmetric borders, float32.

    The reference filters along x with a running sum (``T`` the slope, ``U`` the value), then
    along y with another (``t``, ``u``); numpy's ``add.accumulate`` adds sequentially in the
    array's dtype, which is exactly that recurrence. Images smaller than the filter take the
    reference's plain-convolution path (``nomex``), computed here in float32 too.
    """
    image = np.asarray(image, F32)
    if isinstance(radius, bool) or int(radius) != radius or radius < 1:
        raise ValueError(f"conv_tri supports integer radii >= 1 (SEISM uses 4), got {radius!r}")
    radius = int(radius)
    h, w = image.shape
    if min(h, w) < 4 or 2 * radius + 1 >= min(h, w):
        kernel = np.array([*range(1, radius + 1), radius + 1, *range(radius, 0, -1)], np.float64)
        kernel = (kernel / (radius + 1) ** 2).astype(F32)
        padded = np.pad(image, radius, mode="symmetric")
        return cv2.sepFilter2D(padded, cv2.CV_32F, kernel, kernel)[radius:-radius, radius:-radius]
    if radius == 1:
        # The reference uses its [1 p 1] filter for r <= 1, a different kernel path.
        raise ValueError("conv_tri radius 1 is not ported; SEISM uses radius 4")
    return _tri_y(_tri_x(image, radius), radius)


def _tri_x(image: np.ndarray, radius: int) -> np.ndarray:
    """The x pass of ``convTri`` (columns are the reference's outer loop)."""
    r = radius + 1
    w = image.shape[1]
    nrm = F32(1.0) / F32(r * r * r * r)
    cols = image.T  # cols[i] is column i, as the reference walks them
    t = cols[0].copy()
    u = cols[0].copy()
    for i in range(1, r):
        t = t + cols[i]
        u = u + t
    u0 = nrm * (F32(2) * u - t)
    i = np.arange(1, w)
    left = np.where(i <= r, r - i, i - 1 - r)
    right = np.where(i > w - r, 2 * w - r - i, i - 1 + r)
    steps = (cols[left] + cols[right]) + F32(-2) * cols[i - 1]
    slope = np.add.accumulate(steps, axis=0, dtype=F32)  # T starts at 0
    out = np.add.accumulate(np.concatenate([u0[None], nrm * slope]), axis=0, dtype=F32)
    return out.T


def _tri_y(image: np.ndarray, radius: int) -> np.ndarray:
    """The y pass of ``convTri`` (``convTriY``), run on every column at once."""
    r = radius + 1
    h = image.shape[0]
    rows = image  # rows[j] is row j, as convTriY walks a column
    t = rows[0].copy()
    u = rows[0].copy()
    for j in range(1, r):
        t = t + rows[j]
        u = u + t
    u = F32(2) * u - t
    j = np.arange(1, h)
    first = np.where(j < r + 1, r - j, j - r - 1)
    second = np.where(j < h - r + 1, r - 1 + j, 2 * h - r - j)
    steps = (rows[first] + rows[second]) - F32(2) * rows[j - 1]
    slope = np.add.accumulate(steps, axis=0, dtype=F32)  # t starts at 0
    return np.add.accumulate(np.concatenate([u[None], slope]), axis=0, dtype=F32)


def gradient2(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dollár's ``gradient2``: central differences, one-sided at the borders, float32."""
    image = np.asarray(image, F32)
    half = F32(0.5)
    gx = np.empty_like(image)
    gy = np.empty_like(image)
    gx[:, 1:-1] = (image[:, 2:] - image[:, :-2]) * half
    gx[:, 0] = image[:, 1] - image[:, 0]
    gx[:, -1] = image[:, -1] - image[:, -2]
    gy[1:-1] = (image[2:] - image[:-2]) * half
    gy[0] = image[1] - image[0]
    gy[-1] = image[-1] - image[-2]
    return gx, gy


def nms_orientation(edge: np.ndarray) -> np.ndarray:
    """Boundary orientation as ``read_one_cont_png.m`` computes it, on the unsmoothed map.

    ``[Ox,Oy] = gradient2(convTri(E,4)); Oxx = gradient2(Ox); [Oxy,Oyy] = gradient2(Oy);
    O = mod(atan(Oyy.*sign(-Oxy)./(Oxx+1e-5)), pi)``, in single precision.
    """
    ox, oy = gradient2(conv_tri(edge, 4))
    oxx, _ = gradient2(ox)
    oxy, oyy = gradient2(oy)
    ratio = (oyy * np.sign(-oxy)) / (oxx + F32(1e-5))
    angle = np.arctan(ratio.astype(np.float64)).astype(F32)  # atanf, correctly rounded
    return np.where(angle < 0, angle + F32(np.pi), angle)  # mod(x, pi) for x in (-pi/2, pi/2)


def edges_nms(
    edge: np.ndarray,
    orientation: np.ndarray,
    r: int = 1,
    s: int = 5,
    m: float = 1.01,
    skip_below: float | None = None,
) -> np.ndarray:
    """Dollár's ``edgesNmsMex``: suppress pixels weaker than their neighbours along the normal.

    A pixel is kept when ``m × value`` is at least the bilinear interpolation of the map at
    ``±1..r`` pixels along its orientation; then values within ``s`` pixels of the border are
    damped linearly. Float32 throughout, as the reference.

    Args:
        edge: the boundary map (H×W, float32 values in [0, 1]).
        orientation: :func:`nms_orientation` of it.
        r, s, m: the reference's radius, border width and conservative multiplier.
        skip_below: pixels with a value at most this are passed through unsuppressed. They are
            below every threshold that will be applied (border damping only lowers values) and
            the comparisons read the original map, so the thresholded results are unchanged.
    """
    edge = np.asarray(edge, F32)
    h, w = edge.shape
    out = edge.copy()
    candidates = edge > (0.0 if skip_below is None else skip_below)
    ys, xs = np.nonzero(candidates)
    theta = orientation[ys, xs].astype(np.float64)
    cos_o = np.cos(theta).astype(F32)  # cosf/sinf, correctly rounded
    sin_o = np.sin(theta).astype(F32)
    e = edge[ys, xs] * F32(m)
    flat = edge.ravel()
    suppressed = np.zeros(ys.size, bool)
    for d in range(-r, r + 1):
        if d == 0:
            continue
        px = xs.astype(F32) + F32(d) * cos_o
        py = ys.astype(F32) + F32(d) * sin_o
        e0 = _interp(flat, h, w, px, py)
        suppressed |= e < e0
    out[ys[suppressed], xs[suppressed]] = 0
    s = min(s, w // 2, h // 2)
    for x in range(s):
        factor = F32(x) / F32(s)
        out[:, x] *= factor
        out[:, w - 1 - x] *= factor
    for y in range(s):
        factor = F32(y) / F32(s)
        out[y, :] *= factor
        out[h - 1 - y, :] *= factor
    return out


def _interp(flat: np.ndarray, h: int, w: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``interp`` of edgesNmsMex: clamped bilinear interpolation, float32, its term order."""
    x = np.where(x < 0, F32(0), np.where(x.astype(np.float64) > w - 1.001, F32(w - 1.001), x))
    y = np.where(y < 0, F32(0), np.where(y.astype(np.float64) > h - 1.001, F32(h - 1.001), y))
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    dx0 = x - x0.astype(F32)
    dy0 = y - y0.astype(F32)
    dx1 = F32(1) - dx0
    dy1 = F32(1) - dy0
    i00 = flat[y0 * w + x0]
    i10 = flat[y0 * w + x0 + 1]
    i01 = flat[(y0 + 1) * w + x0]
    i11 = flat[(y0 + 1) * w + x0 + 1]
    return ((i00 * dx1 * dy1 + i10 * dx0 * dy1) + i01 * dx1 * dy0) + i11 * dx0 * dy0


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """BSDS ``seg2bmap``: pixels whose right, lower or lower-right neighbour has another label.

    The boundary sits half a pixel towards the origin; the last row compares only with its right
    neighbour, the last column only with the pixel below, and the corner is never a boundary.
    """
    seg = np.asarray(seg)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg != e) | (seg != s) | (seg != se)
    b[-1, :] = seg[-1, :] != e[-1, :]
    b[:, -1] = seg[:, -1] != s[:, -1]
    b[-1, -1] = False
    return b


def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two sub-iterations (Lam, Lee and Suen's conditions G1-G3).

    Indexed by the 3×3 neighbourhood weighted NW=1, N=2, NE=4, W=8, C=16, E=32, SW=64, S=128,
    SE=256; an entry is True where the centre pixel is set and deleted.
    """
    index = np.arange(512)
    bit = {name: (index >> k) & 1 for k, name in enumerate("nw n ne w c e sw s se".split())}
    # x1..x8 counter-clockwise from east.
    x = [bit["e"], bit["ne"], bit["n"], bit["nw"], bit["w"], bit["sw"], bit["s"], bit["se"]]
    x = [v.astype(bool) for v in x]
    xk = lambda k: x[(k - 1) % 8]  # noqa: E731 - 1-based, wrapping x9 = x1
    crossings = sum((~xk(2 * i - 1) & (xk(2 * i) | xk(2 * i + 1))).astype(int) for i in range(1, 5))
    n1 = sum((xk(2 * k - 1) | xk(2 * k)).astype(int) for k in range(1, 5))
    n2 = sum((xk(2 * k) | xk(2 * k + 1)).astype(int) for k in range(1, 5))
    g12 = (crossings == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    g3 = ~((xk(2) | xk(3) | ~xk(8)) & xk(1))
    g3p = ~((xk(6) | xk(7) | ~xk(4)) & xk(5))
    centre = bit["c"].astype(bool)
    return centre & g12 & g3, centre & g12 & g3p


_DELETE = _thin_luts()
_WEIGHTS = np.array([[1, 2, 4], [8, 16, 32], [64, 128, 256]], np.float32)


def thin(binary: np.ndarray) -> np.ndarray:
    """MATLAB's ``bwmorph(bw, 'thin', Inf)``: both sub-iterations until an iteration changes nothing.

    The neighbourhood index is one ``cv2.filter2D`` on the bounding box of the set pixels (plus a
    zero border: thinning looks at 3×3 neighbourhoods and only removes pixels).
    """
    binary = np.asarray(binary, bool)
    out = np.zeros(binary.shape, bool)
    rows = np.flatnonzero(binary.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(binary.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    x = np.pad(binary[y0:y1, x0:x1], 1).astype(np.uint8)
    while True:
        changed = False
        for delete in _DELETE:
            index = cv2.filter2D(x, cv2.CV_16S, _WEIGHTS, borderType=cv2.BORDER_CONSTANT)
            gone = delete[index]
            if gone.any():
                x[gone] = 0
                changed = True
        if not changed:
            break
    out[y0:y1, x0:x1] = x[1:-1, 1:-1] > 0
    return out
