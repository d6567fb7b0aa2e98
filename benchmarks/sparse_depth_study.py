"""Sparse depth supervision on the RGB-D world: equal addon runs on dense, 20% and 5% of the depth pixels,
and with no depth loss, scored by depth-estimation AbsRel on held-out test scenes.

    python benchmarks/sparse_depth_study.py --work build/sparse_study --scenes 1000 --steps 400 --eval-count 100

For each fraction the training scenes' exact metric depth is written as KITTI-style 16-bit PNGs
(metres * 256, 0 = missing; the sky, beyond 20 m, is kept as a measurement) with a seeded random choice of the measured pixels (the same pixels for every
run of a fraction), preprocessed with ``depth_kind = "kitti"`` and trained with
``rgbd_world/configs/jointdit_small.toml`` (seed 42, same steps, lr cooldown over the second half). "no
depth loss" is the dense cache with every ``depth_valid`` set to 0 (the depth row gets no loss; the rgb
row's loss still reaches the depth branch through the joint layers). Every addon is then scored with
``python -m rgbd_world.evaluation.addon`` (test scenes, 20 sampling steps, seed 0). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "rgbd_world" / "configs" / "jointdit_small.toml"
FRACTIONS = {"dense": 1.0, "20%": 0.2, "5%": 0.05}


def sh(cmd: list[str], log: Path) -> float:
    """Run a command (output to ``log``); returns its seconds. Raises CalledProcessError on failure."""
    start = time.time()
    with open(log, "w") as f:
        subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=True)
    return time.time() - start


def sparse_copy(dense: Path, out: Path, fraction: float, seed: int = 0) -> None:
    """``dense`` (rgbd_world.world.make_dataset layout) -> ``out`` with depth/<stem>.png in KITTI format, ``fraction`` measured."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "captions"):
        shutil.copytree(dense / sub, out / sub, dirs_exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    for path in sorted((dense / "depth_metric").glob("*.npy")):
        metres = np.load(path)
        keep = rng.random(metres.shape) < fraction
        Image.fromarray(np.where(keep, np.round(metres * 256), 0).astype(np.uint16)).save(out / "depth" / f"{path.stem}.png")


def zero_depth_valid(src: Path, dst: Path) -> None:
    """Copy a sparse cache with every sample's ``depth_valid`` set to 0 (no depth loss)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, dirs_exist_ok=True)
    for path in (dst / "samples").glob("*.safetensors"):
        tensors = load_file(str(path))
        tensors["depth_valid"] = torch.zeros_like(tensors["depth_valid"])
        save_file(tensors, str(path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("build/sparse_study"))
    p.add_argument("--scenes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eval-count", type=int, default=100)
    p.add_argument("--parallel", type=int, default=2, help="training runs at once")
    a = p.parse_args()
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    dense = work / "data" / "dense_source"
    if not (dense / "world.json").is_file():
        sh([py, "-m", "rgbd_world.world.make_dataset", "--out", str(dense), "--split", "train", "--count", str(a.scenes)], work / "make_dataset.log")
    runs = {}
    for name, fraction in [*FRACTIONS.items(), ("no depth loss", None)]:
        tag = name.replace("%", "pct").replace(" ", "_")
        cache = work / "cache" / tag
        if fraction is None:
            zero_depth_valid(work / "cache" / "dense", cache)
        elif not (cache / "cache.json").is_file():
            data = work / "data" / tag
            sparse_copy(dense, data, fraction)
            sh([py, "-m", "jointdit_trainer", "preprocess", "--config", str(CONFIG), "--set", f"dataset_dir={data}", "--set", f"cache_dir={cache}",
                "--set", "depth_kind=kitti"], work / f"preprocess_{tag}.log")
        runs[name] = (tag, cache, work / "runs" / tag)

    def train(name: str) -> float:
        tag, cache, out = runs[name]
        return sh([py, "-m", "jointdit_trainer", "train", "--config", str(CONFIG), "--set", f"cache_dir={cache}", "--set", f"output_dir={out}",
                   "--set", "depth_kind=kitti", "--set", f"max_train_steps={a.steps}", "--set", f"lr_decay_steps={a.steps // 2}",
                   "--set", f"train_batch_size={a.batch}", "--set", "resume_from=latest"], work / f"train_{tag}.log")

    with ThreadPoolExecutor(max_workers=a.parallel) as pool:  # one thread per run (OMP_NUM_THREADS=1)
        seconds = dict(zip(runs, pool.map(train, runs)))
    rows = []
    for name, (tag, cache, out) in runs.items():
        log = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
        result = work / f"eval_{tag}.jsonl"
        result.unlink(missing_ok=True)
        sh([py, "-m", "rgbd_world.evaluation.addon", str(out / "jointdit_addons.safetensors"), "--count", str(a.eval_count), "--json", str(result)],
           work / f"eval_{tag}.log")
        score = json.loads(result.read_text().splitlines()[-1])
        last = log[-50:]
        rows.append((name, sum(r["loss_depth"] for r in last) / len(last), score["abs_rel"], score["delta1"], seconds[name]))
        print(f"{name}: AbsRel {score['abs_rel']:.4f} delta1 {score['delta1']:.4f}, training {seconds[name]:.0f} s", flush=True)
    print(f"\n{a.scenes} training scenes, {a.steps} steps of {a.batch} pairs each, AbsRel/delta1 on {a.eval_count} test scenes (20 steps, seed 0)\n")
    print("| depth supervision | depth loss, last 50 steps | AbsRel | delta1 | training time |")
    print("| --- | --- | --- | --- | --- |")
    for name, loss, absrel, delta1, seconds in rows:
        print(f"| {name} | {loss:.4f} | {absrel:.4f} | {delta1:.4f} | {seconds / 60:.1f} min |")


if __name__ == "__main__":
    main()
