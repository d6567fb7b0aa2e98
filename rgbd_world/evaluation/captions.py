"""Caption following and depth agreement of the shipped small model on the RGB-D world's test split.

    python -m rgbd_world.evaluation.captions [--count 200] [--steps 20] [--seed 0] [--variant uts_asw] [--cfg 1.0] [--json FILE]
        [--roundtrip-only] [--skip-depth]

On the held-out test scenes ``split_indices("test")[:count]`` (never trained on, neither by the model nor by
the caption classifier), per-attribute caption accuracy (:func:`rgbd_world.evaluation.caption_classifier.caption_accuracy`)
of:

* ``ground_truth``: the scenes' renders (the classifier's own accuracy, its ceiling);
* ``ae_roundtrip``: those renders encoded and decoded by the model's autoencoder (what decoding costs);
* ``joint_generation``: images generated from the scenes' captions (both branches from noise);
* ``depth_to_image``: images generated from the scenes' depth maps + captions;

both with classifier-free guidance ``cfg`` against the empty prompt (default: the model's, model.json ``cfg``).
``--roundtrip-only`` stops after the first two rows (seconds, not minutes: to compare autoencoders).

Depth agreement (AbsRel, protocol of :mod:`rgbd_world.evaluation.metrics`; the model re-estimates depth from its own
images with noise seed ``seed + 1``): for joint generation, the re-estimated depth against the generated
depth (:func:`rgbd_world.evaluation.metrics.generated_depth_abs_rel`); for depth-to-image, the re-estimated depth against
the scene's ground truth, beside depth estimated from the ground-truth render (the same model, the reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .caption_classifier import ATTRIBUTES, caption_accuracy, load_classifier
from ..cli import int_at_least, write_json
from ..world.dataset import normalized_disparity
from .depth import score
from .metrics import generated_depth_abs_rel
from ..stack import DEFAULT_MODEL_DIR, autoencoder_roundtrip_rgb, depth_estimation, depth_to_image, held_out_scenes, joint_generation, load_stack

ROW_TITLES = {
    "ground_truth": "ground-truth renders (the classifier's own accuracy)",
    "ae_roundtrip": "ground truth through the autoencoder",
    "joint_generation": "joint generation from the captions",
    "depth_to_image": "depth-to-image from the depth maps + captions",
}


def evaluate_captions(model_dir=DEFAULT_MODEL_DIR, count: int = 200, steps: int = 20, seed: int = 0, variant: str | None = None, classifier_path=None,
                      cfg: float | None = None, roundtrip_only: bool = False, skip_depth: bool = False) -> dict:
    """Run the rows above (only ``ground_truth`` and ``ae_roundtrip`` with ``roundtrip_only``; no depth
    agreement with ``skip_depth``, about 40% less time: to compare CFG scales); returns
    {"caption_accuracy": {row: caption_accuracy dict}, "depth": {name: AbsRel} (empty with ``roundtrip_only`` or ``skip_depth``),
    "seconds": {...}, "settings": {...}}. Raises ValueError for a count outside the test split."""
    t_start = time.time()
    classifier = load_classifier(classifier_path) if classifier_path else load_classifier()
    stack = load_stack(model_dir, variant)
    cfg = stack.cfg if cfg is None else cfg
    scenes = held_out_scenes(count, size=stack.manifest["resolution"])
    rgb = np.stack([s.rgb for s in scenes])
    captions = [s.caption for s in scenes]
    depths = [s.depth for s in scenes]
    seconds, images = {}, {"ground_truth": rgb}

    images["ae_roundtrip"] = autoencoder_roundtrip_rgb(stack, rgb)
    settings = {"test_scenes": f"split_indices('test')[0:{count}]", "count": count, "steps": steps, "seed": seed, "variant": stack.variant,
                "guidance": stack.guidance, "cfg": cfg, "model": str(model_dir), "depth_re_estimation_seed": seed + 1}
    if not roundtrip_only:
        t0 = time.time()
        images["joint_generation"], generated_disparity = joint_generation(stack, captions, steps=steps, seed=seed, cfg=cfg)
        seconds["joint_generation"] = round(time.time() - t0, 1)
        t0 = time.time()
        images["depth_to_image"] = depth_to_image(stack, np.stack([normalized_disparity(d) for d in depths]), captions, steps=steps, seed=seed, cfg=cfg)
        seconds["depth_to_image"] = round(time.time() - t0, 1)
    accuracy = {}
    for name, batch in images.items():
        accuracy[name] = caption_accuracy(batch, captions, classifier)
        print(f"{name}: " + " ".join(f"{k} {accuracy[name][k]:.3f}" for k in (*ATTRIBUTES, "overall")), flush=True)
    if roundtrip_only or skip_depth:
        seconds["total"] = round(time.time() - t_start, 1)
        return {"caption_accuracy": accuracy, "depth": {}, "seconds": seconds, "settings": settings}

    t0 = time.time()
    joint_estimated = depth_estimation(stack, images["joint_generation"], steps=steps, seed=seed + 1)
    d2i_estimated = depth_estimation(stack, images["depth_to_image"], steps=steps, seed=seed + 1)
    gt_estimated = depth_estimation(stack, rgb, steps=steps, seed=seed + 1)
    seconds["depth_estimation"] = round(time.time() - t0, 1)
    depth = {
        "joint_generation_abs_rel": float(np.mean([generated_depth_abs_rel(e, g) for e, g in zip(joint_estimated, generated_disparity)])),
        "depth_to_image_abs_rel": score(d2i_estimated, depths)["abs_rel"],
        "ground_truth_render_abs_rel": score(gt_estimated, depths)["abs_rel"],
    }
    print(" ".join(f"{k} {v:.4f}" for k, v in depth.items()), flush=True)
    seconds["total"] = round(time.time() - t_start, 1)
    return {"caption_accuracy": accuracy, "depth": depth, "seconds": seconds, "settings": settings}


def table(result: dict) -> str:
    """Markdown tables: caption accuracy per attribute (higher is better) and the depth AbsRel figures."""
    head = (*ATTRIBUTES, "overall", "mentioned_objects")
    lines = ["| images | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for name, row in result["caption_accuracy"].items():
        cells = ["-" if row[k] is None else f"{row[k]:.3f}" for k in head]
        lines.append(f"| {ROW_TITLES.get(name, name)} | " + " | ".join(cells) + " |")
    if result["depth"]:
        lines += ["", "| depth agreement | AbsRel |", "| --- | --- |"]
        lines += [f"| {k.replace('_abs_rel', '').replace('_', ' ')} | {v:.4f} |" for k, v in result["depth"].items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rgbd_world.evaluation.captions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (python -m rgbd_world.recipe)")
    p.add_argument("--variant", default=None, help="addon variant in model.json (default: the manifest's, uts_asw)")
    p.add_argument("--classifier", default=None, help="caption classifier weights (default: the shipped one)")
    p.add_argument("--count", type=int_at_least(1), default=200, help="test scenes (the split has 1000)")
    p.add_argument("--steps", type=int_at_least(1), default=20, help="sampling steps (official 20)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance of the captioned tasks (default: the model's; 1 = off)")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.add_argument("--roundtrip-only", action="store_true", help="only the ground-truth and autoencoder round-trip rows (to compare autoencoders)")
    p.add_argument("--skip-depth", action="store_true", help="caption accuracy only, no depth agreement (to compare CFG scales)")
    a = p.parse_args(argv)
    try:
        result = evaluate_captions(a.model, a.count, a.steps, a.seed, a.variant, a.classifier, a.cfg, a.roundtrip_only, a.skip_depth)
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    print(f"\ncaption accuracy on {a.count} test scenes ({a.steps} steps, seed {a.seed}, cfg {result['settings']['cfg']}, {result['seconds']['total']}s):\n")
    print(table(result))
    if a.json:
        write_json(a.json, result)


if __name__ == "__main__":
    main()
