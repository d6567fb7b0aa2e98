"""The README's picture of 3D lifting: RGB-D pairs of the world lifted to meshes, seen from a new viewpoint.

    python -m rgbd_world.evaluation.lift --count 0 --figure docs/lift3d.png

Rows: a held-out test scene's exact pair, the model's depth estimate of the same image, a joint-generation
pair. Columns: image, disparity (colour: near = yellow), the lifted mesh rendered 35 degrees to the side
(:mod:`rgbd_world.world.render3d`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from jointdit_core.depth import colorize

from .lift_world import WORLD_NEAR, new_view
from ..world.scenes import FAR
from ..stack import DEFAULT_MODEL_DIR, depth_estimation, held_out_scenes, joint_generation, load_stack

SCENE = 3  # offset in the test split: a red cone in front of a yellow cube
CAPTION = "a blue cube left of a yellow cone"
TILE = 192


def _tile(x: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(x).resize((TILE, TILE), Image.NEAREST))


def make_figure(path: str | Path, model_dir: str | Path = DEFAULT_MODEL_DIR, steps: int = 20, seed: int = 0) -> Path:
    """Render the picture (3 rows x 3 tiles, labelled) to ``path`` (PNG, 256-colour palette); returns the path."""
    from ..world.dataset import normalized_disparity

    stack = load_stack(model_dir)
    scene = held_out_scenes(1, start=SCENE)[0]
    estimate = depth_estimation(stack, scene.rgb[None], steps=steps, seed=seed)[0]
    rgb, disparity = joint_generation(stack, [CAPTION], steps=steps, seed=seed)
    rows = [
        ("test scene, exact depth", scene.rgb, normalized_disparity(scene.depth), float(scene.depth.min())),
        ("same image, JointDiT depth estimate", scene.rgb, estimate, float(scene.depth.min())),
        (f'joint generation: "{CAPTION}"', rgb[0], disparity[0], WORLD_NEAR),
    ]
    label = 18
    sheet = Image.new("RGB", (3 * TILE, len(rows) * (TILE + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (title, image, disp, near) in enumerate(rows):
        colours = np.round(colorize(torch.from_numpy(np.asarray(disp, np.float64)), "viridis").numpy() * 255).astype(np.uint8)
        tiles = np.concatenate([_tile(image), _tile(colours), new_view(image, disp, near, FAR, size=TILE)], axis=1)
        top = r * (TILE + label)
        draw.text((4, top + 3), f"{title}   |   disparity   |   lifted mesh, new view", fill=(0, 0, 0))
        sheet.paste(Image.fromarray(tiles), (0, top + label))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256).save(path, optimize=True)
    return path
