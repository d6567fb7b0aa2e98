"""Does ensembling help? Depth estimation of the shipped small model with N seeds per scene, combined.

    python -m rgbd_world.evaluation.ensemble [--count 200] [--sizes 1 4 10] [--reduction median] [--json FILE]

Every member is one depth estimation of :func:`rgbd_world.stack.depth_estimation` (official settings, as
``rgbd_world.evaluation.depth``) with its own noise seed ``seed + 1000 * k`` (k = 0 .. max(sizes) - 1; member 0 is
the single run of ``rgbd_world.evaluation.depth``). An ensemble of size N takes the first N members and combines
them with :func:`jointdit_core.ensemble.ensemble_disparity` (joint scale/shift alignment, median or mean),
so the sizes are nested and share their runs. Scores: the protocol of :mod:`rgbd_world.evaluation.metrics` (AbsRel,
delta1). Uncertainty vs error: per scene, the Pearson correlation over the valid pixels between the
ensemble's uncertainty map and the absolute error of its aligned disparity against the ground-truth
disparity 1 / z (both on the metrics' least-squares alignment); reported as the mean over scenes and as
one correlation over all pixels of all scenes pooled.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from jointdit_core.ensemble import REDUCTIONS, ensemble_disparity

from .metrics import align_scale_shift, evaluate_disparity, mean_metrics, valid_mask
from ..stack import DEFAULT_MODEL_DIR, MEMBER_SEED_STRIDE, depth_estimation, held_out_scenes, load_stack, read_manifest
from ..cli import command_prog


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def disparity_error(pred: np.ndarray, gt_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|aligned predicted disparity - 1/z| over the valid pixels, the valid mask) for one scene."""
    mask = valid_mask(gt_depth)
    gt_disparity = 1.0 / np.where(mask, gt_depth, 1.0)
    scale, shift = align_scale_shift(pred, gt_disparity, mask)
    return np.abs(scale * pred.astype(np.float64) + shift - gt_disparity)[mask], mask


def score_ensemble(members: np.ndarray, depths: list[np.ndarray], reduction: str) -> dict:
    """members (N, S, H, W) disparities of S scenes -> metrics of their ensemble + uncertainty/error correlation."""
    result = ensemble_disparity(torch.from_numpy(members), reduction)
    pred, unc = result.disparity.numpy(), result.uncertainty.numpy()
    metrics = mean_metrics([evaluate_disparity(p, g) for p, g in zip(pred, depths)])
    if members.shape[0] > 1:
        per_scene, all_unc, all_err = [], [], []
        for p, u, g in zip(pred, unc, depths):
            err, mask = disparity_error(p, g)
            per_scene.append(_pearson(u[mask].astype(np.float64), err))
            all_unc.append(u[mask])
            all_err.append(err)
        metrics["uncertainty_error_corr_mean"] = float(np.nanmean(per_scene))
        metrics["uncertainty_error_corr_pooled"] = _pearson(np.concatenate(all_unc).astype(np.float64), np.concatenate(all_err))
    return metrics


def evaluate_ensembles(model_dir=DEFAULT_MODEL_DIR, count=200, sizes=(1, 4, 10), steps=20, seed=0, reduction="median", variant=None, cache=None) -> dict:
    """Run max(sizes) members on ``count`` held-out scenes and score each ensemble size.

    ``cache``: an .npz path where the members are kept (reused when it holds enough members for
    these settings), so adding a size does not rerun the model.
    """
    manifest = read_manifest(model_dir)
    scenes = held_out_scenes(count, size=manifest["resolution"])
    rgb = np.stack([s.rgb for s in scenes])
    depths = [s.depth for s in scenes]
    stack = load_stack(model_dir, variant)
    members: list[np.ndarray] = []
    key = f"{stack.variant}/{count}/{steps}/{seed}"
    if cache and Path(cache).is_file():
        data = np.load(cache, allow_pickle=False)
        if str(data["key"]) == key:
            members = list(data["members"])
    t0 = time.time()
    for k in range(len(members), max(sizes)):
        members.append(depth_estimation(stack, rgb, steps=steps, seed=seed + MEMBER_SEED_STRIDE * k))
        print(f"member {k + 1}/{max(sizes)} done ({time.time() - t0:.0f}s)", flush=True)
        if cache:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, members=np.stack(members), key=np.array(key))
    stacked = np.stack(members)
    rows = {}
    for n in sizes:
        rows[str(n)] = score_ensemble(stacked[:n], depths, reduction)
        print(f"N={n}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[str(n)].items()), flush=True)
    settings = {"count": count, "steps": steps, "seed": seed, "member_seeds": f"seed + {MEMBER_SEED_STRIDE} k", "reduction": reduction, "variant": stack.variant}
    return {"rows": rows, "settings": settings}


def table(result: dict) -> str:
    """Markdown table: ensemble size, AbsRel, delta1, uncertainty/error correlation (mean per scene, pooled)."""
    lines = ["| ensemble size | AbsRel | delta1 | corr(uncertainty, error) per scene | pooled |", "| --- | --- | --- | --- | --- |"]
    for n, row in result["rows"].items():
        corr = [row.get("uncertainty_error_corr_mean"), row.get("uncertainty_error_corr_pooled")]
        cells = ["-" if c is None else f"{c:.3f}" for c in corr]
        lines.append(f"| {n} | {row['abs_rel']:.4f} | {row['delta1']:.4f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--count", type=int, default=200, help="held-out test scenes")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 10], help="ensemble sizes")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reduction", choices=REDUCTIONS, default="median")
    p.add_argument("--variant", default=None, help="addon variant (default: the manifest's default)")
    p.add_argument("--cache", default=None, help=".npz file keeping the member predictions between runs")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    a = p.parse_args(argv)
    if min(a.sizes) < 1:
        p.error("ensemble sizes must be >= 1")
    result = evaluate_ensembles(a.model, a.count, sorted(set(a.sizes)), a.steps, a.seed, a.reduction, a.variant, a.cache)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nensembled depth estimation on {a.count} test scenes ({a.steps} steps, {a.reduction}){'; JSON in ' + a.json if a.json else ''}:\n")
    print(table(result))


if __name__ == "__main__":
    main()
