"""The demo: the shipped small JointDiT runs six tasks on the RGB-D world, on a CPU, in seconds.

    python -m rgbd_world.demo --out demo_output [--model rgbd_world/model] [--steps 20] [--seed 0]
                              [--caption "a red cube left of a blue sphere" ...] [--addon my_addons.safetensors]

In the order of the overview, strongest first:

1. depth estimation: depth of held-out test scenes (never trained on), scored against their exact
   depth (AbsRel, delta1; protocol in :mod:`rgbd_world.evaluation.metrics`), next to the trivial baseline; with the
   model's measured setting (model.json ``depth_estimation``: Euler steps, samples ensembled);
2. 3D: one depth estimate and one joint-generation pair lifted to meshes (``3d/*.glb``, ``*.ply``) and
   seen from a new viewpoint;
3. depth completion: one held-out scene's depth from 5% of its pixels plus the photo;
4. joint inpainting and outpainting: image and depth redrawn together inside a region;
5. depth-to-image: images from held-out depth maps and their captions;
6. joint generation: RGB + depth from a few captions (``--caption`` for your own; words:
   ``python -m rgbd_world.training.text --vocabulary``).

The small base (2.4M parameters, trained minutes on a CPU) draws blurry scenes that barely follow their
captions: depth estimation and 3D are the strong parts. For 5 and 6 the caption classifier says what it
reads in each image, and the model re-estimates the depth of its own images (the cycle AbsRel: how well
the image it drew fits the depth it drew or was given).

Writes PNGs (rgb; depth as grayscale disparity, near = white; depth colour-mapped, near = yellow),
``overview.png`` (everything on one labelled sheet: open it first), ``summary.md`` and ``summary.json``
(settings, timings, metrics, every file). ``--addon`` runs an addon file you trained
(``python -m jointdit_trainer train``) on the shipped base instead of the shipped addons.
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
from .world.dataset import normalized_disparity
from .figures.lift_world import new_view, write_demo_lifts
from .evaluation.metrics import evaluate_disparity, generated_depth_abs_rel, mean_metrics
from .evaluation.completion import nearest_fill, sparse_disparity
from .evaluation.inpainting import masked_inputs, object_hole
from .figures.overview import TILE, Example, Section, render_overview
from .world.scenes import VOCABULARY
from .stack import DEFAULT_MODEL_DIR, depth_completion, depth_estimation, depth_to_image, held_out_scenes, inpaint_rgbd, joint_generation, load_baseline, load_stack

CAPTIONS = [
    "a large red sphere",
    "a blue cube left of a yellow cone",
    "two green cylinders on a checkered floor",
    "a small white cone in front of a large purple cube",
]
DEPTH_ESTIMATION_START, DEPTH_TO_IMAGE_START, EDITING_START = 0, 100, 200  # offsets inside the test split
COMPLETION_SHARE = 0.05  # share of the valid depth pixels the depth-completion example keeps
OUTPAINT_BORDER = 16  # pixels the outpainting example regenerates on the left and on the right (of 64)
OVERVIEW_ORDER = ("depth_estimation", "3d", "depth_completion", "inpainting", "depth_to_image", "joint_generation")  # strongest first
TASK_FOLDERS = ("joint_generation", "depth_estimation", "depth_to_image", "inpainting", "outpainting", "depth_completion", "3d")
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


def _save(out: Path, files: list[str], folder: str, name: str, image: np.ndarray) -> str:
    """Write uint8 ``image`` to ``out/folder/name``, list it in ``files``; returns ``name``."""
    Image.fromarray(image).save(out / folder / name)
    files.append(f"{folder}/{name}")
    return name


def _save_depth(out: Path, files: list[str], folder: str, stem: str, disparity: np.ndarray) -> list[str]:
    """:func:`save_depth` into ``out/folder``, the files listed in ``files``; returns their names."""
    names = save_depth(out / folder, stem, disparity)
    files.extend(f"{folder}/{n}" for n in names)
    return names


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


def run_demo(out: str | Path, model_dir: str | Path = DEFAULT_MODEL_DIR, steps: int = 20, seed: int = 0, count: int = 6, variant: str | None = None,
             captions: list[str] | None = None, addon: str | Path | None = None, depth_steps: int | None = None, ensemble: int | None = None) -> dict:
    """Run the six tasks and write everything under ``out``; returns the summary dict.

    ``steps``: Euler steps of the generative tasks; ``depth_steps`` / ``ensemble``: steps and samples per
    image of depth estimation (default: the model's, :attr:`rgbd_world.stack.Stack.depth_steps`).
    ``captions``: prompts for joint generation (default :data:`CAPTIONS`); ``addon``: an addon file of
    your own instead of the model's ``variant``. Files of an earlier demo run in ``out`` are replaced
    (see :func:`clear_earlier_run`).

    Raises:
        ValueError: ``count`` < 1 or beyond the test split, ``steps`` < 1, an empty caption, an ``out``
            with other files, an addon file that does not fit the base;
        FileNotFoundError: no model in ``model_dir`` or no such addon file.
    """
    from .world.scenes import split_indices

    available = len(split_indices("test")) - DEPTH_ESTIMATION_START
    if not (1 <= count <= available) or steps < 1:
        raise ValueError(f"count must be 1..{available} (the held-out test scenes) and steps at least 1; got count={count}, steps={steps}")
    captions = list(captions or CAPTIONS)
    if any(not c.strip() for c in captions):
        raise ValueError("a --caption is empty; give the scene to draw, e.g. --caption 'a red cube left of a blue sphere'")
    t_start = time.time()
    out = Path(out)
    stack = load_stack(model_dir, variant, addon=addon)
    cleared = clear_earlier_run(out)
    if cleared:
        print(f"replacing the {cleared} files of an earlier demo run in {out}/")
    for sub in TASK_FOLDERS[:-1]:
        (out / sub).mkdir(parents=True, exist_ok=True)
    depth = {"steps": depth_steps or stack.depth_steps, "ensemble": ensemble or stack.depth_ensemble}
    estimate = lambda images, s: depth_estimation(stack, images, steps=depth["steps"], seed=s, ensemble=depth["ensemble"])  # noqa: E731
    timings = {"load": round(time.time() - t_start, 2)}
    summary = {"model": str(model_dir), "variant": stack.variant, "asw_strength": stack.asw_strength, "steps": steps, "seed": seed,
               "guidance": stack.guidance, "cfg": stack.cfg, "depth_estimation_setting": depth}
    unknown = sorted({w for c in captions for w in c.lower().replace(",", " ").split()} - set(VOCABULARY))
    if unknown:
        print(f"note: the small model's text encoders never saw {unknown}; they read as an unknown word (the words: python -m rgbd_world.training.text --vocabulary)")
    files: list[str] = []
    sections: dict[str, Section] = {}

    # depth estimation on held-out scenes
    scenes = held_out_scenes(count, start=DEPTH_ESTIMATION_START, size=stack.manifest["resolution"])
    t0 = time.time()
    pred = estimate(np.stack([s.rgb for s in scenes]), seed)
    timings["depth_estimation"] = round(time.time() - t0, 2)
    baseline = load_baseline(model_dir)
    estimates, ours, base, examples = [], [], [], []
    for i, s in enumerate(scenes):
        gt = normalized_disparity(s.depth)
        names = [_save(out, files, "depth_estimation", f"{i:02d}_input.png", s.rgb), *_save_depth(out, files, "depth_estimation", f"{i:02d}", pred[i]),
                 _save(out, files, "depth_estimation", f"{i:02d}_ground_truth_color.png", colormap(gt))]
        m, b = evaluate_disparity(pred[i], s.depth), evaluate_disparity(baseline, s.depth)
        ours.append(m)
        base.append(b)
        estimates.append({"scene": s.index, "caption": s.caption, "files": names, "abs_rel": m["abs_rel"], "delta1": m["delta1"], "baseline_abs_rel": b["abs_rel"]})
        examples.append(Example(f"test scene {s.index}: AbsRel {m['abs_rel']:.3f}", [("photo", s.rgb), ("estimate", colormap(pred[i])), ("ground truth", colormap(gt))]))
    sections["depth_estimation"] = Section("Depth estimation: photo -> depth, held-out scenes (near = yellow)", examples)
    summary["depth_estimation"] = {"scenes": estimates, "mean": mean_metrics(ours), "baseline_mean": mean_metrics(base)}

    # joint generation (drawn now: its first pair is also lifted to 3D)
    t0 = time.time()
    rgb, disp = joint_generation(stack, captions, steps=steps, seed=seed)
    timings["joint_generation"] = round(time.time() - t0, 2)
    cycle = estimate(rgb, seed + 1)
    joint = []
    for i, caption in enumerate(captions):
        names = [_save(out, files, "joint_generation", f"{i:02d}_rgb.png", rgb[i])] + _save_depth(out, files, "joint_generation", f"{i:02d}", disp[i])
        joint.append({"caption": caption, "files": names, "cycle_abs_rel": generated_depth_abs_rel(cycle[i], disp[i])})
    readings = _caption_readings(rgb, captions, joint)
    sections["joint_generation"] = Section("Joint generation: caption -> image + depth, both drawn from noise (the weakest task: a tiny base)",
                                           [Example(f"{c}\nreads: {readings[i]}", [("image", rgb[i]), ("depth", colormap(disp[i]))]) for i, c in enumerate(captions)])
    summary["joint_generation"] = joint

    # 3D: the first depth estimate and the first joint-generation pair
    files += write_demo_lifts(out, (rgb[0], disp[0]), (scenes[0].rgb, pred[0]))  # 3d/*.glb, *.ply
    s = scenes[0]
    sections["3d"] = Section("3D: RGB-D pairs lifted to meshes (3d/*.glb, *.ply), seen 35 degrees to the side", [
        Example(f"test scene {s.index}, depth estimated", [("photo", s.rgb), ("estimate", colormap(pred[0])),
                                                           ("lifted estimate", new_view(s.rgb, pred[0], float(s.depth.min()), size=TILE)),
                                                           ("lifted exact depth", new_view(s.rgb, normalized_disparity(s.depth), float(s.depth.min()), size=TILE))]),
        Example(f"joint generation: {captions[0]}", [("image", rgb[0]), ("depth", colormap(disp[0])), ("lifted", new_view(rgb[0], disp[0], size=TILE))])])

    # depth-to-image from held-out depth maps
    scenes = held_out_scenes(len(CAPTIONS), start=DEPTH_TO_IMAGE_START, size=stack.manifest["resolution"])
    cond = np.stack([normalized_disparity(s.depth) for s in scenes])
    t0 = time.time()
    images = depth_to_image(stack, cond, [s.caption for s in scenes], steps=steps, seed=seed)
    timings["depth_to_image"] = round(time.time() - t0, 2)
    cycle = estimate(images, seed + 1)
    d2i = []
    for i, s in enumerate(scenes):
        names = [*_save_depth(out, files, "depth_to_image", f"{i:02d}_input", cond[i]), _save(out, files, "depth_to_image", f"{i:02d}_rgb.png", images[i]),
                 _save(out, files, "depth_to_image", f"{i:02d}_original.png", s.rgb)]
        d2i.append({"scene": s.index, "caption": s.caption, "files": names, "cycle_abs_rel": evaluate_disparity(cycle[i], s.depth)["abs_rel"]})
    readings = _caption_readings(images, [s.caption for s in scenes], d2i)
    sections["depth_to_image"] = Section("Depth-to-image: depth + caption -> image, held-out depth maps",
                                         [Example(f"{s.caption}\nreads: {readings[i]}", [("depth given", colormap(cond[i])), ("generated", images[i]), ("original", s.rgb)])
                                          for i, s in enumerate(scenes)])
    summary["depth_to_image"] = d2i

    # editing: joint inpainting, outpainting and depth completion on one held-out scene each
    t0 = time.time()
    s = held_out_scenes(1, start=EDITING_START, size=stack.manifest["resolution"])[0]
    summary["inpainting"], inpainting = _masked_example(stack, out, "inpainting", s, object_hole(s.labels), steps, seed, files)
    border = np.zeros(s.depth.shape, bool)
    border[:, :OUTPAINT_BORDER], border[:, -OUTPAINT_BORDER:] = True, True
    s = held_out_scenes(1, start=EDITING_START + 2, size=stack.manifest["resolution"])[0]
    summary["outpainting"], outpainting = _masked_example(stack, out, "outpainting", s, border, steps, seed, files)
    summary["depth_completion"], completion = _completion_example(stack, out, steps, seed, files)
    timings["editing"] = round(time.time() - t0, 2)
    sections["depth_completion"] = Section("Depth completion: 5% of the depth + the photo -> dense depth", [completion])
    sections["inpainting"] = Section("Joint inpainting and outpainting: the first object cut out / the left and right quarters, image + depth redrawn from the caption",
                                     [inpainting, outpainting])

    ordered = [Section(f"{n}. {sections[k].title}", sections[k].examples) for n, k in enumerate(OVERVIEW_ORDER, 1)]
    render_overview(ordered).save(out / "overview.png")
    files.append("overview.png")
    summary["overview"] = [sec.title for sec in ordered]
    timings["total"] = round(time.time() - t_start, 2)
    summary.update(timings=timings, files=files, platform=platform.platform(), python=platform.python_version(), torch=torch.__version__)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    summary["files"] += ["summary.json", "summary.md"]
    return summary


def _caption_readings(images: np.ndarray, captions: list[str], entries: list[dict]) -> list[str]:
    """What the caption classifier reads in each generated image (words); adds each entry's "reads" and, for
    captions of the world's grammar, "caption_accuracy" (per attribute, 1 = matches; rgbd_world.evaluation.caption_classifier)."""
    from .evaluation.caption_classifier import caption_accuracy, describe, read_images

    reading = read_images(images)
    words = [describe(reading, i) for i in range(len(images))]
    for i, entry in enumerate(entries):
        entry["reads"] = words[i]
        try:
            entry["caption_accuracy"] = caption_accuracy(images[i : i + 1], [captions[i]])
        except ValueError:  # a --caption outside the world's grammar: nothing to score against
            entry["caption_accuracy"] = None
    return words


def _masked_example(stack, out: Path, folder: str, s, hole: np.ndarray, steps: int, seed: int, files: list[str]) -> tuple[dict, Example]:
    """Joint inpainting / outpainting of scene ``s`` inside ``hole`` (H, W) bool; files in ``out/folder``."""
    photo, fill = masked_inputs(s.rgb, normalized_disparity(s.depth), hole)
    rgb, disp = inpaint_rgbd(stack, photo[None], fill[None], hole[None], [s.caption], steps=steps, seed=seed)
    # pasted into the photo outside the region, as inpainting tools composite: the small autoencoder blurs a round trip
    pasted = np.where(hole[..., None], rgb[0], photo)
    for stem, image in (("input", photo), ("rgb", pasted), ("original", s.rgb)):
        _save(out, files, folder, f"00_{stem}.png", image)
    _save_depth(out, files, folder, "00", disp[0])
    abs_rel = evaluate_disparity(disp[0], s.depth, region=hole)["abs_rel"]
    example = Example(f"{s.caption} (depth AbsRel in the new region {abs_rel:.3f})", [
        ("input", photo), ("redrawn", pasted), ("its depth", colormap(disp[0])), ("original", s.rgb),
        ("true depth", colormap(normalized_disparity(s.depth)))])
    return {"scene": s.index, "caption": s.caption, "region_pixels": int(hole.sum()), "abs_rel_in_region": abs_rel}, example


def _completion_example(stack, out: Path, steps: int, seed: int, files: list[str]) -> tuple[dict, Example]:
    """Depth completion of one held-out scene from COMPLETION_SHARE of its depth; files in ``out/depth_completion``."""
    s = held_out_scenes(1, start=EDITING_START + 1, size=stack.manifest["resolution"])[0]
    sparse, kept = sparse_disparity(s.depth, COMPLETION_SHARE, seed)
    completed = depth_completion(stack, s.rgb[None], nearest_fill(sparse, kept)[None], ~kept[None], steps=steps, seed=seed)[0]
    shown = np.where(kept[..., None], colormap(sparse), 255).astype(np.uint8)  # known pixels in colour, missing white
    gt = colormap(normalized_disparity(s.depth))
    for stem, image in (("input", s.rgb), ("sparse_depth_color", shown), ("ground_truth_color", gt)):
        _save(out, files, "depth_completion", f"00_{stem}.png", image)
    _save_depth(out, files, "depth_completion", "00", completed)
    abs_rel = evaluate_disparity(completed, s.depth)["abs_rel"]
    example = Example(f"test scene {s.index}: AbsRel {abs_rel:.3f}", [
        ("photo", s.rgb), (f"{COMPLETION_SHARE:.0%} of the depth", shown), ("completed", colormap(completed)), ("true depth", gt)])
    return {"scene": s.index, "share": COMPLETION_SHARE, "abs_rel": abs_rel}, example


def summary_markdown(s: dict) -> str:
    """The summary as Markdown."""
    t = s["timings"]
    de = s["depth_estimation"]
    lines = [
        "# JointDiT demo on the RGB-D world",
        "",
        f"Model `{s['model']}`, addons `{s['variant']}` (ASW strength {s['asw_strength']}), {s['steps']} Euler steps "
        f"(depth estimation: {_depth_setting(s)}), guidance {s['guidance']}, CFG {s['cfg']} for the captioned tasks, seed {s['seed']}; "
        f"torch {s['torch']} on {s['platform']}.",
        "",
        "| task | seconds |",
        "| --- | --- |",
        f"| load model | {t['load']} |",
        f"| joint generation ({len(s['joint_generation'])} captions) | {t['joint_generation']} |",
        f"| depth estimation ({len(de['scenes'])} test scenes) | {t['depth_estimation']} |",
        f"| depth-to-image ({len(s['depth_to_image'])} test depth maps) | {t['depth_to_image']} |",
        f"| joint inpainting + depth completion (one scene each) | {t['editing']} |",
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
    score = lambda e: "-" if not e.get("caption_accuracy") else f"{e['caption_accuracy']['overall']:.2f}"  # noqa: E731
    lines += ["", "## Joint generation", "", "| caption | the classifier reads | caption accuracy | files | cycle AbsRel |", "| --- | --- | --- | --- | --- |"]
    for e in s["joint_generation"]:
        lines.append(f"| {e['caption']} | {e['reads']} | {score(e)} | {', '.join(e['files'])} | {e['cycle_abs_rel']:.3f} |")
    lines += ["", "## Depth-to-image", "", "| scene | caption | the classifier reads | caption accuracy | files | cycle AbsRel |", "| --- | --- | --- | --- | --- | --- |"]
    for e in s["depth_to_image"]:
        lines.append(f"| {e['scene']} | {e['caption']} | {e['reads']} | {score(e)} | {', '.join(e['files'])} | {e['cycle_abs_rel']:.3f} |")
    ip, op, dc = s["inpainting"], s["outpainting"], s["depth_completion"]
    lines += [
        "", "## Joint inpainting, outpainting and depth completion", "",
        f"Inpainting, scene {ip['scene']} ({ip['caption']}): the first object's box ({ip['region_pixels']} pixels) cut out of photo and "
        f"depth and redrawn from the caption; depth AbsRel inside the hole against the true depth {ip['abs_rel_in_region']:.3f} "
        "(files in `inpainting/`; the redrawn image is pasted into the photo outside the hole, as inpainting tools composite; "
        "`python -m rgbd_world.evaluation.inpainting` scores 200 scenes).",
        "",
        f"Outpainting, scene {op['scene']} ({op['caption']}): the left and right {OUTPAINT_BORDER} columns ({op['region_pixels']} pixels) "
        f"drawn from the middle and the caption; depth AbsRel there {op['abs_rel_in_region']:.3f} (files in `outpainting/`).",
        "",
        f"Depth completion, scene {dc['scene']}: {dc['share']:.0%} of the valid depth pixels + the photo -> AbsRel {dc['abs_rel']:.3f} "
        "(files in `depth_completion/`; `python -m rgbd_world.evaluation.completion` scores 200 scenes).",
    ]
    lines += [
        "",
        "Caption accuracy: the caption classifier (`rgbd_world.evaluation.caption_classifier`, 0.85 on ground-truth renders) reads "
        "count, floor, shapes, colours and colour + shape objects from the image; the mean of the attributes the caption "
        "states that match (1 = all). `python -m rgbd_world.evaluation.captions` scores 200 captions.",
        "",
        "Cycle AbsRel: the model re-estimates the depth of the image it generated and this is scored against the depth "
        "it generated (joint generation) or was given (depth-to-image); low = image and depth agree.",
        "",
        "`overview.png`: one labelled section per task, strongest first (1 depth estimation with the ground truth beside "
        "each estimate, 2 3D: lifted pairs from a new viewpoint, 3 depth completion, 4 joint inpainting and outpainting, "
        "5 depth-to-image with the original image, 6 joint generation). Depth colours: near = yellow, far = purple.",
        "",
    ]
    return "\n".join(lines)


def _depth_setting(s: dict) -> str:
    d = s["depth_estimation_setting"]
    return f"{d['steps']} steps" + (f", {d['ensemble']} samples ensembled" if d["ensemble"] > 1 else "")


def _mean_caption_accuracy(entries: list[dict]) -> str:
    scores = [e["caption_accuracy"]["overall"] for e in entries if e.get("caption_accuracy")]
    return f"caption accuracy {np.mean(scores):.2f}" if scores else "captions outside the world's grammar, not scored"


def closing_lines(s: dict, out: str | Path) -> list[str]:
    """The demo's last words on the terminal: what ran, its headline figures, where the files are and what to open."""
    de, ip, op, dc = s["depth_estimation"], s["inpainting"], s["outpainting"], s["depth_completion"]
    pngs = sum(name.endswith(".png") for name in s["files"])
    meshes = sum(name.startswith("3d/") for name in s["files"])
    return [
        f"JointDiT demo on the RGB-D world, {s['timings']['total']:.1f} s (addons {s['variant']}, {s['steps']} steps, CFG {s['cfg']}):",
        f"  1. depth estimation   {len(de['scenes'])} held-out scenes: AbsRel {de['mean']['abs_rel']:.3f}, delta1 {de['mean']['delta1']:.3f} "
        f"(mean-depth baseline {de['baseline_mean']['abs_rel']:.3f}; {_depth_setting(s)})",
        f"  2. 3D                 {meshes // 2} pairs lifted to meshes ({out}/3d/, .glb + .ply)" if meshes else "  2. 3D                 skipped (install trimesh)",
        f"  3. depth completion   from 5% of the depth: AbsRel {dc['abs_rel']:.3f}",
        f"  4. inpainting         depth AbsRel in the redrawn region {ip['abs_rel_in_region']:.3f} (outpainting {op['abs_rel_in_region']:.3f})",
        f"  5. depth-to-image     {len(s['depth_to_image'])} held-out depth maps: {_mean_caption_accuracy(s['depth_to_image'])}",
        f"  6. joint generation   {len(s['joint_generation'])} captions: {_mean_caption_accuracy(s['joint_generation'])} (a tiny base: blurry scenes)",
        f"{pngs} PNGs and {meshes} 3D files in {out}/ (every file and figure: {out}/summary.md)",
        f"open {Path(out) / 'overview.png'}",
    ]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m rgbd_world.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_output", help="folder to write")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (python -m rgbd_world.recipe)")
    p.add_argument("--variant", default=None, help="addon variant in model.json (default: uts_asw)")
    p.add_argument("--steps", type=int_at_least(1), default=20, help="Euler steps of the generative tasks (official 20)")
    p.add_argument("--depth-steps", type=int_at_least(1), default=None, help="Euler steps of depth estimation (default: the model's, model.json depth_estimation)")
    p.add_argument("--ensemble", type=int_at_least(1), default=None, help="depth-estimation samples per image, ensembled (default: the model's)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--count", type=int_at_least(1), default=6, help="held-out scenes for depth estimation")
    p.add_argument("--caption", action="append", help="a caption for joint generation (repeat for several; default: four built-in ones). "
                   f"The words the model knows: {' '.join(VOCABULARY)}")
    p.add_argument("--addon", help="an addon file you trained on this base (python -m jointdit_trainer train; its .json sidecar beside it)")
    a = p.parse_args(argv)
    if a.addon and a.variant:
        p.error("give --variant or --addon, not both")
    try:
        s = run_demo(a.out, a.model, a.steps, a.seed, a.count, a.variant, captions=a.caption, addon=a.addon, depth_steps=a.depth_steps, ensemble=a.ensemble)
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    print("\n".join(closing_lines(s, a.out)))


if __name__ == "__main__":
    main()
