"""3D lifting of an RGB-D pair: a coloured point cloud and a grid mesh from an image and its disparity.

JointDiT gives an image and a relative disparity map that belong together (joint generation, or depth
estimation of a photo). This module turns such a pair into 3D geometry; :mod:`jointdit_core.export3d`
writes it as ``.ply`` / ``.glb``. Pure torch, no ComfyUI.

The model (assumptions, in order):

1. **Disparity to depth.** The depth branch gives relative disparity ``d`` in [0, 1] (near = 1), which is
   an affine function of inverse depth with an unknown scale and shift (the JointDiT paper trains on
   per-image min-max normalised disparity, as Depth Anything does). Two numbers fix it; the user gives them
   as the depth of the nearest and of the farthest pixel, ``near`` and ``far`` (any unit, e.g. metres), and
   depth is interpolated in inverse depth::

       1 / z = 1 / far + d * (1 / near - 1 / far)        d = 1 -> z = near,  d = 0 -> z = far

   With ``normalize`` (default) the map is first min-max normalised per image, so its nearest pixel lands
   exactly at ``near`` and its farthest at ``far``. Only the ratio ``far / near`` changes the shape; the
   absolute values scale the whole scene. If the true depths of the nearest and farthest pixel are known,
   this mapping reproduces the true depth exactly (inverse depth is affine in ``d``). Depth-like maps
   (``kind="depth"``: near = dark, affine in depth, e.g. Marigold's) are interpolated linearly instead:
   ``z = near + d * (far - near)``.
2. **Camera.** A pinhole camera at the origin with square pixels, the principal point at the image
   centre and a horizontal field of view ``fov_degrees`` across the image width (default 60 degrees, a
   typical photo; generated images have no true camera, and a wider field of view gives a deeper-looking
   scene). Pixel (row i, column j) has its centre at ``(j + 0.5, i + 0.5)``; focal length in pixels
   ``f = (W / 2) / tan(fov / 2)``.
3. **Frame.** Points are in the OpenGL / glTF camera frame: x right, y up, the camera looks along -z
   (a point at depth z has z coordinate ``-z``)::

       x = (j + 0.5 - W / 2) / f * z,   y = -(i + 0.5 - H / 2) / f * z,   z_gl = -z

   glTF viewers (ComfyUI's 3D preview included) then show the scene upright, seen from the camera.
4. **Mesh.** Every 2x2 block of neighbouring pixels gives two triangles (counter-clockwise seen from the
   camera). A triangle whose vertices lie at very different depths spans a depth discontinuity (an object
   edge against the background) and is dropped when ``(z_max - z_min) / z_min > edge_threshold``, the
   relative depth-edge test of MoGe (Wang et al., CVPR 2025; its default 0.03). The ratio is per pixel
   step, so it grows as the image gets smaller: 0.03 suits images of 512 px and more; small images
   (64 px) need 0.1 - 0.2. ``edge_threshold`` 0 (or None) keeps every triangle.
5. **Equirectangular panoramas** (``projection="equirectangular"``, a 360-degree image, width = 2 x height):
   the camera sits at the centre of a sphere; pixel (i, j) looks along longitude and latitude::

       lon = 2 pi (j + 0.5) / W - pi,   lat = pi / 2 - pi (i + 0.5) / H

   and its depth is the distance from the centre along that ray (a panorama has no optical axis)::

       x = z cos(lat) sin(lon),   y = z sin(lat),   z_gl = -z cos(lat) cos(lon)

   so the image centre (lon = lat = 0) lies straight ahead along -z, as in the pinhole frame. The mesh joins
   the last column to the first (the wrap seam is closed; its triangles pass the same edge test) and is
   counter-clockwise seen from the centre, so a viewer placed inside sees the scene around it.
6. **Background.** Optionally pixels whose (normalised) disparity is below ``background_threshold`` are
   removed (sky and far background sit at d ~ 0); 0 keeps everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .depth import normalize_disparity

DEFAULT_FOV_DEGREES = 60.0  # horizontal field of view of a typical photo (35 mm-equivalent focal length ~31 mm)
DEFAULT_NEAR, DEFAULT_FAR = 1.0, 10.0  # depth of the nearest / farthest pixel (only far / near = 10 shapes the scene)
DEFAULT_EDGE_THRESHOLD = 0.03  # MoGe's default relative depth-edge threshold
MAP_KINDS = ("disparity", "depth")  # near = bright (affine in 1 / z) or near = dark (affine in z)
PROJECTIONS = ("perspective", "equirectangular")  # a pinhole photo, or a 360-degree panorama (module docstring, item 5)


@dataclass(frozen=True)
class LiftedRGBD:
    """A lifted RGB-D pair: the kept pixels as vertices, and the grid triangles between them.

    Attributes:
        points: (N, 3) float32 vertex positions, OpenGL camera frame (x right, y up, camera looks along -z),
            in the unit of ``near`` / ``far``.
        colors: (N, 3) uint8 vertex colours (the image's pixels).
        uvs: (N, 2) float32 texture coordinates of the vertices in the image, OpenGL convention (origin at the
            bottom-left corner; u = (j + 0.5) / W, v = 1 - (i + 0.5) / H).
        faces: (M, 3) int64 vertex indices (into ``points``), counter-clockwise seen from the camera.
        pixels: (N,) int64 flat index ``i * W + j`` of each vertex's pixel in the (H, W) grid.
        depth: (H, W) float32 depth z > 0 of every pixel (before any removal).
        image: (H, W, 3) uint8 the image (for a texture).
        fov_degrees: the horizontal field of view used (360 for an equirectangular panorama).
        projection: one of :data:`PROJECTIONS`.
    """

    points: np.ndarray
    colors: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    pixels: np.ndarray
    depth: np.ndarray
    image: np.ndarray
    fov_degrees: float
    projection: str = "perspective"


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def focal_from_fov(width: int, fov_degrees: float = DEFAULT_FOV_DEGREES) -> float:
    """Focal length in pixels of a pinhole camera with horizontal field of view ``fov_degrees`` over ``width`` px.

    ``f = (width / 2) / tan(fov / 2)``. Raises ValueError for width < 1 or a field of view outside (0, 180).
    """
    fov = float(fov_degrees)
    if not 0 < fov < 180:
        raise ValueError(f"fov_degrees must lie in (0, 180) degrees, got {fov_degrees}")
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    return (width / 2) / math.tan(math.radians(fov) / 2)


def disparity_to_depth(disparity01: Tensor, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR, kind: str = "disparity") -> Tensor:
    """Relative disparity in [0, 1] (near = 1) -> depth z, interpolating inverse depth between ``far`` and ``near``.

    ``1 / z = 1 / far + d * (1 / near - 1 / far)``: d = 1 gives ``near``, d = 0 gives ``far`` (module docstring).
    ``kind="depth"``: a relative depth map (near = 0) instead, ``z = near + d * (far - near)``.

    Args:
        disparity01: (..., H, W) float tensor with values in [0, 1].
        near, far: depths of the nearest and farthest value, ``0 < near < far`` (finite).
        kind: one of MAP_KINDS.
    Returns:
        float64 tensor of the input's shape, depths in [near, far].
    Raises:
        ValueError: NaN / infinite values, values outside [0, 1], bad ``near`` / ``far`` or ``kind``.
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"kind must be one of {MAP_KINDS}, got {kind!r}")
    near, far = _check_positive("near", near), _check_positive("far", far)
    if not near < far:
        raise ValueError(f"near must be smaller than far (the nearest pixel's depth, then the farthest's), got near={near}, far={far}")
    d = disparity01.double()
    if not torch.isfinite(d).all():
        raise ValueError("the depth map contains NaN or infinite values; fix the depth map (or the node that made it)")
    if d.numel() and (d.min() < 0 or d.max() > 1):
        raise ValueError(f"disparity must lie in [0, 1] (got {float(d.min()):.4g} .. {float(d.max()):.4g}); switch normalize on")
    if kind == "depth":
        return near + d * (far - near)
    return 1.0 / (1.0 / far + d * (1.0 / near - 1.0 / far))


def _positive_map(depth: Tensor, caller: str) -> Tensor:
    """``depth`` as float64 after checking it is one (H, W) map, finite and > 0 (else ValueError naming ``caller``)."""
    if depth.ndim != 2:
        raise ValueError(f"{caller} needs one (H, W) depth map, got shape {tuple(depth.shape)}")
    z = depth.double()
    if not torch.isfinite(z).all() or (z <= 0).any():
        raise ValueError("depth must be finite and > 0 at every pixel")
    return z


def unproject(depth: Tensor, fov_degrees: float = DEFAULT_FOV_DEGREES) -> Tensor:
    """Depth map -> one 3D point per pixel (pinhole camera, OpenGL frame; module docstring, items 2-3).

    Args:
        depth: (H, W) float, z-depth (distance along the optical axis) > 0.
        fov_degrees: horizontal field of view across the width, in (0, 180).
    Returns:
        (H, W, 3) float64 points ``(x, y, -z)``.
    Raises:
        ValueError: not (H, W), non-finite or non-positive depth, bad field of view.
    """
    z = _positive_map(depth, "unproject")
    h, w = z.shape
    f = focal_from_fov(w, fov_degrees)
    u = (torch.arange(w, dtype=torch.float64, device=z.device) + 0.5 - w / 2) / f
    v = (torch.arange(h, dtype=torch.float64, device=z.device) + 0.5 - h / 2) / f
    return torch.stack([u[None, :] * z, -v[:, None] * z, -z], dim=-1)


def unproject_equirectangular(distance: Tensor) -> Tensor:
    """Distance map of an equirectangular panorama -> one 3D point per pixel (module docstring, item 5).

    Args:
        distance: (H, W) float, distance from the panorama's centre > 0 (W = 2 H for a full sphere; any
            W covers 360 degrees of longitude and H 180 degrees of latitude).
    Returns:
        (H, W, 3) float64 points in the OpenGL frame (y up; the image centre along -z).
    Raises:
        ValueError: not (H, W), non-finite or non-positive distances.
    """
    r = _positive_map(distance, "unproject_equirectangular")
    h, w = r.shape
    lon = 2 * math.pi * (torch.arange(w, dtype=torch.float64, device=r.device) + 0.5) / w - math.pi
    lat = math.pi / 2 - math.pi * (torch.arange(h, dtype=torch.float64, device=r.device) + 0.5) / h
    lon, lat = lon[None, :], lat[:, None]
    return torch.stack([r * lat.cos() * lon.sin(), r * lat.sin().expand_as(r), -r * lat.cos() * lon.cos()], dim=-1)


def grid_faces(height: int, width: int, wrap: bool = False) -> Tensor:
    """The two triangles of every 2x2 pixel block of an (H, W) grid, as flat pixel indices.

    Cell (i, j) with corners a = (i, j), b = (i, j+1), c = (i+1, j), d = (i+1, j+1) gives (a, c, b) and
    (b, c, d): counter-clockwise seen from a camera looking along -z at an image with rows going down.
    ``wrap``: column W-1 is also joined to column 0 (the seam of a 360-degree panorama), W-1 more cells.

    Returns:
        (2 * (H-1) * (W-1 or W with wrap), 3) int64, triangles of cell (i, j) at rows
        ``2 * (i * cells_per_row + j)`` and the next.
    """
    idx = torch.arange(height * width).reshape(height, width)
    right = torch.roll(idx, -1, dims=1) if wrap else idx[:, 1:]
    idx = idx if wrap else idx[:, :-1]
    a, b, c, d = idx[:-1], right[:-1], idx[1:], right[1:]
    tri = torch.stack([torch.stack([a, c, b], -1), torch.stack([b, c, d], -1)], dim=2)  # (H-1, W-1, 2, 3)
    return tri.reshape(-1, 3)


def edge_mask(depth: Tensor, faces: Tensor, edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD) -> Tensor:
    """True for the triangles to keep: relative depth spread ``(z_max - z_min) / z_min <= edge_threshold``.

    Args:
        depth: (H, W) depth > 0; faces: (M, 3) flat pixel indices; edge_threshold: > 0, or 0 / None = keep all.
    Returns:
        (M,) bool.
    Raises:
        ValueError: a negative or non-finite threshold.
    """
    if edge_threshold is None or edge_threshold == 0:
        return torch.ones(len(faces), dtype=torch.bool)
    if not math.isfinite(edge_threshold) or edge_threshold < 0:
        raise ValueError(f"edge_threshold must be >= 0 (0 keeps every triangle), got {edge_threshold}")
    z = depth.reshape(-1)[faces]
    zmin, zmax = z.min(dim=1).values, z.max(dim=1).values
    return (zmax - zmin) <= edge_threshold * zmin


def _as_image(rgb) -> np.ndarray:
    """(H, W, 3|4) uint8 or float in [0, 1] (numpy or torch) -> (H, W, 3) uint8."""
    x = rgb.detach().cpu().numpy() if isinstance(rgb, Tensor) else np.asarray(rgb)
    if x.ndim != 3 or x.shape[-1] not in (3, 4):
        raise ValueError(f"the image must be (H, W, 3), got shape {tuple(x.shape)}")
    x = x[..., :3]
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("the image contains NaN or infinite values")
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def lift_rgbd(
    rgb,
    disparity,
    *,
    kind: str = "disparity",
    fov_degrees: float = DEFAULT_FOV_DEGREES,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    normalize: bool = True,
    edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD,
    background_threshold: float = 0.0,
    stride: int = 1,
    projection: str = "perspective",
) -> LiftedRGBD:
    """Lift an image and its relative disparity map to a coloured point cloud and mesh (module docstring).

    Args:
        rgb: (H, W, 3) image, uint8 or float in [0, 1] (numpy array or torch tensor; alpha dropped).
        disparity: (H, W) relative disparity, near = large (numpy or torch). With ``normalize`` any finite
            range (min-max normalised per image); without, values in [0, 1].
        kind: "disparity" (near = large, the JointDiT / Depth Anything convention) or "depth" (near = small;
            ``background_threshold`` then applies to ``1 - d``).
        fov_degrees: horizontal field of view, (0, 180).
        near, far: depth of disparity 1 and 0 (``0 < near < far``).
        normalize: min-max normalise the disparity first (nearest pixel -> near, farthest -> far).
        edge_threshold: relative depth-edge threshold for triangles (0 / None: keep all).
        background_threshold: drop pixels with normalised disparity below this, in [0, 1) (0: keep all).
        stride: keep every ``stride``-th row and column (fewer vertices; same camera), >= 1.
        projection: "perspective" (a pinhole photo) or "equirectangular" (a 360-degree panorama; depth is the
            distance from the centre, ``fov_degrees`` is not used, the seam is closed; module docstring, item 5).
    Returns:
        :class:`LiftedRGBD`.
    Raises:
        ValueError: image and depth sizes differ, NaN / infinite depth, values outside [0, 1] without
            ``normalize``, or a parameter out of range (each message says which and what to do).
    """
    image = _as_image(rgb)
    d = torch.as_tensor(disparity.detach().cpu() if isinstance(disparity, Tensor) else np.asarray(disparity)).double()
    if d.ndim != 2:
        raise ValueError(f"the depth map must be (H, W), got shape {tuple(d.shape)}")
    if tuple(d.shape) != image.shape[:2]:
        raise ValueError(
            f"the image is {image.shape[1]}x{image.shape[0]} (W x H) but the depth map is {d.shape[1]}x{d.shape[0]}: "
            "they must be the same size (resize one, e.g. with ImageScale)"
        )
    if not torch.isfinite(d).all():
        raise ValueError("the depth map contains NaN or infinite values; fix the depth map (or the node that made it)")
    if not 0 <= background_threshold < 1:
        raise ValueError(f"background_threshold must lie in [0, 1) (0 keeps every pixel), got {background_threshold}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    panorama = projection == "equirectangular"
    if normalize:
        d = normalize_disparity(d).double()
    depth = disparity_to_depth(d, near, far, kind)
    if kind == "depth":
        d = 1.0 - d  # disparity-like (near = 1) for the background test
    points = unproject_equirectangular(depth) if panorama else unproject(depth, fov_degrees)
    h, w = depth.shape
    rows, cols = torch.arange(0, h, stride), torch.arange(0, w, stride)
    sub = rows[:, None] * w + cols[None, :]  # (h', w') flat pixel indices of the kept grid
    keep = d.reshape(-1)[sub.reshape(-1)] >= background_threshold if background_threshold > 0 else torch.ones(sub.numel(), dtype=torch.bool)
    faces = grid_faces(len(rows), len(cols), wrap=panorama)
    faces = faces[keep[faces].all(dim=1) & edge_mask(depth.reshape(-1)[sub.reshape(-1)], faces, edge_threshold)]
    new_index = torch.cumsum(keep.long(), 0) - 1  # grid index -> vertex index among kept pixels
    pixels = sub.reshape(-1)[keep]
    i, j = pixels // w, pixels % w
    uvs = torch.stack([(j + 0.5) / w, 1 - (i + 0.5) / h], dim=-1)
    return LiftedRGBD(
        points=points.reshape(-1, 3)[pixels].float().numpy(),
        colors=image.reshape(-1, 3)[pixels.numpy()],
        uvs=uvs.float().numpy(),
        faces=new_index[faces].numpy().astype(np.int64),
        pixels=pixels.numpy().astype(np.int64),
        depth=depth.float().numpy(),
        image=image,
        fov_degrees=360.0 if panorama else float(fov_degrees),
        projection=projection,
    )
