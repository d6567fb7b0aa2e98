"""Writing a lifted RGB-D pair (:class:`jointdit_core.lift3d.LiftedRGBD`) as ``.ply`` and ``.glb`` files.

The files are written with trimesh (MIT licence; a maintained library for meshes and point clouds, pure
Python on numpy, also what MoGe uses for its ``.glb`` / ``.ply``). It is listed in ``requirements.txt``
but imported only when a file is written, so the rest of the pack (sampling, depth nodes) loads even where
trimesh is missing, and the 3D node then says how to install it.

* ``.ply`` (binary, little-endian): the point cloud, one vertex per kept pixel with its colour
  (``red``/``green``/``blue`` uchar properties), no faces. Point-cloud viewers (MeshLab, CloudCompare,
  Blender, ComfyUI's newer 3D preview) read it.
* ``.glb`` (binary glTF 2.0): the mesh, with vertex colours (``COLOR_0``) or the image as a texture;
  optionally (``content``) the points as a glTF POINTS primitive, with their colours, instead of or
  beside the mesh. glTF is what ComfyUI's 3D preview shows in every release. The materials are unlit
  (``KHR_materials_unlit``, as ComfyUI's own SaveGLB writes vertex-coloured meshes): the colours are
  photographs that already hold their lighting, and a mesh without a material would get glTF's default
  fully metallic one, which renders nearly black without an environment map.

  The vertices stay in the camera frame; the glTF node that holds them turns and moves them for viewing
  (:func:`viewer_pose`): ComfyUI's Preview 3D (every release) frames a model's bounding box from a camera
  on the +x +z diagonal, above it, so the mesh, turned 45 degrees about the vertical and standing on the
  ground plane at the origin, shows its front (the photo's view) in the middle of the view. A viewer that
  applies node transforms shows the same; the ``.ply`` keeps the camera frame.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .lift3d import LiftedRGBD

GLB_CONTENTS = ("mesh", "points", "mesh+points")
INSTALL_HINT = "pip install trimesh (with the Python that runs ComfyUI: python -m pip install -r requirements.txt of the pack)"


def require_trimesh():
    """The ``trimesh`` module. Raises ImportError saying how to install it."""
    try:
        import trimesh
    except ImportError as exc:  # pragma: no cover - exercised only where trimesh is missing
        raise ImportError(f"writing .ply / .glb files needs the 'trimesh' package: {INSTALL_HINT}") from exc
    return trimesh


def _rgba(colors: np.ndarray) -> np.ndarray:
    return np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)


def to_point_cloud(lifted: LiftedRGBD):
    """A ``trimesh.PointCloud`` of the kept pixels with their colours."""
    trimesh = require_trimesh()
    return trimesh.PointCloud(lifted.points, colors=_rgba(lifted.colors))


def to_mesh(lifted: LiftedRGBD, texture: bool = False):
    """A ``trimesh.Trimesh`` of the grid mesh (not processed: vertex order and count are kept).

    ``texture`` False: per-vertex colours; True: the image as the base-colour texture on the vertices' UVs.
    """
    trimesh = require_trimesh()
    if texture:
        from PIL import Image

        material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(lifted.image), metallicFactor=0.0, roughnessFactor=1.0)
        visual = trimesh.visual.TextureVisuals(uv=lifted.uvs, material=material)
    else:
        visual = trimesh.visual.ColorVisuals(vertex_colors=_rgba(lifted.colors))
    return trimesh.Trimesh(vertices=lifted.points, faces=lifted.faces, visual=visual, process=False)


def save_ply(path: str | Path, lifted: LiftedRGBD) -> Path:
    """Write the coloured point cloud as a binary ``.ply``; returns the path. Raises ImportError without trimesh."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_point_cloud(lifted).export(file_type="ply", encoding="binary"))
    return path


def _unlit(glb: bytes) -> bytes:
    """Give every primitive of a binary glTF a ``KHR_materials_unlit`` material (non-metallic, double-sided).

    Raises:
        ValueError: bytes that are not a glTF 2.0 binary with a JSON chunk first.
    """
    magic, version, _ = struct.unpack_from("<4sII", glb, 0)
    length, kind = struct.unpack_from("<II", glb, 12)
    if magic != b"glTF" or version != 2 or kind != 0x4E4F534A:
        raise ValueError("not a glTF 2.0 binary")
    tree = json.loads(glb[20 : 20 + length])
    materials = tree.setdefault("materials", [])
    for mesh in tree.get("meshes", []):
        for primitive in mesh["primitives"]:
            if "material" not in primitive:
                primitive["material"] = len(materials)
                materials.append({"pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0]}})
    for material in materials:
        material.setdefault("pbrMetallicRoughness", {}).update(metallicFactor=0.0, roughnessFactor=1.0)
        material.setdefault("extensions", {})["KHR_materials_unlit"] = {}
        material["doubleSided"] = True
    used = tree.setdefault("extensionsUsed", [])
    if "KHR_materials_unlit" not in used:
        used.append("KHR_materials_unlit")
    text = json.dumps(tree, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    rest = glb[20 + length :]
    return struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + len(rest)) + struct.pack("<II", len(text), 0x4E4F534A) + text + rest


VIEWER_YAW_DEGREES = 45.0  # Preview 3D's default camera stands on the +x +z diagonal (frontend 1.27 .. 1.48)


def viewer_pose(points: np.ndarray) -> np.ndarray:
    """(4, 4) float64 transform that turns camera-frame ``points`` (N, 3) to face ComfyUI's Preview 3D camera.

    Centres the bounding box on the vertical axis, puts its lowest point on the ground plane (y = 0, where
    the viewer draws its grid), then turns it ``VIEWER_YAW_DEGREES`` about y, so that the photo's viewing
    direction (+z of the camera frame) points at the viewer's default camera on the +x +z diagonal. No scaling:
    the units stay those of near / far.
    """
    lo, hi = points.min(axis=0), points.max(axis=0)
    move = np.eye(4)
    move[:3, 3] = [-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2]
    a = np.radians(VIEWER_YAW_DEGREES)
    turn = np.eye(4)
    turn[[0, 0, 2, 2], [0, 2, 0, 2]] = [np.cos(a), np.sin(a), -np.sin(a), np.cos(a)]
    return turn @ move


def save_glb(path: str | Path, lifted: LiftedRGBD, content: str = "mesh", texture: bool = False) -> Path:
    """Write a ``.glb``: the mesh, the points, or both (``content`` in GLB_CONTENTS); returns the path.

    The vertices are those of ``lifted`` (camera frame); their glTF node carries :func:`viewer_pose`.

    Raises:
        ValueError: an unknown ``content``, or a mesh without triangles (say what to change).
        ImportError: trimesh missing.
    """
    if content not in GLB_CONTENTS:
        raise ValueError(f"content must be one of {GLB_CONTENTS}, got {content!r}")
    if "mesh" in content and len(lifted.faces) == 0:
        height, width = lifted.depth.shape
        rows, cols = np.unique(lifted.pixels // width).size, np.unique(lifted.pixels % width).size
        if rows < 2 or cols < 2:
            raise ValueError(
                f"the depth map is too small for a mesh: {width}x{height} pixels, of which a grid of {cols}x{rows} is kept "
                "(after stride and background_threshold); a triangle needs at least 2x2 pixels. Lift a larger image "
                "(or use a smaller stride), or write points only (glb_content 'points')"
            )
        raise ValueError(
            "the mesh has no triangles (every one was dropped): raise edge_threshold or set it to 0, lower "
            "background_threshold, or write points only"
        )
    trimesh = require_trimesh()
    scene = trimesh.Scene()
    pose = viewer_pose(lifted.points)
    if "mesh" in content:
        scene.add_geometry(to_mesh(lifted, texture), geom_name="mesh", transform=pose)
    if "points" in content:
        scene.add_geometry(to_point_cloud(lifted), geom_name="points", transform=pose)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_unlit(scene.export(file_type="glb")))
    return path
