"""Lifting the world's 64x64 RGB-D pairs to 3D: the settings that suit them, the demo's 3D files and a new view.

Shared by the demo (``3d/*.glb|ply`` and the overview's 3D section), the README picture
(:mod:`rgbd_world.figures.lift_figure`) and nothing else; the evaluation of lifting is :mod:`rgbd_world.evaluation.lift`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jointdit_core.lift3d import LiftedRGBD, lift_rgbd

from ..world.render3d import orbit, render_mesh
from ..world.scenes import FAR, HFOV_DEG, NEAR_DEPTH

EDGE_THRESHOLD_64PX = 0.1  # relative depth-edge threshold for the world's 64x64 images (0.03 suits >= 512 px)
SKY_THRESHOLD = 0.01  # normalised disparity below which a pixel counts as sky
WORLD_NEAR = NEAR_DEPTH  # median nearest z-depth of the world's scenes (metres): near for generated pairs


def lift_world_pair(rgb: np.ndarray, disparity: np.ndarray, near: float = WORLD_NEAR, far: float = FAR) -> LiftedRGBD:
    """One pair, rgb uint8 (H, W, 3) and disparity (H, W) in [0, 1] (near = 1), lifted through the world's camera
    (field of view HFOV_DEG) with the depth range ``near``..``far`` metres; sky and depth-edge triangles removed."""
    return lift_rgbd(rgb, disparity, fov_degrees=HFOV_DEG, near=near, far=far, edge_threshold=EDGE_THRESHOLD_64PX, background_threshold=SKY_THRESHOLD)


def new_view(rgb: np.ndarray, disparity: np.ndarray, near: float = WORLD_NEAR, far: float = FAR, yaw: float = 35.0, size: int = 192) -> np.ndarray:
    """Lift a pair and render it from a camera turned ``yaw`` degrees about the scene's centre: (size, size, 3) uint8."""
    lifted = lift_world_pair(rgb, disparity, near, far)
    pivot = np.median(lifted.points, axis=0)
    points = orbit(lifted.points, yaw, 12.0, pivot) - np.array([0.0, 0.0, 0.5 * abs(pivot[2])])  # step back to see it whole
    return render_mesh(points, lifted.faces, lifted.colors, size=size, fov_degrees=HFOV_DEG, background=(240, 240, 240))


def write_demo_lifts(out: str | Path, joint: tuple, estimated: tuple, near: float = WORLD_NEAR, far: float = FAR) -> list[str]:
    """The demo's 3D files: one joint-generation pair and one depth-estimation pair as .glb (mesh) + .ply (points).

    Args:
        out: the demo folder (files go to ``out/3d``); joint, estimated: (rgb uint8 (H, W, 3), disparity (H, W)).
        near, far: the depth range of the lifted scenes (the world's typical nearest depth and its backdrop).
    Returns:
        the written paths relative to ``out``. Without trimesh nothing is written and the list is empty.
    """
    try:
        from jointdit_core.export3d import require_trimesh, save_glb, save_ply

        require_trimesh()
    except ImportError as exc:
        print(f"3D files skipped: {exc}")
        return []
    out = Path(out)
    names = []
    for stem, (rgb, disparity) in (("joint_generation_00", joint), ("depth_estimation_00", estimated)):
        lifted = lift_world_pair(rgb, disparity, near, far)
        save_glb(out / "3d" / f"{stem}.glb", lifted)
        save_ply(out / "3d" / f"{stem}.ply", lifted)
        names += [f"3d/{stem}.glb", f"3d/{stem}.ply"]
    return names
