"""Speed settings measured on the RGB-D world: the JointDiT step cache and few-step depth estimation.

    python -m rgbd_world.evaluation.fast cache [--count 50] [--thresholds 0 0.05 0.1 0.2 0.3] [--tasks ...] [--json FILE]
    python -m rgbd_world.evaluation.fast fewstep [--count 50] [--steps 1 2 3 4 6 10 20] [--ensemble 4] [--json FILE]

``cache``: per task and threshold of :class:`jointdit_core.step_cache.JointStepCache` (whole caching window,
start 0 / end 1 percent, so the threshold alone decides): the share of model evaluations computed, the wall
time against the uncached run, the mean absolute difference to the uncached output (disparity in [0, 1]
for depth, image in [0, 1] for rgb), and the task's quality: depth estimation AbsRel / delta1; joint
generation caption accuracy and depth agreement (the generated disparity against the depth estimated from
the generated image, AbsRel, 4 uncached flux_shifted steps); depth-to-image caption accuracy.

``fewstep``: depth estimation AbsRel / delta1 against the number of Euler steps, the schedule
(``flux_shifted``, ``linear``) and the ensemble size (1 and ``--ensemble`` members, median of the
aligned members as :mod:`rgbd_world.evaluation.ensemble`), plus the deterministic single step (depth
branch started from zeros at sigma 1, one step to 0).

Scenes: ``split_indices("test")[:count]``; the model's guidance and cfg, prompt " " for depth, seed 0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..cli import write_json
from .depth import score
from .ensemble import MEMBER_SEED_STRIDE, score_ensemble
from ..stack import DEFAULT_MODEL_DIR, depth_estimation, depth_to_image, held_out_scenes, joint_generation, load_stack

TASKS = ("depth_estimation", "joint_generation", "depth_to_image")
AGREEMENT_STEPS = 4


def _cache(threshold: float):
    from jointdit_core.step_cache import CacheSettings, JointStepCache

    return JointStepCache(CacheSettings(threshold, start_percent=0.0, end_percent=1.0))


def _run_task(stack, task: str, scenes, steps: int, cache):
    """(output arrays in [0, 1] to compare between thresholds, quality dict, seconds of the sampling alone)."""
    from .caption_classifier import caption_accuracy, load_classifier
    from ..world.dataset import normalized_disparity
    from .metrics import generated_depth_abs_rel

    rgb = np.stack([s.rgb for s in scenes])
    depths = [s.depth for s in scenes]
    captions = [s.caption for s in scenes]
    t0 = time.time()
    if task == "depth_estimation":
        disparity = depth_estimation(stack, rgb, steps=steps, cache=cache)
        return disparity, score(disparity, depths), time.time() - t0
    if task == "joint_generation":
        images, disparity = joint_generation(stack, captions, steps=steps, cache=cache)
        seconds = time.time() - t0
        estimated = depth_estimation(stack, images, steps=AGREEMENT_STEPS, seed=1)
        agreement = float(np.mean([generated_depth_abs_rel(e, g) for e, g in zip(estimated, disparity)]))
        quality = {"caption_overall": caption_accuracy(images, captions, load_classifier())["overall"], "depth_agreement_abs_rel": agreement}
        return np.concatenate([images.reshape(len(scenes), -1) / 255.0, disparity.reshape(len(scenes), -1)], axis=1), quality, seconds
    images = depth_to_image(stack, np.stack([normalized_disparity(d) for d in depths]), captions, steps=steps, cache=cache)
    seconds = time.time() - t0
    return images / 255.0, {"caption_overall": caption_accuracy(images, captions, load_classifier())["overall"]}, seconds


def evaluate_cache(count: int, thresholds: list[float], tasks: list[str], steps: int = 20, model_dir=DEFAULT_MODEL_DIR) -> dict:
    stack = load_stack(model_dir, None)
    scenes = held_out_scenes(count, size=stack.manifest["resolution"])
    rows = []
    _run_task(stack, "depth_estimation", scenes[:2], 1, None)  # warm-up (first calls, lazy loading)
    for task in tasks:
        reference, base_seconds = None, None
        for threshold in sorted(set([0.0] + thresholds)):
            cache = _cache(threshold)
            out, quality, seconds = _run_task(stack, task, scenes, steps, cache)
            if reference is None:
                reference, base_seconds = out, seconds
            computed = cache.computed / max(cache.computed + cache.reused, 1)
            row = {"task": task, "threshold": threshold, "computed": computed, "wall_ratio": seconds / base_seconds,
                   "mean_abs_diff": float(np.abs(out - reference).mean()), **quality}
            rows.append(row)
            print(row, flush=True)
    return {"rows": rows, "settings": {"count": count, "steps": steps, "variant": stack.variant, "cfg": stack.cfg, "agreement_steps": AGREEMENT_STEPS}}


def evaluate_fewstep(count: int, steps_list: list[int], ensemble: int, schedules=("flux_shifted", "linear"), model_dir=DEFAULT_MODEL_DIR) -> dict:
    stack = load_stack(model_dir, None)
    scenes = held_out_scenes(count, size=stack.manifest["resolution"])
    rgb = np.stack([s.rgb for s in scenes])
    depths = [s.depth for s in scenes]
    rows = []
    for schedule in schedules:
        for steps in steps_list:
            t0 = time.time()
            members = np.stack([depth_estimation(stack, rgb, steps=steps, seed=MEMBER_SEED_STRIDE * k, schedule=schedule) for k in range(ensemble)])
            row = {"schedule": schedule, "steps": steps, "seconds": round(time.time() - t0, 1), "single": score(members[0], depths)}
            row[f"ensemble_{ensemble}"] = {k: row_v for k, row_v in score_ensemble(members, depths, "median").items() if k in ("abs_rel", "delta1")}
            rows.append(row)
            print(row, flush=True)
    deterministic = depth_estimation(stack, rgb, steps=1, zero_depth_noise=True)
    rows.append({"schedule": "zeros, one step", "steps": 1, "single": score(deterministic, depths)})
    print(rows[-1], flush=True)
    return {"rows": rows, "settings": {"count": count, "ensemble": ensemble, "variant": stack.variant, "member_seeds": f"{MEMBER_SEED_STRIDE} k"}}


def cache_table(result: dict) -> str:
    lines = ["| task | threshold | evaluations computed | wall time | mean abs diff to uncached | quality |", "|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        quality = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k not in ("task", "threshold", "computed", "wall_ratio", "mean_abs_diff"))
        lines.append(f"| {r['task']} | {r['threshold']:g} | {r['computed']:.0%} | {r['wall_ratio']:.2f}x | {r['mean_abs_diff']:.4f} | {quality} |")
    return "\n".join(lines)


def fewstep_table(result: dict) -> str:
    n = result["settings"]["ensemble"]
    lines = [f"| schedule | steps | AbsRel (1) | delta1 (1) | AbsRel ({n}) | delta1 ({n}) |", "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        e = r.get(f"ensemble_{n}")
        tail = f"{e['abs_rel']:.4f} | {e['delta1']:.4f}" if e else "- | -"
        lines.append(f"| {r['schedule']} | {r['steps']} | {r['single']['abs_rel']:.4f} | {r['single']['delta1']:.4f} | {tail} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m rgbd_world.evaluation.fast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["cache", "fewstep"])
    p.add_argument("--count", type=int, default=50, help="test scenes")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4, 6, 10, 20])
    p.add_argument("--ensemble", type=int, default=4)
    p.add_argument("--schedules", nargs="+", choices=["flux_shifted", "linear"], default=["flux_shifted", "linear"])
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.what == "cache":
        result = evaluate_cache(a.count, a.thresholds, a.tasks)
        print(cache_table(result))
    else:
        result = evaluate_fewstep(a.count, a.steps, a.ensemble, a.schedules)
        print(fewstep_table(result))
    if a.json:
        write_json(a.json, result)


if __name__ == "__main__":
    main()
