"""Depth-estimation evaluation of the shipped small model on the RGB-D world's test split.

    python -m rgbd_world.evaluation.depth [--count 200] [--steps N] [--ensemble N] [--model rgbd_world/model] [--json FILE]

Rows: the JointDiT addons trained with UTS + ASW (official recipe), the same-timestep ablation (UTS
off), the ASW-off ablation (trained and sampled with asw_strength 0), the trivial baseline (the mean
normalised disparity map of the training scenes) and, for reference, the autoencoder round trip of
the ground-truth disparity (the floor any model decoding through this autoencoder meets).

Protocol: :mod:`rgbd_world.evaluation.metrics` (valid pixels: depth < FAR, i.e. sky excluded; per-image
least-squares scale and shift of the disparity against 1/z; depth clipped to (0, FAR]; AbsRel and
delta1 averaged over images). Test scenes: ``split_indices("test")[:count]`` (never trained on);
depth estimation with the official settings otherwise (prompt " ", rgb held at t = 0, Flux-dev
shifted schedule, Euler, noise seed 0), guidance 1.0 (the small base is not guidance-distilled). Steps and
ensemble size default to the model's (model.json ``depth_estimation``, chosen by measurement: see
rgbd_world/README.md); ``--steps 20 --ensemble 1`` is the official setting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..cli import command_prog, int_at_least, write_json
from .metrics import evaluate_disparity, mean_metrics
from ..stack import DEFAULT_MODEL_DIR, autoencoder_roundtrip_disparity, depth_estimation, depth_settings, held_out_scenes, load_baseline, load_stack, read_manifest

ROW_TITLES = {
    "uts_asw": "JointDiT (UTS + ASW, official recipe)",
    "same_timestep": "JointDiT, same-timestep sampling (UTS off)",
    "asw_off": "JointDiT, ASW off (train + sample)",
    "baseline": "baseline: mean training disparity map",
    "ae_roundtrip": "reference: ground truth through the autoencoder",
}


def score(disparities: np.ndarray, depths: list[np.ndarray]) -> dict:
    """Mean AbsRel / delta1 of (N, H, W) predicted disparities against N ground-truth depth maps."""
    return mean_metrics([evaluate_disparity(d, g) for d, g in zip(disparities, depths)])


def evaluate(model_dir: str | Path = DEFAULT_MODEL_DIR, count: int = 200, steps: int | None = None, seed: int = 0, variants: list[str] | None = None,
             ensemble: int | None = None) -> dict:
    """Run the evaluation; returns {"rows": {name: {"abs_rel", "delta1", "seconds"}}, "settings": {...}}.

    ``steps`` / ``ensemble``: Euler steps and samples per image (default: the model's, model.json
    ``depth_estimation``; ``steps=20, ensemble=1`` is the official setting)."""
    manifest = read_manifest(model_dir)
    model_steps, model_ensemble = depth_settings(manifest)
    steps, ensemble = steps or model_steps, ensemble or model_ensemble
    variants = variants or list(manifest["addons"])
    scenes = held_out_scenes(count, size=manifest["resolution"])
    rgb = np.stack([s.rgb for s in scenes])
    depths = [s.depth for s in scenes]
    rows = {}
    stack = None
    for name in variants:
        t0 = time.time()
        stack = load_stack(model_dir, name)
        pred = depth_estimation(stack, rgb, steps=steps, seed=seed, ensemble=ensemble)
        rows[name] = dict(score(pred, depths), seconds=round(time.time() - t0, 1))
        print(f"{name}: AbsRel {rows[name]['abs_rel']:.4f} delta1 {rows[name]['delta1']:.4f} ({rows[name]['seconds']}s)", flush=True)
    baseline = load_baseline(model_dir)
    rows["baseline"] = dict(score(np.repeat(baseline[None], len(scenes), axis=0), depths), seconds=0.0)
    if stack is not None:
        from ..world.dataset import normalized_disparity

        gt = np.stack([normalized_disparity(d) for d in depths])
        rows["ae_roundtrip"] = dict(score(autoencoder_roundtrip_disparity(stack, gt), depths), seconds=0.0)
    settings = {
        "test_scenes": f"split_indices('test')[0:{count}]",
        "count": count,
        "resolution": manifest["resolution"],
        "steps": steps,
        "ensemble": ensemble,
        "seed": seed,
        "guidance": manifest["guidance"],
        "prompt": " ",
        "protocol": (__import__("rgbd_world.evaluation.metrics", fromlist=["x"]).__doc__ or "").strip(),
        "training_steps": {k: v.get("steps") for k, v in manifest["addons"].items()},
    }
    return {"rows": rows, "settings": settings}


def table(result: dict) -> str:
    """Markdown table of the rows (AbsRel lower is better, delta1 higher is better)."""
    lines = ["| method | AbsRel | delta1 |", "| --- | --- | --- |"]
    for name, row in result["rows"].items():
        lines.append(f"| {ROW_TITLES.get(name, name)} | {row['abs_rel']:.4f} | {row['delta1']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (python -m rgbd_world.recipe)")
    p.add_argument("--count", type=int_at_least(1), default=200, help="test scenes (the split has 1000)")
    p.add_argument("--steps", type=int_at_least(1), default=None, help="sampling steps (default: the model's, model.json depth_estimation; official 20)")
    p.add_argument("--ensemble", type=int_at_least(1), default=None, help="samples per image, median-ensembled (default: the model's; official 1)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--variants", nargs="*", default=None, help="addon variants (default: all in model.json)")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    a = p.parse_args(argv)
    result = evaluate(a.model, a.count, a.steps, a.seed, a.variants, a.ensemble)
    st = result["settings"]
    print(f"\ndepth estimation on {a.count} test scenes ({st['steps']} steps, ensemble of {st['ensemble']}, seed {a.seed}):\n")
    print(table(result))
    if a.json:
        write_json(a.json, result)


if __name__ == "__main__":
    main()
