"""Depth completion on the RGB-D world: sparse depth + photo through masked JointDiT sampling.

    python -m rgbd_world.evaluation.completion [--count 200] [--steps 20] [--fractions 0.05 0.2] [--json FILE]

For every held-out test scene (``split_indices("test")[:count]``, never trained on) a random share of its
valid pixels (depth < FAR; seed 0 + scene position) is kept as the sparse depth. Rows, AbsRel / delta1 on
all valid pixels with the protocol of :mod:`rgbd_world.evaluation.metrics` (per-image scale and shift of disparity):

* ``estimation``: plain depth estimation from the photo alone (no sparse depth);
* ``nearest_<f>``: nearest-neighbour interpolation of the sparse disparity;
* ``completion_<f>``: JointDiT depth completion: the photo held clean (task depth_estimation), the depth
  branch starting from the nearest-neighbour map's latent with a latent mask = share of missing pixels per
  8x8 cell (area average, the soft mask a ComfyUI ``noise_mask`` becomes), see
  :func:`jointdit_core.sampler.sample` for the blending.

The sparse disparity ``1 / z`` is min-max normalised over the kept pixels (the model's [0, 1] convention).
"""

from __future__ import annotations


import numpy as np
import torch

from ..cli import evaluation_parser, print_rows, write_json
from .depth import score
from .metrics import valid_mask
from ..stack import DEFAULT_MODEL_DIR, depth_completion, depth_estimation, held_out_scenes, load_stack


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
    """(H, W) float32: every pixel takes the value of its nearest kept pixel (:func:`jointdit_core.depth.fill_missing_nearest`)."""
    from jointdit_core.depth import fill_missing_nearest

    return fill_missing_nearest(torch.from_numpy(np.asarray(disparity, np.float32)), torch.from_numpy(np.asarray(kept, bool))).numpy()


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
        rows[f"completion_{f:g}"] = score(depth_completion(stack, rgb, filled, ~kept, steps=steps, seed=seed), depths)
        print(f, rows[f"nearest_{f:g}"], rows[f"completion_{f:g}"], flush=True)
    settings = dict(count=count, steps=steps, fractions=list(fractions), seed=seed, variant=stack.variant, test_scenes=f"split_indices('test')[0:{count}]")
    return {"rows": rows, "settings": settings}


def main(argv=None) -> None:
    parser = evaluation_parser(__doc__.splitlines()[0], str(DEFAULT_MODEL_DIR))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2])
    args = parser.parse_args(argv)
    result = evaluate_completion(args.model, args.count, args.steps, tuple(args.fractions))
    print_rows(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
