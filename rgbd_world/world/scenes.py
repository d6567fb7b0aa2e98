"""Procedural RGB-D scenes: 1-3 primitives on a textured ground plane, ray cast in numpy.

A scene is fully determined by its index: ``scene(index)`` seeds a ``numpy.random.Generator``
from ``(WORLD_SEED, index)``, draws a layout (:func:`sample_spec`), renders it
(:func:`render`) and writes a caption from a small grammar (:func:`caption_for`).

World frame: y is up, the ground is the plane y = 0, the camera looks along +z (no yaw, a
slight downward pitch) from a random height. Every pixel has a finite depth: rays that
miss everything, and ground hits farther than ``FAR``, end on a backdrop (sky) at metric
z-depth ``FAR``.

Depth is metric z-depth (distance along the camera's optical axis, not along the ray):
camera rays are built as ``forward + u * right + v * up`` (forward component 1), so the ray
parameter t of a hit *is* its z-depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORLD_SEED = 20250605
FAR = 20.0  # metric z-depth of the backdrop (sky)
NEAR_DEPTH = 2.4  # median nearest z-depth of the world's scenes (metres): the scale read into generated depth maps
HFOV_DEG = 50.0  # horizontal field of view; images are square so the vertical one is equal
EPS = 1e-4

SPLITS = {"train": (0, 100_000), "test": (1_000_000, 1_001_000)}

COLOURS = {  # linear RGB albedo in [0, 1]
    "red": (0.85, 0.10, 0.08),
    "green": (0.12, 0.68, 0.18),
    "blue": (0.10, 0.28, 0.90),
    "yellow": (0.95, 0.85, 0.12),
    "purple": (0.55, 0.18, 0.75),
    "orange": (0.98, 0.48, 0.08),
    "white": (0.93, 0.93, 0.93),
    "cyan": (0.10, 0.80, 0.85),
}
SHAPES = ("sphere", "cube", "cylinder", "cone")
PLURAL = {"sphere": "spheres", "cube": "cubes", "cylinder": "cylinders", "cone": "cones"}
SIZES = {"small": (0.3, 0.4), "": (0.45, 0.58), "large": (0.72, 0.88)}  # radius / half-width
OBJECT_TEXTURES = ("", "striped", "checkered")  # "" = plain
GROUND_TEXTURES = ("checkered", "striped")
GROUND_TONES = (  # (tone a, tone b) pairs for the floor pattern, not named in captions
    ((0.62, 0.62, 0.62), (0.38, 0.38, 0.40)),
    ((0.72, 0.62, 0.46), (0.46, 0.34, 0.22)),
    ((0.80, 0.80, 0.76), (0.52, 0.56, 0.62)),
    ((0.50, 0.58, 0.44), (0.32, 0.40, 0.28)),
)
RELATIONS = ("left of", "right of", "in front of", "behind")
NUMBERS = {2: "two", 3: "three"}

# Every word a caption can contain (the text tokenizer is built from this list).
VOCABULARY = sorted(
    set(
        "a an and on floor".split()
        + [w for r in RELATIONS for w in r.split()]
        + list(NUMBERS.values())
        + list(COLOURS)
        + list(SHAPES)
        + list(PLURAL.values())
        + [s for s in SIZES if s]
        + [t for t in OBJECT_TEXTURES if t]
        + list(GROUND_TEXTURES)
    )
)


@dataclass(frozen=True)
class SceneObject:
    """One primitive standing on the ground.

    shape: one of SHAPES; colour: key of COLOURS; size: "small" | "" | "large";
    texture: "" | "striped" | "checkered"; x, z: ground position of its vertical axis (metres);
    radius: sphere/cylinder/cone radius or cube half-width; height: cylinder/cone height
    (cube: 2*radius, sphere: 2*radius); yaw: cube rotation about the vertical axis (radians).
    """

    shape: str
    colour: str
    size: str
    texture: str
    x: float
    z: float
    radius: float
    height: float
    yaw: float = 0.0

    def phrase(self) -> str:
        """Noun phrase without article, e.g. "small striped red cube"."""
        return " ".join(w for w in (self.size, self.texture, self.colour, self.shape) if w)

    def with_article(self) -> str:
        """Noun phrase with "a" or "an", e.g. "an orange cone"."""
        text = self.phrase()
        return ("an " if text[0] in "aeiou" else "a ") + text


@dataclass(frozen=True)
class Camera:
    """Pinhole camera. position (3,) world metres; rotation (3, 3) with columns (right, up,
    forward) in world coordinates; focal in pixels; pixel (row i, col j) centre looks along
    ``forward + ((j + 0.5 - W/2) / focal) * right - ((i + 0.5 - H/2) / focal) * up``."""

    position: np.ndarray
    rotation: np.ndarray
    focal: float
    width: int
    height: int


@dataclass(frozen=True)
class Light:
    """kind "directional": ``vector`` is the unit direction towards the light;
    kind "point": ``vector`` is the light position. ambient, intensity: scalars."""

    kind: str
    vector: tuple
    ambient: float
    intensity: float


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render a scene (independent of resolution)."""

    objects: tuple
    camera_height: float
    camera_pitch: float  # radians, positive = looking down
    light: Light
    ground_texture: str
    ground_tones: tuple
    ground_scale: float  # pattern period in metres
    ground_angle: float  # pattern rotation about the vertical axis (radians)
    sky_top: tuple
    sky_bottom: tuple
    mention_ground: bool
    relation: str  # relation of objects[0] to objects[1], "" for one object


@dataclass
class Scene:
    """A rendered scene.

    rgb: uint8 (H, W, 3); depth: float32 (H, W) metric z-depth in (0, FAR], finite everywhere;
    labels: int8 (H, W) with the object index, -1 for ground, -2 for backdrop;
    caption: str; objects: tuple of SceneObject; camera: Camera; spec: SceneSpec; index: int.
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    caption: str
    objects: tuple
    camera: Camera
    spec: SceneSpec
    index: int = -1


# ----------------------------------------------------------------------------------------
# splits and seeding


def split_indices(split: str) -> range:
    """Scene indices of a fixed split: "train" -> range(0, 100000), "test" ->
    range(1000000, 1001000). The ranges are disjoint. Raises ValueError for other names."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    return range(*SPLITS[split])


def rng_for(index: int) -> np.random.Generator:
    """The generator that scene ``index`` draws from (seeded by (WORLD_SEED, index))."""
    if index < 0:
        raise ValueError(f"scene index must be >= 0, got {index}")
    return np.random.default_rng([WORLD_SEED, int(index)])


def scene(index: int, size: int = 64, supersample: int = 2) -> Scene:
    """Render scene ``index`` at ``size`` x ``size`` pixels. Deterministic: the same index
    gives the same layout, caption and pixels at every call. See :func:`render` for
    ``supersample``."""
    spec = sample_spec(rng_for(index))
    out = render(spec, size=size, supersample=supersample)
    out.index = int(index)
    return out


# ----------------------------------------------------------------------------------------
# layout sampling and captions


def _camera_basis(pitch: float) -> np.ndarray:
    c, s = np.cos(pitch), np.sin(pitch)
    right = np.array([1.0, 0.0, 0.0])
    forward = np.array([0.0, -s, c])
    up = np.cross(forward, right)
    return np.stack([right, up, forward], axis=1)


def _relation(a: SceneObject, b: SceneObject) -> str | None:
    """Relation of a to b as seen from the camera (x is camera right, z is away from the
    camera); None when neither axis clearly dominates."""
    dx, dz = a.x - b.x, a.z - b.z
    if max(abs(dx), abs(dz)) < 0.5 or 0.7 < abs(dx) / max(abs(dz), 1e-9) < 1.4:
        return None
    if abs(dx) > abs(dz):
        return "left of" if dx < 0 else "right of"
    return "in front of" if dz < 0 else "behind"


def _poorly_visible(objects, height: float, pitch: float, size: int = 32) -> bool:
    """True if, in a 32x32 trace of the layout, some object covers fewer than 4 pixels when
    alone (too small or out of frame) or shows less than 40% of those pixels in the full
    scene (hidden behind another object)."""
    cam = _camera(height, pitch, size)
    d = camera_rays(cam).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[:, 1] < 0, -height / d[:, 1], np.inf)
    ts = np.stack([INTERSECT[o.shape](cam.position, d, o)[0] for o in objects])
    alone = ts < np.minimum(t_ground, FAR)
    front = alone & (ts <= ts.min(axis=0))
    n_alone, n_front = alone.sum(axis=1), front.sum(axis=1)
    return bool((n_alone < 4).any() or (n_front < 0.4 * n_alone).any())


def sample_spec(rng: np.random.Generator, max_tries: int = 100) -> SceneSpec:
    """Draw a scene layout: 1-3 non-overlapping objects inside the view (each at least 40%
    visible; partial occlusion happens), camera height
    1.4-2.2 m and pitch 12-22 degrees down, a directional (70%) or point light, a floor
    pattern. Raises RuntimeError if no valid layout is found in ``max_tries`` draws
    (does not happen with the built-in ranges)."""
    n_obj = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    height = float(rng.uniform(1.4, 2.2))
    pitch = float(np.deg2rad(rng.uniform(12.0, 22.0)))
    tan_half = np.tan(np.deg2rad(HFOV_DEG) / 2)
    colours, shapes = list(COLOURS), list(SHAPES)
    for _ in range(max_tries):
        objects = []
        same_as_first = n_obj >= 2 and rng.random() < 0.2  # makes "two red spheres" captions
        for k in range(n_obj):
            if k == 1 and same_as_first:
                shape, colour = objects[0].shape, objects[0].colour
            else:
                shape, colour = shapes[rng.integers(len(shapes))], colours[rng.integers(len(colours))]
            size = ("small", "", "large")[rng.integers(3)]
            texture = OBJECT_TEXTURES[rng.choice(3, p=[0.75, 0.125, 0.125])]
            radius = float(rng.uniform(*SIZES[size]))
            z = float(rng.uniform(3.5, 7.5))
            x_max = max(0.0, 0.8 * (z * tan_half - radius))
            x = float(rng.uniform(-x_max, x_max))
            if shape == "cylinder":
                h = float(radius * rng.uniform(1.4, 2.4))
            elif shape == "cone":
                h = float(radius * rng.uniform(1.8, 2.8))
            else:
                h = 2 * radius
            yaw = float(rng.uniform(0, np.pi / 2)) if shape == "cube" else 0.0
            objects.append(SceneObject(shape, colour, size, texture, x, z, radius, h, yaw))
        ok = all(
            np.hypot(a.x - b.x, a.z - b.z) > 1.45 * (a.radius + b.radius) + 0.15
            for i, a in enumerate(objects)
            for b in objects[i + 1 :]
        )
        relation = ""
        if ok and n_obj >= 2:
            relation = _relation(objects[0], objects[1]) or ""
            ok = bool(relation)
        if ok and not _poorly_visible(objects, height, pitch):
            break
    else:
        raise RuntimeError("no valid layout found; widen the placement ranges")

    if rng.random() < 0.7:
        az, el = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(30, 70))
        vec = (np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az))
        light = Light("directional", tuple(float(v) for v in vec), float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.8, 1.0)))
    else:
        pos = (rng.uniform(-4, 4), rng.uniform(4, 7), rng.uniform(2, 8))
        light = Light("point", tuple(float(v) for v in pos), float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.9, 1.1)))
    tones = GROUND_TONES[rng.integers(len(GROUND_TONES))]
    sky_top = tuple(float(v) for v in np.array([0.35, 0.55, 0.9]) * rng.uniform(0.8, 1.1))
    sky_bottom = tuple(float(v) for v in np.array([0.8, 0.85, 0.92]) * rng.uniform(0.9, 1.05))
    return SceneSpec(
        objects=tuple(objects),
        camera_height=height,
        camera_pitch=pitch,
        light=light,
        ground_texture=GROUND_TEXTURES[rng.integers(2)],
        ground_tones=tones,
        ground_scale=float(rng.uniform(0.8, 1.6)),
        ground_angle=float(rng.uniform(0, np.pi)),
        sky_top=sky_top,
        sky_bottom=sky_bottom,
        mention_ground=bool(rng.random() < 0.4),
        relation=relation,
    )


def caption_for(spec: SceneSpec) -> str:
    """Caption from the grammar

        caption  := objects [" on a " ("checkered" | "striped") " floor"]
        objects  := ART NP                                   (one object)
                  | ART NP " " REL " " ART NP [" and " ART NP]  (objects differ)
                  | "two " colour " " shapes [" and " ART NP]   (first two share colour+shape)
        ART      := "a" | "an" (before a vowel)
        NP       := [size] [texture] colour shape
        REL      := "left of" | "right of" | "in front of" | "behind"

    REL describes objects[0] relative to objects[1] from the camera's viewpoint.
    """
    o = spec.objects
    if len(o) == 1:
        text = o[0].with_article()
    elif o[0].shape == o[1].shape and o[0].colour == o[1].colour:
        text = f"two {o[0].colour} {PLURAL[o[0].shape]}"
        if len(o) == 3:
            text += f" and {o[2].with_article()}"
    else:
        text = f"{o[0].with_article()} {spec.relation} {o[1].with_article()}"
        if len(o) == 3:
            text += f" and {o[2].with_article()}"
    if spec.mention_ground:
        text += f" on a {spec.ground_texture} floor"
    return text


def parse_caption(caption: str) -> dict:
    """Parse a caption of the :func:`caption_for` grammar.

    Returns {"objects": [(size, texture, colour, shape), ...] in caption order (a "two ..."
    phrase gives two entries with size and texture None, i.e. unspecified), "relation": str
    ("" if none), "floor": "" | "checkered" | "striped"}. Raises ValueError naming the first
    word that does not fit the grammar.
    """
    words = caption.split()
    pos = 0
    out = {"objects": [], "relation": "", "floor": ""}

    def expect(*options):
        nonlocal pos
        if pos >= len(words) or words[pos] not in options:
            got = words[pos] if pos < len(words) else "<end>"
            raise ValueError(f"caption {caption!r}: expected one of {options} at word {pos}, got {got!r}")
        pos += 1
        return words[pos - 1]

    def noun_phrase():
        nonlocal pos
        size = texture = ""
        if pos < len(words) and words[pos] in ("small", "large"):
            size = expect("small", "large")
        if pos < len(words) and words[pos] in ("striped", "checkered") and (pos + 1 < len(words) and words[pos + 1] in COLOURS):
            texture = expect("striped", "checkered")
        colour = expect(*COLOURS)
        shape = expect(*SHAPES)
        return (size, texture, colour, shape)

    first = expect("a", "an", "two")
    if first == "two":
        colour = expect(*COLOURS)
        plural = expect(*PLURAL.values())
        shape = next(s for s, p in PLURAL.items() if p == plural)
        out["objects"] += [(None, None, colour, shape)] * 2
    else:
        out["objects"].append(noun_phrase())
        if pos < len(words) and words[pos] in ("left", "right", "in", "behind"):
            w = expect("left", "right", "in", "behind")
            if w in ("left", "right"):
                out["relation"] = f"{w} {expect('of')}"
            elif w == "in":
                out["relation"] = f"in {expect('front')} {expect('of')}"
            else:
                out["relation"] = "behind"
            expect("a", "an")
            out["objects"].append(noun_phrase())
    if pos < len(words) and words[pos] == "and":
        expect("and")
        expect("a", "an")
        out["objects"].append(noun_phrase())
    if pos < len(words):
        expect("on")
        expect("a")
        out["floor"] = expect(*GROUND_TEXTURES)
        expect("floor")
    if pos != len(words):
        raise ValueError(f"caption {caption!r}: unexpected word {words[pos]!r} at {pos}")
    return out


# ----------------------------------------------------------------------------------------
# ray casting: intersect_<shape>(o, d, obj) takes origins o (N, 3) or (3,) and directions
# d (N, 3), not necessarily unit length, and returns (t (N,) ray parameter of the nearest hit
# with t > EPS, np.inf for a miss; unit normals (N, 3); hit points (N, 3) in the object's
# frame, used for textures). Formulas: the usual quadric / slab intersections.


def _nearest_root(a, b, c, valid_fn):
    """Smallest root t > EPS of a t^2 + b t + c = 0 for which valid_fn(t) holds, else inf."""
    disc = b * b - 4 * a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = (-b - sq) / (2 * a)
        r2 = (-b + sq) / (2 * a)
    lo, hi = np.minimum(r1, r2), np.maximum(r1, r2)
    ok = disc >= 0
    t = np.full(a.shape, np.inf)
    for r in (lo, hi):
        good = ok & (r > EPS) & valid_fn(r)
        t = np.where(good & (r < t), r, t)
    return t


def intersect_sphere(o, d, obj: SceneObject):
    """Ray-sphere intersection (sphere resting on the ground, centre at y = radius)."""
    c = np.array([obj.x, obj.radius, obj.z])
    oc = o - c
    a = np.einsum("ij,ij->i", d, d)
    b = 2 * np.einsum("ij,ij->i", np.broadcast_to(oc, d.shape), d)
    cc = np.einsum("ij,ij->i", np.broadcast_to(oc, d.shape), np.broadcast_to(oc, d.shape)) - obj.radius**2
    t = _nearest_root(a, b, cc, lambda r: np.ones_like(r, bool))
    p = o + t[:, None] * d
    n = (p - c) / obj.radius
    return t, n, p - c


def intersect_cube(o, d, obj: SceneObject):
    """Ray-box intersection (slab method) for a cube of half-width radius, yawed about y."""
    cy, sy = np.cos(obj.yaw), np.sin(obj.yaw)
    rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])  # local -> world (columns)
    centre = np.array([obj.x, obj.radius, obj.z])
    ol = (o - centre) @ rot
    dl = d @ rot
    ol = np.broadcast_to(ol, dl.shape)
    h = obj.radius
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dl
        t1, t2 = (-h - ol) * inv, (h - ol) * inv
    tlo, thi = np.minimum(t1, t2), np.maximum(t1, t2)
    tlo = np.nan_to_num(tlo, nan=-np.inf)
    thi = np.nan_to_num(thi, nan=np.inf)
    tmin, tmax = tlo.max(axis=1), thi.min(axis=1)
    hit = (tmax >= tmin) & (tmax > EPS)
    t = np.where(hit, np.where(tmin > EPS, tmin, tmax), np.inf)
    axis = np.where(tmin > EPS, tlo.argmax(axis=1), thi.argmin(axis=1))
    pl = ol + np.where(np.isfinite(t), t, 0)[:, None] * dl
    nl = np.zeros_like(dl)
    rows = np.arange(len(dl))
    nl[rows, axis] = np.sign(pl[rows, axis])
    return t, nl @ rot.T, pl


def intersect_cylinder(o, d, obj: SceneObject):
    """Ray intersection with a vertical closed cylinder, y in [0, height]."""
    ox = np.broadcast_to(o, d.shape)
    px, py, pz = ox[:, 0] - obj.x, ox[:, 1], ox[:, 2] - obj.z
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dz * dz
    b = 2 * (px * dx + pz * dz)
    c = px * px + pz * pz - obj.radius**2
    t_side = _nearest_root(a, b, c, lambda r: (py + r * dy >= 0) & (py + r * dy <= obj.height))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_top = (obj.height - py) / dy
    qx, qz = px + t_top * dx, pz + t_top * dz
    t_top = np.where((t_top > EPS) & (qx * qx + qz * qz <= obj.radius**2), t_top, np.inf)
    t = np.minimum(t_side, t_top)
    tt = np.where(np.isfinite(t), t, 0)
    local = np.stack([px + tt * dx, py + tt * dy, pz + tt * dz], axis=1)
    n = np.stack([local[:, 0], np.zeros_like(tt), local[:, 2]], axis=1) / obj.radius
    n = np.where((t_top <= t_side)[:, None], np.array([0.0, 1.0, 0.0]), n)
    return t, n, local


def intersect_cone(o, d, obj: SceneObject):
    """Ray intersection with a vertical cone: base radius at y = 0, apex at y = height."""
    ox = np.broadcast_to(o, d.shape)
    px, py, pz = ox[:, 0] - obj.x, ox[:, 1], ox[:, 2] - obj.z
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    k2 = (obj.radius / obj.height) ** 2
    yo = obj.height - py
    a = dx * dx + dz * dz - k2 * dy * dy
    b = 2 * (px * dx + pz * dz) + 2 * k2 * yo * dy
    c = px * px + pz * pz - k2 * yo * yo
    t = _nearest_root(a, b, c, lambda r: (py + r * dy >= 0) & (py + r * dy <= obj.height))
    tt = np.where(np.isfinite(t), t, 0)
    local = np.stack([px + tt * dx, py + tt * dy, pz + tt * dz], axis=1)
    n = np.stack([local[:, 0], k2 * (obj.height - local[:, 1]), local[:, 2]], axis=1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return t, n, local


INTERSECT = {"sphere": intersect_sphere, "cube": intersect_cube, "cylinder": intersect_cylinder, "cone": intersect_cone}


def _camera(height: float, pitch: float, size: int) -> Camera:
    focal = (size / 2) / np.tan(np.deg2rad(HFOV_DEG) / 2)
    return Camera(np.array([0.0, height, 0.0]), _camera_basis(pitch), float(focal), size, size)


def camera_for(spec: SceneSpec, size: int) -> Camera:
    """The spec's camera at ``size`` x ``size`` pixels."""
    return _camera(spec.camera_height, spec.camera_pitch, size)


def camera_rays(cam: Camera, supersample: int = 1) -> np.ndarray:
    """Ray directions (H*s, W*s, 3) with forward component 1 (t = z-depth), s = supersample,
    sub-pixel centres spread evenly inside each pixel."""
    s = supersample
    js = (np.arange(cam.width * s) + 0.5) / s
    is_ = (np.arange(cam.height * s) + 0.5) / s
    u = (js - cam.width / 2) / cam.focal
    v = -(is_ - cam.height / 2) / cam.focal
    right, up, forward = cam.rotation.T
    return forward + u[None, :, None] * right + v[:, None, None] * up


def _trace(o, d, objects):
    """Nearest object hit: t (N,), object index (N,) (-1 none), normals (N, 3), local (N, 3)."""
    n_rays = len(d)
    t = np.full(n_rays, np.inf)
    idx = np.full(n_rays, -1, np.int8)
    normal = np.zeros((n_rays, 3))
    local = np.zeros((n_rays, 3))
    for k, obj in enumerate(objects):
        tk, nk, lk = INTERSECT[obj.shape](o, d, obj)
        closer = tk < t
        t = np.where(closer, tk, t)
        idx[closer] = k
        normal[closer] = nk[closer]
        local[closer] = lk[closer]
    return t, idx, normal, local


def _pattern(kind: str, u: np.ndarray, v: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """0/1 pattern: "checkered" (2D or 3D parity) or "striped" (bands along u)."""
    if kind == "striped":
        return (np.floor(u) % 2).astype(bool)
    s = np.floor(u) + np.floor(v) + (np.floor(w) if w is not None else 0)
    return (s % 2).astype(bool)


def _shade(spec: SceneSpec, cam: Camera, d: np.ndarray):
    """Colour (N, 3) in [0, 1], z-depth (N,), labels (N,) for camera rays d (N, 3)."""
    o = cam.position
    t_obj, idx, normal, local = _trace(o, d, spec.objects)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[:, 1] < 0, -o[1] / d[:, 1], np.inf)
    ground = (t_ground < t_obj) & (t_ground < FAR)
    obj_hit = (idx >= 0) & ~ground & (t_obj < FAR)
    sky = ~ground & ~obj_hit
    labels = np.where(obj_hit, idx, np.where(ground, -1, -2)).astype(np.int8)
    depth = np.where(obj_hit, t_obj, np.where(ground, t_ground, FAR))
    p = o + np.where(sky, 0.0, depth)[:, None] * d

    albedo = np.zeros_like(d)
    n = np.where(ground[:, None], np.array([0.0, 1.0, 0.0]), normal)
    # floor pattern in a rotated ground frame
    ca, sa = np.cos(spec.ground_angle), np.sin(spec.ground_angle)
    gu = (ca * p[:, 0] + sa * p[:, 2]) / spec.ground_scale
    gv = (-sa * p[:, 0] + ca * p[:, 2]) / spec.ground_scale
    tone_a, tone_b = (np.array(c) for c in spec.ground_tones)
    albedo[ground] = np.where(_pattern(spec.ground_texture, gu, gv)[ground, None], tone_a, tone_b)
    for k, obj in enumerate(spec.objects):
        m = obj_hit & (idx == k)
        base = np.array(COLOURS[obj.colour])
        if obj.texture:
            scale = obj.radius / 2
            lu, lv, lw = local[m, 1] / scale, local[m, 0] / scale, local[m, 2] / scale
            dark = _pattern(obj.texture, lu, lv, lw)
            albedo[m] = np.where(dark[:, None], 0.45 * base, base)
        else:
            albedo[m] = base

    lit = ~sky
    light = spec.light
    if light.kind == "directional":
        to_light = np.broadcast_to(np.array(light.vector), d.shape)
        falloff = np.ones(len(d))
    else:
        delta = np.array(light.vector) - p
        dist = np.linalg.norm(delta, axis=1)
        to_light = delta / np.maximum(dist, 1e-9)[:, None]
        falloff = np.clip((7.0 / np.maximum(dist, 1e-9)) ** 2, 0, 1.5)
    lambert = np.clip(np.einsum("ij,ij->i", n, to_light), 0, None) * falloff
    # cast shadows: one shadow ray per lit pixel, against the objects only
    sel = np.flatnonzero(lit & (lambert > 0))
    shadow = np.zeros(len(d), bool)
    if len(sel) and spec.objects:
        origins = p[sel] + 1e-3 * n[sel]
        ts, _, _, _ = _trace(origins, np.ascontiguousarray(to_light[sel]), spec.objects)
        if light.kind == "point":
            ts = np.where(ts < dist[sel], ts, np.inf)
        shadow[sel] = np.isfinite(ts)
    shading = light.ambient + light.intensity * lambert * ~shadow
    colour = np.clip(albedo * shading[:, None], 0, 1)
    # sky: vertical gradient by ray elevation
    elev = d[:, 1] / np.linalg.norm(d, axis=1)
    g = np.clip(elev * 3 + 0.3, 0, 1)[:, None]
    sky_col = (1 - g) * np.array(spec.sky_bottom) + g * np.array(spec.sky_top)
    colour = np.where(sky[:, None], np.clip(sky_col, 0, 1), colour)
    return colour, depth, labels


def render(spec: SceneSpec, size: int = 64, supersample: int = 2) -> Scene:
    """Ray cast a spec at ``size`` x ``size`` (any size >= 8; 32, 64 and 128 are tested).

    rgb is shaded with ``supersample`` x ``supersample`` rays per pixel, averaged
    (anti-aliased edges); depth and labels come from the single ray through each pixel
    centre, so depth is exact per pixel (metric z-depth, float32). Shading: Lambertian with
    ambient term, one directional or point light, hard cast shadows from the objects.
    Raises ValueError for size < 8 or supersample < 1.
    """
    if size < 8 or supersample < 1:
        raise ValueError(f"render needs size >= 8 and supersample >= 1, got size={size}, supersample={supersample}")
    cam = camera_for(spec, size)
    d = camera_rays(cam, 1).reshape(-1, 3)
    colour, depth, labels = _shade(spec, cam, d)
    if supersample > 1:
        ds = camera_rays(cam, supersample).reshape(-1, 3)
        cs, _, _ = _shade(spec, cam, ds)
        colour = cs.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3)).reshape(-1, 3)
    rgb = np.round(np.clip(colour, 0, 1) ** (1 / 1.6) * 255).astype(np.uint8).reshape(size, size, 3)
    return Scene(
        rgb=rgb,
        depth=depth.astype(np.float32).reshape(size, size),
        labels=labels.reshape(size, size),
        caption=caption_for(spec),
        objects=spec.objects,
        camera=cam,
        spec=spec,
    )
