"""The demo: the shipped small JointDiT runs the three tasks on the RGB-D world, on a CPU, in seconds.

    python -m rgbd_world.demo --out demo_output [--model rgbd_world/model] [--steps 20] [--seed 0]

1. joint generation: RGB + depth from a few captions;
2. depth estimation: depth of held-out test scenes (never trained on), scored against their exact
   depth (AbsRel, delta1; protocol in :mod:`rgbd_world.metrics`), next to the trivial baseline;
3. depth-to-image: images from held-out depth maps and their captions.

For 1 and 3 the model also re-estimates the depth of its own generated images (the cycle AbsRel:
how well the image it drew fits the depth it drew or was given).

Writes PNGs (rgb; depth as grayscale disparity, near = white; depth colour-mapped, near = yellow),
``overview.png`` (everything on one sheet), ``summary.md`` and ``summary.json`` (what ran, timings,
metrics).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jointdit_core.depth import colorize
from jointdit_core.images import unit_to_uint8

from .cli import int_at_least
from .dataset import normalized_disparity
from .lift_eval import write_demo_lifts
from .metrics import evaluate_disparity, generated_depth_abs_rel, mean_metrics
from .stack import DEFAULT_MODEL_DIR, depth_estimation, depth_to_image, held_out_scenes, joint_generation, load_baseline, load_stack

CAPTIONS = [
    "a large red sphere",
    "a blue cube left of a yellow cone",
    "two green cylinders on a checkered floor",
    "a small white cone in front of a large purple cube",
]
DEPTH_ESTIMATION_START, DEPTH_TO_IMAGE_START = 0, 100  # offsets inside the test split
TASK_FOLDERS = ("joint_generation", "depth_estimation", "depth_to_image", "3d")
OWN_SUFFIXES = {".png", ".glb", ".ply"}  # what the demo writes into TASK_FOLDERS
OWN_TOP_LEVEL = {"overview.png", "summary.json", "summary.md"}


def colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 viridis colours (clamped; 0 = dark purple, 1 = yellow)."""
    return unit_to_uint8(colorize(torch.from_numpy(np.asarray(values, np.float64)), "viridis")).numpy()


def gray(disparity: np.ndarray) -> np.ndarray:
    """(H, W) disparity in [0, 1] -> (H, W) uint8 grayscale (near = white)."""
    return unit_to_uint8(np.asarray(disparity)).numpy()


def save_depth(folder: Path, stem: str, disparity: np.ndarray) -> list[str]:
    """Write ``stem``_depth.png (grayscale) and ``stem``_depth_color.png; returns the file names."""
    Image.fromarray(gray(disparity)).save(folder / f"{stem}_depth.png")
    Image.fromarray(colormap(disparity)).save(folder / f"{stem}_depth_color.png")
    return [f"{stem}_depth.png", f"{stem}_depth_color.png"]


def sheet(rows: list[list[np.ndarray]], zoom: int = 3) -> Image.Image:
    """Grid of (H, W, 3) uint8 tiles (rows may differ in length), nearest-neighbour zoomed."""
    width = max(len(r) for r in rows)
    blank = np.full_like(rows[0][0], 255)
    grid = np.concatenate([np.concatenate(r + [blank] * (width - len(r)), axis=1) for r in rows], axis=0)
    img = Image.fromarray(grid)
    return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


def clear_earlier_run(out: Path) -> int:
    """Remove the files an earlier demo run wrote into ``out`` (so fewer scenes leave no stale ones).

    Returns the number of files removed. Raises ValueError, removing nothing, when ``out`` is a file or
    holds files or folders the demo does not write (nothing a user made is deleted).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if not out.exists():
        return 0
    own, foreign = [], []
    for entry in out.iterdir():
        if entry.is_dir() and entry.name in TASK_FOLDERS:
            for f in entry.iterdir():
                (own if f.is_file() and f.suffix in OWN_SUFFIXES else foreign).append(f)
        else:
            (own if entry.is_file() and entry.name in OWN_TOP_LEVEL else foreign).append(entry)
    if foreign:
        names = ", ".join(str(f.relative_to(out)) for f in sorted(foreign)[:5])
        raise ValueError(f"--out {out} holds files the demo does not write ({names}); choose an empty or new folder, or move them")
    for f in own:
        f.unlink()
    return len(own)


def run_demo(out: str | Path, model_dir: str | Path = DEFAULT_MODEL_DIR, steps: int = 20, seed: int = 0, count: int = 6, variant: str | None = None) -> dict:
    """Run the three tasks and write everything under ``out``; returns the summary dict.

    Files of an earlier demo run in ``out`` are replaced (see :func:`clear_earlier_run`).

    Raises:
        ValueError: ``count`` < 1 or beyond the test split, ``steps`` < 1, or an ``out`` with other files;
        FileNotFoundError: no model in ``model_dir``.
    """
    from .scenes import split_indices

    available = len(split_indices("test")) - DEPTH_ESTIMATION_START
    if not (1 <= count <= available) or steps < 1:
        raise ValueError(f"count must be 1..{available} (the held-out test scenes) and steps at least 1; got count={count}, steps={steps}")
    t_start = time.time()
    out = Path(out)
    stack = load_stack(model_dir, variant)
    cleared = clear_earlier_run(out)
    if cleared:
        print(f"replacing the {cleared} files of an earlier demo run in {out}/")
    for sub in TASK_FOLDERS[:3]:
        (out / sub).mkdir(parents=True, exist_ok=True)
    timings = {"load": round(time.time() - t_start, 2)}
    summary = {"model": str(model_dir), "variant": stack.variant, "asw_strength": stack.asw_strength, "steps": steps, "seed": seed, "guidance": stack.guidance}
    files: list[str] = []
    overview: list[list[np.ndarray]] = []
    rgb3 = lambda d: np.repeat(gray(d)[..., None], 3, axis=2)  # noqa: E731

    # 1. joint generation
    t0 = time.time()
    rgb, disp = joint_generation(stack, CAPTIONS, steps=steps, seed=seed)
    timings["joint_generation"] = round(time.time() - t0, 2)
    cycle = depth_estimation(stack, rgb, steps=steps, seed=seed + 1)
    joint = []
    for i, caption in enumerate(CAPTIONS):
        stem = f"{i:02d}"
        Image.fromarray(rgb[i]).save(out / "joint_generation" / f"{stem}_rgb.png")
        names = [f"{stem}_rgb.png"] + save_depth(out / "joint_generation", stem, disp[i])
        files += [f"joint_generation/{n}" for n in names]
        joint.append({"caption": caption, "files": names, "cycle_abs_rel": generated_depth_abs_rel(cycle[i], disp[i])})
    overview.append([t for i in range(len(CAPTIONS)) for t in (rgb[i], colormap(disp[i]))])
    summary["joint_generation"] = joint

    # 2. depth estimation on held-out scenes
    scenes = held_out_scenes(count, start=DEPTH_ESTIMATION_START, size=stack.manifest["resolution"])
    t0 = time.time()
    pred = depth_estimation(stack, np.stack([s.rgb for s in scenes]), steps=steps, seed=seed)
    timings["depth_estimation"] = round(time.time() - t0, 2)
    baseline = load_baseline(model_dir)
    estimates, ours, base = [], [], []
    for i, s in enumerate(scenes):
        stem = f"{i:02d}"
        Image.fromarray(s.rgb).save(out / "depth_estimation" / f"{stem}_input.png")
        names = [f"{stem}_input.png"] + save_depth(out / "depth_estimation", stem, pred[i])
        gt = normalized_disparity(s.depth)
        Image.fromarray(colormap(gt)).save(out / "depth_estimation" / f"{stem}_ground_truth_color.png")
        names.append(f"{stem}_ground_truth_color.png")
        files += [f"depth_estimation/{n}" for n in names]
        m, b = evaluate_disparity(pred[i], s.depth), evaluate_disparity(baseline, s.depth)
        ours.append(m)
        base.append(b)
        estimates.append({"scene": s.index, "caption": s.caption, "files": names, "abs_rel": m["abs_rel"], "delta1": m["delta1"], "baseline_abs_rel": b["abs_rel"]})
    overview.append([t for i, s in enumerate(scenes) for t in (s.rgb, colormap(pred[i]))])
    overview.append([t for s in scenes for t in (colormap(normalized_disparity(s.depth)), np.full_like(s.rgb, 255))])
    summary["depth_estimation"] = {"scenes": estimates, "mean": mean_metrics(ours), "baseline_mean": mean_metrics(base)}
    files += write_demo_lifts(out, (rgb[0], disp[0]), (scenes[0].rgb, pred[0]))  # 3d/*.glb, *.ply (rgbd_world.lift_eval)

    # 3. depth-to-image from held-out depth maps
    scenes = held_out_scenes(len(CAPTIONS), start=DEPTH_TO_IMAGE_START, size=stack.manifest["resolution"])
    cond = np.stack([normalized_disparity(s.depth) for s in scenes])
    t0 = time.time()
    images = depth_to_image(stack, cond, [s.caption for s in scenes], steps=steps, seed=seed)
    timings["depth_to_image"] = round(time.time() - t0, 2)
    cycle = depth_estimation(stack, images, steps=steps, seed=seed + 1)
    d2i = []
    for i, s in enumerate(scenes):
        stem = f"{i:02d}"
        names = save_depth(out / "depth_to_image", f"{stem}_input", cond[i])
        Image.fromarray(images[i]).save(out / "depth_to_image" / f"{stem}_rgb.png")
        Image.fromarray(s.rgb).save(out / "depth_to_image" / f"{stem}_original.png")
        names += [f"{stem}_rgb.png", f"{stem}_original.png"]
        files += [f"depth_to_image/{n}" for n in names]
        d2i.append({"scene": s.index, "caption": s.caption, "files": names, "cycle_abs_rel": evaluate_disparity(cycle[i], s.depth)["abs_rel"]})
    overview.append([t for i in range(len(scenes)) for t in (colormap(cond[i]), images[i])])
    summary["depth_to_image"] = d2i

    sheet(overview).save(out / "overview.png")
    files.append("overview.png")
    timings["total"] = round(time.time() - t_start, 2)
    summary.update(timings=timings, files=files, platform=platform.platform(), python=platform.python_version())
    import torch

    summary["torch"] = torch.__version__
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    summary["files"] += ["summary.json", "summary.md"]
    return summary


def summary_markdown(s: dict) -> str:
    """The summary as Markdown."""
    t = s["timings"]
    de = s["depth_estimation"]
    lines = [
        "# JointDiT demo on the RGB-D world",
        "",
        f"Model `{s['model']}`, addons `{s['variant']}` (ASW strength {s['asw_strength']}), {s['steps']} Euler steps, "
        f"guidance {s['guidance']}, seed {s['seed']}; torch {s['torch']} on {s['platform']}.",
        "",
        "| task | seconds |",
        "| --- | --- |",
        f"| load model | {t['load']} |",
        f"| joint generation ({len(s['joint_generation'])} captions) | {t['joint_generation']} |",
        f"| depth estimation ({len(de['scenes'])} test scenes) | {t['depth_estimation']} |",
        f"| depth-to-image ({len(s['depth_to_image'])} test depth maps) | {t['depth_to_image']} |",
        f"| whole demo (with the cycle checks and file writing) | {t['total']} |",
        "",
        "## Depth estimation on held-out scenes",
        "",
        "Protocol: sky excluded; per-image least-squares scale and shift of the disparity against 1/z; depth clipped "
        "to (0, FAR]; AbsRel (lower is better) and delta1 (higher is better). Baseline: the mean training disparity map.",
        "",
        "| scene | caption | AbsRel | delta1 | baseline AbsRel |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in de["scenes"]:
        lines.append(f"| {e['scene']} | {e['caption']} | {e['abs_rel']:.3f} | {e['delta1']:.3f} | {e['baseline_abs_rel']:.3f} |")
    lines.append(f"| **mean** | | **{de['mean']['abs_rel']:.3f}** | **{de['mean']['delta1']:.3f}** | {de['baseline_mean']['abs_rel']:.3f} |")
    lines += ["", "## Joint generation", "", "| caption | files | cycle AbsRel |", "| --- | --- | --- |"]
    for e in s["joint_generation"]:
        lines.append(f"| {e['caption']} | {', '.join(e['files'])} | {e['cycle_abs_rel']:.3f} |")
    lines += ["", "## Depth-to-image", "", "| scene | caption | files | cycle AbsRel |", "| --- | --- | --- | --- |"]
    for e in s["depth_to_image"]:
        lines.append(f"| {e['scene']} | {e['caption']} | {', '.join(e['files'])} | {e['cycle_abs_rel']:.3f} |")
    lines += [
        "",
        "Cycle AbsRel: the model re-estimates the depth of the image it generated and this is scored against the depth "
        "it generated (joint generation) or was given (depth-to-image); low = image and depth agree.",
        "",
        "`overview.png`: row 1 joint generation (rgb, depth), row 2 depth estimation (input, estimate), row 3 ground "
        "truth, row 4 depth-to-image (input depth, generated image). Depth colours: near = yellow, far = purple.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m rgbd_world.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_output", help="folder to write")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (python -m rgbd_world.recipe)")
    p.add_argument("--variant", default=None, help="addon variant in model.json (default: uts_asw)")
    p.add_argument("--steps", type=int_at_least(1), default=20, help="Euler steps per task (official 20)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--count", type=int_at_least(1), default=6, help="held-out scenes for depth estimation")
    a = p.parse_args(argv)
    try:
        s = run_demo(a.out, a.model, a.steps, a.seed, a.count, a.variant)
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    de = s["depth_estimation"]
    print(
        f"depth estimation on {len(de['scenes'])} held-out scenes: AbsRel {de['mean']['abs_rel']:.3f}, delta1 {de['mean']['delta1']:.3f} "
        f"(mean-depth baseline AbsRel {de['baseline_mean']['abs_rel']:.3f})"
    )
    print(f"done in {s['timings']['total']:.1f}s; wrote {len(s['files'])} files to {a.out}/:")
    for name in s["files"]:
        print(f"  {name}")


if __name__ == "__main__":
    main()
