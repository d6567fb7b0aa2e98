"""Depth estimation of any addon file (e.g. a trainer run's output) on the RGB-D world's scenes.

    python -m rgbd_world.evaluation.addon ADDON.safetensors [ADDON2 ...] [--model rgbd_world/model]
        [--split test|train] [--start 0] [--count 200] [--steps 20] [--seed 0] [--asw-strength 1.0] [--json FILE]
        [--save-pred FILE.npy] [--breakdown]

Same protocol as ``python -m rgbd_world.evaluation.depth`` (rgbd_world.evaluation.metrics: per-image affine alignment of
the disparity, sky excluded, AbsRel and delta1 averaged over images; prompt " ", rgb held at t = 0,
Euler, Flux-dev shifted schedule, guidance of the model folder), but the addons come from the given
files (a trainer's ``jointdit_addons.safetensors`` or a ``checkpoint-<step>/`` file) on top of the base,
autoencoder and text encoders of ``--model``. ``--split train`` scores scenes the addons were trained
on (indices ``--start`` .. ``--start + --count`` of the training split; the recipe trains on 0-3999),
to compare fitting on seen and unseen scenes. Prints one line per addon (and per-image values with
``--json``). ``--breakdown`` also prints where the error sits: the share of it on pixels next to depth
edges (object silhouettes, the horizon) against the interior (:func:`rgbd_world.evaluation.metrics.error_breakdown`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .metrics import error_breakdown, evaluate_disparity, mean_metrics
from ..stack import DEFAULT_MODEL_DIR, Stack, depth_estimation, load_stack, read_manifest, scenes_of
from ..cli import command_prog


def evaluate_addon(stack: Stack, rgb: np.ndarray, depths: list, steps: int = 20, seed: int = 0, save_pred: str | None = None, breakdown: bool = False) -> dict:
    """{"abs_rel", "delta1", "per_image": [[abs_rel, delta1], ...]} of one stack on the given scenes (and
    "breakdown", :func:`~rgbd_world.evaluation.metrics.error_breakdown`, with ``breakdown``); ``save_pred``: also write
    the predicted disparities (N, H, W) float16 to this .npy file."""
    pred = depth_estimation(stack, rgb, steps=steps, seed=seed)
    if save_pred:
        Path(save_pred).parent.mkdir(parents=True, exist_ok=True)
        np.save(save_pred, pred.astype(np.float16))
    per = [evaluate_disparity(d, g) for d, g in zip(pred, depths)]
    out = mean_metrics(per)
    out["per_image"] = [[round(float(p["abs_rel"]), 6), round(float(p["delta1"]), 6)] for p in per]
    if breakdown:
        out["breakdown"] = error_breakdown(pred, depths)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("addons", nargs="+", help="addon files (.safetensors with their .json sidecar)")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder for base, autoencoder, text encoders")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--asw-strength", type=float, default=1.0, help="sampling ASW strength (0 for addons trained with ASW off)")
    p.add_argument("--json", default=None, help="append one JSON line per addon here")
    p.add_argument("--save-pred", default=None, help="write the predicted disparities of the (last) addon to this .npy file")
    p.add_argument("--breakdown", action="store_true", help="also print the error's share at depth edges against the interior")
    a = p.parse_args(argv)
    manifest = read_manifest(a.model)
    scenes = scenes_of(a.split, a.start, a.count, manifest["resolution"])
    rgb = np.stack([s.rgb for s in scenes])
    depths = [s.depth for s in scenes]
    for addon in a.addons:
        t0 = time.time()
        stack = load_stack(a.model, addon=addon, asw_strength=a.asw_strength)
        row = evaluate_addon(stack, rgb, depths, a.steps, a.seed, a.save_pred, a.breakdown)
        seconds = round(time.time() - t0, 1)
        print(f"{addon}: {a.split}[{a.start}:{a.start + a.count}] steps {a.steps} seed {a.seed}: "
              f"AbsRel {row['abs_rel']:.4f} delta1 {row['delta1']:.4f} ({seconds}s)", flush=True)
        if "breakdown" in row:
            b = row["breakdown"]
            print(f"  near depth edges: {b['edge_pixels']:.0%} of the pixels, {b['edge_error']:.0%} of the error "
                  f"(AbsRel {b['abs_rel_edge']:.4f} there, {b['abs_rel_interior']:.4f} elsewhere)", flush=True)
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            record = dict(addon=str(addon), split=a.split, start=a.start, count=a.count, steps=a.steps, seed=a.seed,
                          asw_strength=a.asw_strength, seconds=seconds, **row)
            with open(a.json, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
