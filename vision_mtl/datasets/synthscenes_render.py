"""SynthScenes: procedural indoor scenes with exact dense ground truth, ray cast in numpy.

A closed box-shaped room holds a few primitives standing on the floor; one pinhole ray per pixel
is cast against all surfaces at once (no per-pixel Python loops), so every label is exact at the
image size: class, z-depth, normal, instance boundaries, object mask and object parts. It costs
nothing to download, never runs out and is a pure function of its seed, which makes it the data
set that smoke tests, CI and small experiments can rely on.

Frames. World: metres, y up, floor at y = 0, the room spans x in [-w/2, w/2], y in [0, h] and
z in [-d, 0]; the camera stands near the front wall (z = 0) and looks towards -z. Camera: x right,
y up, z towards the viewer (the OpenGL convention of :mod:`vision_mtl.tasks`). Ray directions are
scaled to camera z = -1, so the ray parameter of a hit *is* its z-depth.

Normals are exact and face the viewer (n · ray <= 0). With a perspective camera that does not
imply camera-frame z > 0 everywhere: the ceiling seen by a camera pitched down, the side wall the
camera is turned away from and the far silhouette of an off-centre object all have z < 0 (about
15 % of pixels); forcing z > 0 there would make those normals wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_F32 = np.float32
SEMSEG_CLASSES = ("floor", "wall", "ceiling", "sphere", "box", "cylinder", "cone")
PART_CLASSES = ("background", "top", "upper_side", "lower_side")
OBJECT_KINDS = ("sphere", "box", "cylinder", "cone")
#: Instance ids of the room surfaces; object ``k`` has id ``FIRST_OBJECT_ID + k``.
FLOOR, CEILING, WALL_LEFT, WALL_RIGHT, WALL_BACK, WALL_FRONT = range(6)
FIRST_OBJECT_ID = 6
#: Vertical field of view in degrees. Fixed, as a real data set's sensor is (NYUD-v2's Kinect has
#: one set of intrinsics): with a random focal length absolute depth would be ambiguous.
DEFAULT_FOV_Y = 60.0
#: Camera height above the floor in metres, drawn per scene (a hand-held sensor).
DEFAULT_CAMERA_HEIGHT = (1.2, 1.7)
_ROOM_SEMSEG = np.array([0, 2, 1, 1, 1, 1], np.uint8)
# Inward normals of the room surfaces by instance id, one row per axis (x, y, z).
_ROOM_NORMALS = np.array([[0, 0, 1, -1, 0, 0], [1, -1, 0, 0, 0, 0], [0, 0, 0, 0, 1, -1]], _F32)
_EPS = 1e-4  # hits closer than this along a ray are the ray's own origin surface


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera ``Ry(yaw) Rx(pitch) Rz(roll)``, radians: yaw > 0 left, pitch < 0 down."""
    cy, sy, cp, sp, cr, sr = (f(a) for a in (yaw, pitch, roll) for f in (math.cos, math.sin))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random colours (3×n); one distribution for all classes, so none shows its class."""
    h, s, v = rng.random(n) * 6, rng.uniform(0.0, 0.85, n), rng.uniform(0.3, 1.0, n)
    sector = h.astype(np.intp) % 6
    f = h - np.floor(h)
    lo, down, up = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))  # HSV -> RGB
    orders = ((v, down, lo, lo, up, v), (up, v, v, down, lo, lo), (lo, lo, up, v, v, down))
    rgb = [np.choose(sector, order) for order in orders]
    return np.stack(rgb).astype(_F32)


def _draw(rng: np.random.Generator, value: float | Sequence[float]) -> float:
    """A fixed value, or uniform in a ``(low, high)`` range; one draw either way, so fixing a
    parameter never shifts the random stream of the rest of the scene."""
    low, high = (value, value) if np.isscalar(value) else (float(value[0]), float(value[1]))
    return low + (high - low) * rng.random()


def sample_scene(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    fov_y: float | Sequence[float] = DEFAULT_FOV_Y,
    camera_height: float | Sequence[float] = DEFAULT_CAMERA_HEIGHT,
) -> dict:
    """Draw the random parameters of one scene: room, camera, objects, lights and materials."""
    height, width = image_size
    room = dict(w=rng.uniform(4, 8), d=rng.uniform(4, 8), h=rng.uniform(2.5, 3.5))
    fov = math.radians(_draw(rng, fov_y))
    yaw, pitch, roll = (math.radians(rng.uniform(a, b)) for a, b in ((-15, 15), (-20, 0), (-5, 5)))
    cam = (rng.uniform(-0.25, 0.25) * room["w"], _draw(rng, camera_height), -rng.uniform(0.2, 0.7))
    half_hfov = math.atan(width / height * math.tan(fov / 2))
    objects = []
    for _ in range(int(rng.integers(3, 9))):
        kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
        if kind == "sphere":
            obj = dict(r=rng.uniform(0.2, 0.6))
            obj["h"] = 2 * obj["r"]
        elif kind == "box":
            obj = dict(
                hx=rng.uniform(0.15, 0.6), hz=rng.uniform(0.15, 0.6), h=rng.uniform(0.3, 1.4)
            )
            obj.update(r=math.hypot(obj["hx"], obj["hz"]), angle=rng.uniform(0, math.pi))
        elif kind == "cylinder":
            obj = dict(r=rng.uniform(0.12, 0.45), h=rng.uniform(0.3, 1.6))
        else:
            obj = dict(r=rng.uniform(0.2, 0.55), h=rng.uniform(0.4, 1.6))
        foot = obj["r"]  # radius of the footprint (a box's half diagonal)
        # Aim inside the horizontal field of view, then keep the footprint inside the room and
        # at least 0.4 m in front of the camera (so the camera is never inside an object).
        heading = yaw + rng.uniform(-0.85, 0.85) * half_hfov
        # Biased towards the camera: far objects would be a few pixels at 96×128.
        dist = 1.3 + max(0.2, 0.95 * (room["d"] + cam[2]) - 1.3) * rng.random() ** 1.5
        x = cam[0] - dist * math.sin(heading)
        z = cam[2] - dist * math.cos(heading)
        x = min(max(x, -room["w"] / 2 + foot + 0.05), room["w"] / 2 - foot - 0.05)
        z = min(max(z, -room["d"] + foot + 0.05), cam[2] - foot - 0.4)
        rho = math.hypot(foot, obj["h"] / 2)  # bounding sphere radius, for shadow culling
        objects.append(dict(obj, kind=kind, x=x, z=z, rho=rho))
    lights = []
    for _ in range(int(rng.integers(1, 3))):
        x, y, z = rng.uniform(-0.45, 0.45), rng.uniform(0.1, 0.6), -rng.uniform(0.1, 0.9)
        pos = (x * room["w"], room["h"] - y, z * room["d"])
        tint = np.array([1.0, 1.0, 1.0], _F32) + rng.uniform(-0.12, 0.12, 3).astype(_F32)
        lights.append(dict(pos=pos, colour=tint * rng.uniform(0.6, 1.2)))
    n_inst = FIRST_OBJECT_ID + len(objects)
    direction = rng.normal(size=(3, n_inst))
    materials = dict(
        kind=rng.integers(0, 4, n_inst),  # 0 plain, 1 checker, 2 stripes, 3 value noise
        c1=_colours(rng, n_inst),
        c2=_colours(rng, n_inst),
        scale=rng.uniform(0.1, 0.6, n_inst).astype(_F32),  # metres per tile / stripe / noise cell
        direction=(direction / np.linalg.norm(direction, axis=0)).astype(_F32),
        sharpness=rng.uniform(0.5, 4.0, n_inst).astype(_F32),
        offset=rng.uniform(0, 64, (3, n_inst)).astype(_F32),
        perm=np.tile(rng.permutation(256), 2),
        values=rng.random(256).astype(_F32),
    )
    return dict(
        room=room, fov=fov, yaw=yaw, pitch=pitch, roll=roll, position=cam, objects=objects,
        lights=lights, ambient=rng.uniform(0.1, 0.3), materials=materials,
        noise_sigma=rng.uniform(0.5, 5.0),
    )  # fmt: skip


# Ray-primitive intersections. Origins and directions are (x, y, z) triples of arrays or scalars
# that broadcast; each returns the nearest hit parameter t > _EPS (inf on a miss) and what the
# normal computation needs to know about the hit (which face), or None.


def _hit_sphere(o: dict, ox, oy, oz, dx, dy, dz):
    ox, oy, oz, r = ox - o["x"], oy - o["r"], oz - o["z"], o["r"]
    a = dx * dx + dy * dy + dz * dz
    b = ox * dx + oy * dy + oz * dz
    disc = b * b - a * (ox * ox + oy * oy + oz * oz - r * r)
    t = (-b - np.sqrt(disc)) / a  # NaN on a miss, and NaN > _EPS is False
    return np.where(t > _EPS, t, np.inf), None


def _hit_box(o: dict, ox, oy, oz, dx, dy, dz):
    c, s = math.cos(o["angle"]), math.sin(o["angle"])
    ox, oz = ox - o["x"], oz - o["z"]
    lo = (c * ox - s * oz, oy - o["h"] / 2, s * ox + c * oz)  # into the box's own frame
    ld = (c * dx - s * dz, dy, s * dx + c * dz)
    half = (o["hx"], o["h"] / 2, o["hz"])
    near, far = [], []
    for p, d, h in zip(lo, ld, half):
        t1, t2 = (-h - p) / d, (h - p) / d
        near.append(np.minimum(t1, t2))
        far.append(np.maximum(t1, t2))
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
    t = np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf)
    return t, np.where(t_near == near[1], 1, np.where(t_near == near[0], 0, 2)).astype(np.uint8)


def _hit_cylinder(o: dict, ox, oy, oz, dx, dy, dz):
    ox, oz, r, h = ox - o["x"], oz - o["z"], o["r"], o["h"]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    t_side = (-b - np.sqrt(b * b - a * (ox * ox + oz * oz - r * r))) / a
    y = oy + t_side * dy
    t = np.where((t_side > _EPS) & (y >= 0) & (y <= h), t_side, np.inf)
    t_cap = (h - oy) / dy  # the bottom cap lies on the floor and is never reached
    cx, cz = ox + t_cap * dx, oz + t_cap * dz
    cap = (t_cap > _EPS) & (cx * cx + cz * cz <= r * r) & (t_cap < t)
    return np.where(cap, t_cap, t), cap.astype(np.uint8)


def _hit_cone(o: dict, ox, oy, oz, dx, dy, dz):
    ox, oz, h = ox - o["x"], oz - o["z"], o["h"]
    k2, q = (o["r"] / h) ** 2, h - oy  # side: x² + z² = k²(h - y)²
    a = dx * dx + dz * dz - k2 * dy * dy
    b = ox * dx + oz * dz + k2 * q * dy
    root = np.sqrt(b * b - a * (ox * ox + oz * oz - k2 * q * q))
    best = np.inf
    for t in ((-b - root) / a, (-b + root) / a):  # a may be negative: test both roots
        y = oy + t * dy  # the lower nappe of the double cone is cut away by 0 <= y <= h
        best = np.minimum(best, np.where((t > _EPS) & (y >= 0) & (y <= h), t, np.inf))
    return best, None  # the base disc lies on the floor and is never reached


_HIT = dict(sphere=_hit_sphere, box=_hit_box, cylinder=_hit_cylinder, cone=_hit_cone)


def _surface(o: dict, px, py, pz, dx, dz, aux):
    """Outward world normals and part labels of hits ``p`` on ``o`` by rays along ``d``."""
    kind, h = o["kind"], o["h"]
    side_part = np.where(py > h / 2, 2, 3).astype(np.uint8)  # upper / lower side
    ox, oz = px - o["x"], pz - o["z"]
    if kind == "sphere":
        r = o["r"]
        n = (ox / r, (py - r) / r, oz / r)
        part = np.where(py > 2 * h / 3, 1, side_part)
    elif kind == "cone":
        k = o["r"] / h
        # The apex has no normal; within 1 mm of the axis take the side facing the ray.
        near_axis = ox * ox + oz * oz < 1e-6
        ox, oz = np.where(near_axis, -dx, ox), np.where(near_axis, -dz, oz)
        rad = np.maximum(np.sqrt(ox * ox + oz * oz), 1e-12)
        inv = 1 / math.sqrt(1 + k * k)
        n = (ox / rad * inv, np.full_like(px, k * inv), oz / rad * inv)
        part = np.where(py > 2 * h / 3, 1, side_part)
    elif kind == "cylinder":
        rad = np.maximum(np.sqrt(ox * ox + oz * oz), 1e-6)
        cap = aux == 1
        n = (np.where(cap, 0, ox / rad), cap.astype(_F32), np.where(cap, 0, oz / rad))
        part = np.where(cap, 1, side_part)
    else:
        c, s = math.cos(o["angle"]), math.sin(o["angle"])
        lx, lz = c * ox - s * oz, s * ox + c * oz
        nlx = np.where(aux == 0, np.sign(lx), 0)
        nlz = np.where(aux == 2, np.sign(lz), 0)
        n = (c * nlx + s * nlz, (aux == 1).astype(_F32), -s * nlx + c * nlz)
        part = np.where(aux == 1, 1, side_part)
    return n, part.astype(np.uint8)


def _texture(mat: dict, inst: np.ndarray, px, py, pz) -> np.ndarray:
    """Albedo (3×N) from per-instance solid textures; colour is independent of the class.

    Per-instance parameters are channel-first so every look-up is a fast 1-D gather.
    """
    mix = np.zeros(px.shape, _F32)
    kind = mat["kind"][inst]
    for code in (1, 2, 3):
        sel = np.flatnonzero(kind == code)
        if not len(sel):
            continue
        i = inst[sel]
        inv_scale = 1 / mat["scale"][i]
        x, y, z = (p[sel] * inv_scale + off[i] for p, off in zip((px, py, pz), mat["offset"]))
        if code == 1:  # checkerboard
            mix[sel] = (np.floor(x) + np.floor(y) + np.floor(z)) % 2
        elif code == 2:  # stripes with a random direction and edge softness
            u = mat["direction"]
            wave = np.sin(np.float32(2 * np.pi) * (x * u[0][i] + y * u[1][i] + z * u[2][i]))
            mix[sel] = np.clip(0.5 + mat["sharpness"][i] * wave, 0, 1)
        else:
            mix[sel] = _value_noise(x, y, z, mat["perm"], mat["values"])
    return np.stack([c1[inst] + (c2 - c1)[inst] * mix for c1, c2 in zip(mat["c1"], mat["c2"])])


def _value_noise(x, y, z, perm: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Trilinear value noise on the integer lattice, hashed Perlin-style through ``perm``."""
    fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
    ix, iy, iz = (f.astype(np.intp) & 255 for f in (fx, fy, fz))
    ux, uy, uz = ((v - f) * (v - f) * (3 - 2 * (v - f)) for v, f in ((x, fx), (y, fy), (z, fz)))
    a, b = perm[ix] + iy, perm[ix + 1] + iy
    aa, ab, ba, bb = perm[a] + iz, perm[a + 1] + iz, perm[b] + iz, perm[b + 1] + iz

    corner = [values[perm[i]] for i in (aa, ba, ab, bb, aa + 1, ba + 1, ab + 1, bb + 1)]
    along_x = [lo + (hi - lo) * ux for lo, hi in zip(corner[::2], corner[1::2])]
    along_y = [lo + (hi - lo) * uy for lo, hi in zip(along_x[::2], along_x[1::2])]
    return along_y[0] + (along_y[1] - along_y[0]) * uz


def render_scene(
    rng_or_seed: np.random.Generator | int | Sequence[int],
    image_size: tuple[int, int] = (96, 128),
    fov_y: float | Sequence[float] = DEFAULT_FOV_Y,
    camera_height: float | Sequence[float] = DEFAULT_CAMERA_HEIGHT,
) -> dict:
    """Render one random scene with all its ground truth.

    Args:
        rng_or_seed: a generator (consumed), or a seed / seed sequence for
            :func:`numpy.random.default_rng`; the same seed always gives the same scene.
        image_size: ``(H, W)`` in pixels.
        fov_y: vertical field of view in degrees, or a ``(low, high)`` range to draw from.
        camera_height: camera height in metres, or a ``(low, high)`` range to draw from.

    Returns:
        ``image`` (H×W×3 uint8 RGB), ``semseg`` (uint8, :data:`SEMSEG_CLASSES`), ``depth``
        (float32 z-depth in metres), ``normals`` (H×W×3 float32, camera frame, facing the
        viewer), ``edge`` / ``saliency`` (uint8 0/1), ``human_parts`` (uint8,
        :data:`PART_CLASSES`), ``instance`` (int32 ids, see :data:`FIRST_OBJECT_ID`),
        ``camera`` and ``layout``. ``camera``: world-from-camera ``R``, ``position``, ``fov_y``,
        ``yaw``, ``pitch``, ``roll`` (degrees) and ``K``, OpenCV-style (pixel centres at integer
        coordinates): pixel (u, v) looks along ``((u - cx) / f, -(v - cy) / f, -1)``.
        ``layout``: ``room`` (``w``, ``d``, ``h``), ``objects`` (``kind``, base centre ``x``/
        ``z``, height ``h``, footprint radius ``r``; boxes also ``hx``, ``hz``, ``angle``) and
        ``lights`` (``pos``).
    """
    rng = rng_or_seed
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng_or_seed)
    height, width = (int(v) for v in image_size)
    if min(height, width) < 1:
        raise ValueError(f"image_size must be two positive integers (H, W), got {image_size!r}")
    scene = sample_scene(rng, (height, width), fov_y, camera_height)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = _cast(scene, height, width)
    # Sensor noise then quantisation, as a camera would; labels stay exact.
    noise = rng.standard_normal((height, width, 3), dtype=_F32) * _F32(scene["noise_sigma"])
    out["image"] = np.clip(out["image"] * 255 + noise + 0.5, 0, 255).astype(np.uint8)
    return out


def instance_edges(instance: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundaries of an instance-id map (bool H×W).

    A pixel is an edge when its right or bottom neighbour has another id (one consistent side,
    as PASCAL's edges are made from label maps). Where three surfaces meet, or a surface is a
    one-pixel sliver, that rule marks a solid 2×2 block; the bottom-right pixel of every such
    block is dropped, in one pass, so no 2×2 block survives (its three other pixels keep the
    contour connected) and every edge pixel still lies on an id change.
    """
    edge = np.zeros(instance.shape, bool)
    edge[:, :-1] |= instance[:, :-1] != instance[:, 1:]
    edge[:-1, :] |= instance[:-1, :] != instance[1:, :]
    block = edge[:-1, :-1] & edge[1:, :-1] & edge[:-1, 1:] & edge[1:, 1:]
    edge[1:, 1:] &= ~block
    return edge


def _object_rect(obj: dict, o, rot: np.ndarray, focal: float, height: int, width: int):
    """Pixel rows/columns that can see ``obj``: its bounding box projected, plus a margin.

    Primary rays are tested against an object only inside this rectangle, which is what makes
    eight objects cost little more than one. Falls back to the whole image when a corner is not
    safely in front of the camera (the projection would be meaningless there).
    """
    f, x, z = obj["r"], obj["x"] - o[0], obj["z"] - o[2]
    box = [(x + a, y - o[1], z + b) for a in (-f, f) for b in (-f, f) for y in (0, obj["h"])]
    cam = np.array(box) @ rot  # rows are R^T (corner - o)
    if cam[:, 2].max() > -0.05:
        return slice(0, height), slice(0, width)
    u = focal * cam[:, 0] / -cam[:, 2] + width / 2
    v = height / 2 - focal * cam[:, 1] / -cam[:, 2]
    rows = slice(max(0, math.floor(v.min()) - 1), max(0, min(height, math.ceil(v.max()) + 1)))
    cols = slice(max(0, math.floor(u.min()) - 1), max(0, min(width, math.ceil(u.max()) + 1)))
    return rows, cols


def _cast(scene: dict, height: int, width: int) -> dict:
    room, objects = scene["room"], scene["objects"]
    focal = 0.5 * height / math.tan(scene["fov"] / 2)
    rot = rotation(scene["yaw"], scene["pitch"], scene["roll"])
    r = [[float(v) for v in row] for row in rot]  # Python floats keep the arrays float32
    cu = ((np.arange(width, dtype=_F32) + _F32(0.5 - width / 2)) / _F32(focal))[None, :]
    cv = ((_F32(height / 2 - 0.5) - np.arange(height, dtype=_F32)) / _F32(focal))[:, None]
    d = tuple(r[i][0] * cu + r[i][1] * cv - r[i][2] for i in range(3))  # camera z = -1
    o = tuple(float(v) for v in scene["position"])

    # The room: the camera is inside, so each ray leaves through the nearest exit plane per axis
    # (abs() turns the -inf of a ray parallel to a plane into +inf).
    bounds = ((-room["w"] / 2, room["w"] / 2), (0.0, room["h"]), (-room["d"], 0.0))
    t, inst = None, None
    for axis, (oi, di, (lo, hi)) in enumerate(zip(o, d, bounds)):
        t_axis = np.abs(np.where(di > 0, _F32(hi - oi), _F32(lo - oi)) / di)
        # axis 0 -> left/right wall, 1 -> floor/ceiling, 2 -> back/front wall, by the ray's sign.
        inst_axis = (di > 0).astype(np.intp) + (WALL_LEFT, FLOOR, WALL_BACK)[axis]
        if t is None:
            t, inst = t_axis, inst_axis
        else:
            closer = t_axis < t
            t, inst = np.where(closer, t_axis, t), np.where(closer, inst_axis, inst)
    face = np.zeros((height, width), np.uint8)  # 1 = top face / cap, see _surface
    for k, obj in enumerate(objects):
        rows, cols = _object_rect(obj, o, rot, focal, height, width)
        t_view, i_view, f_view = t[rows, cols], inst[rows, cols], face[rows, cols]
        if not t_view.size:
            continue
        t_k, aux = _HIT[obj["kind"]](obj, *o, *(di[rows, cols] for di in d))
        closer = t_k < t_view
        t_view[closer] = t_k[closer]  # views: this writes into t, inst and face
        i_view[closer] = FIRST_OBJECT_ID + k
        f_view[closer] = 0 if aux is None else aux[closer]

    t, inst, face = t.ravel(), inst.ravel(), face.ravel()
    d = np.stack([np.broadcast_to(di, (height, width)).ravel() for di in d])
    p = np.array(o, _F32)[:, None] + t * d  # hit points, 3×N
    room_inst = np.minimum(inst, FIRST_OBJECT_ID - 1)
    n = _ROOM_NORMALS[:, room_inst]
    semseg = _ROOM_SEMSEG[room_inst]
    part = np.zeros(t.shape, np.uint8)
    for k, obj in enumerate(objects):
        sel = np.flatnonzero(inst == FIRST_OBJECT_ID + k)
        if len(sel):
            n[:, sel], part[sel] = _surface(obj, *p[:, sel], d[0, sel], d[2, sel], face[sel])
            semseg[sel] = 3 + OBJECT_KINDS.index(obj["kind"])
    # Face the viewer. First hits on closed solids already do, up to rounding on silhouettes,
    # where n is perpendicular to the ray: there a flip would turn the normal inside out, so the
    # tiny component along the ray is removed instead; only a clearly averted normal is flipped.
    nd, dd = (n * d).sum(0), (d * d).sum(0)
    flip = (nd > 0) & (nd * nd > 0.25 * dd)
    n = np.where(flip, -n, n) - np.maximum(np.where(flip, -nd, nd), 0) / dd * d
    n /= np.sqrt((n * n).sum(0))

    shade = _shade(scene, p, n, inst)
    albedo = _texture(scene["materials"], inst, *p)
    # sqrt is a cheap display gamma: linear shading looks too dark and too contrasty.
    image = np.sqrt(np.clip(albedo * shade, 0, 1)).reshape(3, height, width).transpose(1, 2, 0)
    n_cam = (rot.T.astype(_F32) @ n).reshape(3, height, width).transpose(1, 2, 0)
    semseg, instance = semseg.reshape(height, width), inst.reshape(height, width)
    k_mat = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
    return dict(
        image=image,
        semseg=semseg,
        depth=t.reshape(height, width),
        normals=np.ascontiguousarray(n_cam),
        edge=instance_edges(instance).astype(np.uint8),
        saliency=(semseg >= 3).astype(np.uint8),
        human_parts=part.reshape(height, width),
        instance=instance.astype(np.int32),
        camera=dict(
            K=k_mat,
            R=rot,
            position=np.array(scene["position"]),
            fov_y=math.degrees(scene["fov"]),
            **{key: math.degrees(scene[key]) for key in ("yaw", "pitch", "roll")},
        ),
        layout=dict(
            room=dict(room),
            objects=[dict(obj) for obj in objects],
            lights=[dict(pos=light["pos"]) for light in scene["lights"]],
        ),
    )


def _shade(scene: dict, p: np.ndarray, n: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Ambient plus Lambertian light (3×N) from the point lights, with cast shadows."""
    objects = scene["objects"]
    shade = np.full((3,) + inst.shape, scene["ambient"], _F32)  # channel first: fast broadcasts
    centres = np.array([(obj["x"], obj["h"] / 2, obj["z"]) for obj in objects])
    rho = np.array([obj["rho"] for obj in objects])
    for light in scene["lights"]:
        pos = np.array(light["pos"])
        to = pos.astype(_F32)[:, None] - p  # unnormalised: t in (0, 1) reaches the light
        dist = np.sqrt((to * to).sum(0))
        lambert = np.maximum((n * to).sum(0) / dist, 0)
        lit = np.flatnonzero(lambert > 0)
        to_lit, dist_lit = to[:, lit], dist[lit]
        # Cheap cull, all objects in one product: only points whose direction from the light
        # passes within an object's bounding sphere can be shadowed by it.
        w = centres - pos
        dw = np.sqrt((w * w).sum(1))
        cos_cone = np.sqrt(np.maximum(1 - (rho / dw) ** 2, 0)) * dw
        cos_cone[dw <= rho] = -np.inf  # the light is inside the sphere: test every point
        cand_mask = -(w.astype(_F32) @ to_lit) > cos_cone.astype(_F32)[:, None] * dist_lit
        for k, obj in enumerate(objects):
            cand = np.flatnonzero(cand_mask[k])
            # Objects are convex, so a pixel's own object can only shadow it where n · l <= 0,
            # which is dark already; the ray starts a hair off the surface.
            cand = cand[inst[lit[cand]] != FIRST_OBJECT_ID + k]
            if len(cand):
                idx = lit[cand]
                start = p[:, idx] + 1e-3 * n[:, idx]
                t_k, _ = _HIT[obj["kind"]](obj, *start, *to_lit[:, cand])
                lambert[idx[t_k < 1]] = 0
        shade += (lambert / (1 + (dist / 4) ** 2)) * light["colour"][:, None]
    return shade
