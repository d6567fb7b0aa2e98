"""A small software rasteriser (numpy): a coloured triangle mesh seen from a new viewpoint, as an image.

Used for the README's picture of a lifted RGB-D pair (``python -m rgbd_world.evaluation.lift --figure``) and for
checking lifted meshes without a GPU or an OpenGL context. Z-buffered, per-pixel barycentric colour
interpolation, no lighting (the vertex colours already are the shaded image).
"""

from __future__ import annotations

import math

import numpy as np


def orbit(points: np.ndarray, yaw_degrees: float, pitch_degrees: float, pivot: np.ndarray) -> np.ndarray:
    """Rotate (N, 3) points about ``pivot``: ``yaw`` about the y (up) axis, then ``pitch`` about the x axis.

    Points are in the OpenGL camera frame (x right, y up, camera at the origin looking along -z); rotating the
    scene by +yaw shows it as a camera moved to the left would see it.
    """
    a, b = math.radians(yaw_degrees), math.radians(pitch_degrees)
    yaw = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    pitch = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return (points - pivot) @ (pitch @ yaw).T + pivot


def render_mesh(points: np.ndarray, faces: np.ndarray, colors: np.ndarray, size: int = 256, fov_degrees: float = 50.0,
                background=(255, 255, 255)) -> np.ndarray:
    """Rasterise a mesh seen from the origin looking along -z (OpenGL frame) into a (size, size, 3) uint8 image.

    Args:
        points: (N, 3) float vertices (in front of the camera: z < 0); faces: (M, 3) int vertex indices;
        colors: (N, 3) uint8 vertex colours; fov_degrees: the view's field of view (square image).
    Returns:
        (size, size, 3) uint8; pixels no triangle covers get ``background``.
    """
    f = (size / 2) / math.tan(math.radians(fov_degrees) / 2)
    z = -points[:, 2]
    front = z > 1e-6
    sx = np.where(front, points[:, 0] / np.where(front, z, 1) * f + size / 2, np.nan)
    sy = np.where(front, -points[:, 1] / np.where(front, z, 1) * f + size / 2, np.nan)
    image = np.empty((size, size, 3), np.float64)
    image[:] = background
    zbuf = np.full((size, size), np.inf)
    col = colors.astype(np.float64)
    for tri in faces[front[faces].all(axis=1)]:
        xs, ys = sx[tri], sy[tri]
        x0, x1 = max(int(math.floor(xs.min())), 0), min(int(math.ceil(xs.max())), size - 1)
        y0, y1 = max(int(math.floor(ys.min())), 0), min(int(math.ceil(ys.max())), size - 1)
        if x0 > x1 or y0 > y1:
            continue
        area = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (xs[2] - xs[0]) * (ys[1] - ys[0])
        if abs(area) < 1e-12:
            continue
        px, py = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        w0 = ((xs[1] - px) * (ys[2] - py) - (xs[2] - px) * (ys[1] - py)) / area
        w1 = ((xs[2] - px) * (ys[0] - py) - (xs[0] - px) * (ys[2] - py)) / area
        w2 = 1 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        if not inside.any():
            continue
        inv_z = w0 / z[tri[0]] + w1 / z[tri[1]] + w2 / z[tri[2]]  # perspective-correct: 1/z is affine on screen
        depth = 1 / np.where(inside, inv_z, 1e-12)
        region = zbuf[y0 : y1 + 1, x0 : x1 + 1]
        closer = inside & (depth < region)
        if not closer.any():
            continue
        region[closer] = depth[closer]
        weights = np.stack([w0 / z[tri[0]], w1 / z[tri[1]], w2 / z[tri[2]]], -1) / inv_z[..., None]
        image[y0 : y1 + 1, x0 : x1 + 1][closer] = (weights[closer] @ col[tri])
    return np.round(np.clip(image, 0, 255)).astype(np.uint8)
