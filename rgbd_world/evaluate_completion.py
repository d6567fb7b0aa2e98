"""Depth completion on the RGB-D world: sparse depth + photo through masked JointDiT sampling.

    python -m rgbd_world.evaluate_completion [--count 200] [--steps 20] [--fractions 0.05 0.2] [--json FILE]

For every held-out test scene (``split_indices("test")[:count]``, never trained on) a random share of its
valid pixels (depth < FAR; seed 0 + scene position) is kept as the sparse depth. Rows, AbsRel / delta1 on
all valid pixels with the protocol of :mod:`rgbd_world.metrics` (per-image scale and shift of disparity):

* ``estimation``: plain depth estimation from the photo alone (no sparse depth);
* ``nearest_<f>``: nearest-neighbour interpolation of the sparse disparity;
* ``completion_<f>``: JointDiT depth completion: the photo held clean (task depth_estimation), the depth
  branch starting from the nearest-neighbour map's latent with a latent mask = share of missing pixels per
  8x8 cell (area average, the soft mask a ComfyUI ``noise_mask`` becomes), see
  :func:`jointdit_core.sampler.sample` for the blending.

The sparse disparity ``1 / z`` is min-max normalised over the kept pixels (the model's [0, 1] convention).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .evaluate import score
from .metrics import valid_mask
from .stack import DEFAULT_MODEL_DIR, DEPTH_ESTIMATION_PROMPT, _decode, _encode, _generate, depth_estimation, held_out_scenes, load_stack


def sparse_disparity(depth: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(disparity (H, W) in [0, 1] at the kept pixels and 0 elsewhere, kept (H, W) bool) from ``fraction`` of the valid pixels."""
    valid = np.flatnonzero(valid_mask(depth))
    rng = np.random.default_rng(seed)
    kept_idx = rng.choice(valid, size=max(2, int(round(fraction * valid.size))), replace=False)
    kept = np.zeros(depth.size, bool)
    kept[kept_idx] = True
    kept = kept.reshape(depth.shape)
    disparity = np.zeros(depth.shape, np.float32)
    inv = 1.0 / depth[kept]
    disparity[kept] = (inv - inv.min()) / max(inv.max() - inv.min(), 1e-12)
    return disparity, kept


def nearest_fill(disparity: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Every pixel takes the value of its nearest kept pixel (Euclidean, pixel grid)."""
    h, w = disparity.shape
    grid = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 2).float()
    points = torch.from_numpy(np.argwhere(kept)).float()
    nearest = torch.cdist(grid, points).argmin(1).numpy()
    return disparity[kept][nearest].reshape(h, w).astype(np.float32)


@torch.no_grad()
def depth_completion(stack, rgb: np.ndarray, filled: np.ndarray, kept: np.ndarray, steps: int = 20, seed: int = 0, batch: int = 50) -> np.ndarray:
    """Masked depth sampling: uint8 (N, H, W, 3) photos, (N, H, W) filled disparity + kept masks -> disparity (N, H, W)."""
    from jointdit_core.depth import disparity_to_model_input, model_output_to_disparity
    from jointdit_core.images import uint8_to_model

    out = []
    for i in range(0, len(rgb), batch):
        z_rgb = _encode(stack, uint8_to_model(rgb[i : i + batch]))
        z_depth = _encode(stack, disparity_to_model_input(torch.from_numpy(filled[i : i + batch]), stack.depth_transform))
        missing = torch.from_numpy(~kept[i : i + batch]).float()[:, None]
        mask = torch.nn.functional.interpolate(missing, size=z_depth.shape[-2:], mode="area")
        _, z = _generate(stack, [DEPTH_ESTIMATION_PROMPT] * len(z_rgb), "depth_estimation", steps, seed + i,
                         rgb_latent=z_rgb, depth_latent=z_depth, depth_mask=mask)
        out.append(model_output_to_disparity(_decode(stack, z), stack.depth_transform).numpy())
    return np.concatenate(out)


def evaluate_completion(model_dir=DEFAULT_MODEL_DIR, count: int = 200, steps: int = 20, fractions=(0.05, 0.2), seed: int = 0) -> dict:
    """Run the rows above; returns {"rows": {name: {"abs_rel", "delta1"}}, "settings": {...}}."""
    stack = load_stack(model_dir)
    scenes = held_out_scenes(count, size=stack.manifest["resolution"])
    rgb = np.stack([s.rgb for s in scenes])
    depths = [s.depth for s in scenes]
    rows = {"estimation": score(depth_estimation(stack, rgb, steps=steps, seed=seed), depths)}
    print("estimation", rows["estimation"], flush=True)
    for f in fractions:
        sparse = [sparse_disparity(d, f, seed + k) for k, d in enumerate(depths)]
        kept = np.stack([k for _, k in sparse])
        filled = np.stack([nearest_fill(d, k) for d, k in sparse])
        rows[f"nearest_{f:g}"] = score(filled, depths)
        rows[f"completion_{f:g}"] = score(depth_completion(stack, rgb, filled, kept, steps=steps, seed=seed), depths)
        print(f, rows[f"nearest_{f:g}"], rows[f"completion_{f:g}"], flush=True)
    settings = dict(count=count, steps=steps, fractions=list(fractions), seed=seed, variant=stack.variant, test_scenes=f"split_indices('test')[0:{count}]")
    return {"rows": rows, "settings": settings}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = evaluate_completion(args.model, args.count, args.steps, tuple(args.fractions))
    for name, row in result["rows"].items():
        print(f"{name:18s} AbsRel {row['abs_rel']:.4f}  delta1 {row['delta1']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
