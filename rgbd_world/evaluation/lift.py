"""3D lifting on the RGB-D world, where exact depth and the camera are known.

    python -m rgbd_world.evaluation.lift [--count 100] [--steps 20] [--json FILE] [--figure docs/lift3d.png]

For held-out test scenes, the ground-truth pair (image, normalised disparity of the exact depth) and the
model's depth-estimation pair (image, estimated disparity) are lifted to 3D with
:func:`jointdit_core.lift3d.lift_rgbd` and the scene camera's field of view, and compared point by point
with the exact 3D points (the exact depth unprojected through the same camera):

* **range** (the node's mapping): the disparity mapped with ``near`` / ``far`` set to the scene's true
  nearest and farthest depth, as a user who knows the depth range would set them;
* **least squares**: the disparity aligned to the true inverse depth by the least-squares scale and shift
  of :mod:`rgbd_world.evaluation.metrics` (the best affine alignment; the evaluation protocol of depth estimation).

Then each lifted point cloud is aligned to the exact one by the single scale ``s`` that minimises
``sum |s p - p*|^2`` (relative depth has no metric scale), and the error is the mean point-to-point
distance ``|s p - p*|`` over the non-sky pixels (metres; the world's objects are 0.6-1.8 m wide, the
camera 1.2-2.2 m above the floor), also relative to the distance of the point from the camera. The
baseline (the mean training disparity map) is lifted the same way. The ground-truth pair, lifted with its
true range, reproduces the exact points (a check of the lifting itself).

The demo's 3D files and views come from :mod:`rgbd_world.figures.lift_world`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from jointdit_core.lift3d import lift_rgbd, unproject

from .metrics import aligned_depth, valid_mask
from ..world.scenes import FAR, HFOV_DEG
from ..stack import DEFAULT_MODEL_DIR, depth_estimation, held_out_scenes, load_baseline, load_stack
from ..cli import command_prog


def point_error(points: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean point-to-point error after the least-squares scale alignment of ``points`` to ``reference``.

    Args:
        points, reference: (H, W, 3) or (N, 3) float points of the same pixels; mask: bool over the pixels.
    Returns:
        {"mean_error": mean |s p - p*| (reference units), "relative_error": mean |s p - p*| / |p*|, "scale": s}.
    Raises:
        ValueError: empty mask or shapes that differ.
    """
    p, r = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"point sets differ in shape: {p.shape} vs {r.shape}")
    p, r = p[mask], r[mask]
    if len(p) == 0:
        raise ValueError("no valid pixel to compare")
    scale = float((p * r).sum() / (p * p).sum())
    distance = np.linalg.norm(scale * p - r, axis=-1)
    return {"mean_error": float(distance.mean()), "relative_error": float((distance / np.linalg.norm(r, axis=-1)).mean()), "scale": scale}


def _lifted_points(rgb: np.ndarray, disparity: np.ndarray, near: float, far: float) -> np.ndarray:
    """(H, W, 3) points of every pixel (no removal) with the node's near/far mapping and the world's camera."""
    lifted = lift_rgbd(rgb, disparity, fov_degrees=HFOV_DEG, near=near, far=far, edge_threshold=0)
    return lifted.points.reshape(*disparity.shape, 3)


def scene_errors(rgb: np.ndarray, disparity: np.ndarray, depth: np.ndarray) -> dict[str, dict[str, float]]:
    """Both alignments of one disparity map (H, W) of a scene with exact z-depth ``depth`` (module docstring)."""
    exact = unproject(torch.from_numpy(depth.astype(np.float64)), HFOV_DEG).numpy()
    mask = valid_mask(depth)
    ranged = _lifted_points(rgb, disparity, float(depth.min()), float(depth.max()))
    fitted = unproject(torch.from_numpy(aligned_depth(disparity, depth)), HFOV_DEG).numpy()
    return {"range": point_error(ranged, exact, mask), "least_squares": point_error(fitted, exact, mask)}


def evaluate_lifting(model_dir: str | Path = DEFAULT_MODEL_DIR, count: int = 100, steps: int = 20, seed: int = 0) -> dict:
    """Lift ground truth, the model's estimates and the baseline for ``count`` test scenes; mean errors per row."""
    from ..world.dataset import normalized_disparity

    scenes = held_out_scenes(count)
    t0 = time.time()
    stack = load_stack(model_dir)
    predicted = depth_estimation(stack, np.stack([s.rgb for s in scenes]), steps=steps, seed=seed)
    seconds = round(time.time() - t0, 1)
    baseline = load_baseline(model_dir)
    rows: dict[str, list] = {"ground_truth": [], "jointdit": [], "baseline": []}
    for s, pred in zip(scenes, predicted):
        rows["ground_truth"].append(scene_errors(s.rgb, normalized_disparity(s.depth), s.depth))
        rows["jointdit"].append(scene_errors(s.rgb, pred, s.depth))
        rows["baseline"].append(scene_errors(s.rgb, baseline, s.depth))
    mean = {
        name: {kind: {k: float(np.mean([e[kind][k] for e in errors])) for k in ("mean_error", "relative_error")} for kind in ("range", "least_squares")}
        for name, errors in rows.items()
    }
    settings = {"count": count, "test_scenes": f"split_indices('test')[0:{count}]", "steps": steps, "seed": seed,
                "variant": stack.variant, "fov_degrees": HFOV_DEG, "sky": f"depth >= FAR = {FAR} excluded", "depth_estimation_seconds": seconds}
    return {"rows": mean, "settings": settings}


ROW_TITLES = {
    "ground_truth": "ground-truth pair (exact disparity)",
    "jointdit": "JointDiT depth estimation (small model)",
    "baseline": "baseline: mean training disparity map",
}


def _number(x: float) -> str:
    return f"{x:.4f}" if x >= 1e-4 else f"{x:.1e}"


def table(result: dict) -> str:
    """Markdown table of the mean point errors (metres, and relative to the distance from the camera)."""
    lines = ["| disparity lifted | near/far = true range: error (m) | relative | least-squares aligned: error (m) | relative |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in result["rows"].items():
        r, f = row["range"], row["least_squares"]
        numbers = " | ".join(_number(x) for x in (r["mean_error"], r["relative_error"], f["mean_error"], f["relative_error"]))
        lines.append(f"| {ROW_TITLES[name]} | {numbers} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (python -m rgbd_world.recipe)")
    p.add_argument("--count", type=int, default=100, help="test scenes")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (official 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.add_argument("--figure", default=None, help="also render the README picture (PNG) here")
    a = p.parse_args(argv)
    result = evaluate_lifting(a.model, a.count, a.steps, a.seed) if a.count > 0 else None
    if result is not None:
        print(f"\n3D lifting on {a.count} test scenes (depth estimation {a.steps} steps, seed {a.seed}; sky excluded; "
              "points scale-aligned to the exact ones):\n")
        print(table(result))
    if a.json and result is not None:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {a.json}")
    if a.figure:
        from ..figures.lift_figure import make_figure

        make_figure(a.figure, a.model, steps=a.steps, seed=a.seed)
        print(f"wrote {a.figure}")


if __name__ == "__main__":
    main()
