"""Joint RGB-D inpainting on the RGB-D world: the depth JointDiT draws inside a repainted hole, scored.

    python -m rgbd_world.evaluation.inpainting [--count 200] [--steps 20] [--json FILE]

For every held-out test scene (``split_indices("test")[:count]``, never trained on) the hole is the
bounding box of the caption's first object, grown by 2 pixels and snapped outwards to the autoencoder's
4-pixel latent grid (so the latent mask is exactly 0 or 1 and nothing of the hidden content reaches the
model). Inside the hole the photo is painted grey and the disparity filled from its nearest known pixel.
Rows, AbsRel / delta1 over the valid pixels inside the hole (protocol of :mod:`rgbd_world.evaluation.metrics`; the
scale and shift are fitted over the whole image):

* ``joint_inpainting``: image and depth both regenerated inside the hole from the scene's caption
  (task joint_generation with the same mask on both branches): the depth of a new object drawn there;
* ``depth_inpainting``: the photo kept whole, only the depth regenerated inside the hole (the object is
  visible: what depth completion of a hole does);
* ``estimation``: plain depth estimation from the whole photo (no depth given at all);
* ``nearest``: the hole filled from its nearest known depth pixel (no model).

``joint_inpainting`` is scored against the scene's true depth although the model may draw a different
object there (only the caption says what belongs in the hole), so it is expected above the rows that see
the photo inside the hole.
"""

from __future__ import annotations


import numpy as np

from ..cli import evaluation_parser, print_rows, write_json
from ..world.dataset import normalized_disparity
from .completion import nearest_fill
from .metrics import evaluate_disparity, mean_metrics, valid_mask
from ..stack import DEFAULT_MODEL_DIR, depth_estimation, held_out_scenes, inpaint_rgbd, load_stack

GROW, GRID = 2, 4  # pixels the object's box grows by; the latent grid (autoencoder downscale)


def object_hole(labels: np.ndarray, index: int = 0, grow: int = GROW, grid: int = GRID) -> np.ndarray:
    """(H, W) bool hole: the bounding box of object ``index`` in ``labels`` (Scene.labels), grown by ``grow``
    pixels and snapped outwards to multiples of ``grid``. Raises ValueError when the object is not visible."""
    rows, cols = np.nonzero(labels == index)
    if rows.size == 0:
        raise ValueError(f"object {index} is not visible in this scene")
    h, w = labels.shape
    top, left = max(0, rows.min() - grow) // grid * grid, max(0, cols.min() - grow) // grid * grid
    bottom, right = -(-min(h, rows.max() + 1 + grow) // grid) * grid, -(-min(w, cols.max() + 1 + grow) // grid) * grid
    hole = np.zeros((h, w), bool)
    hole[top:bottom, left:right] = True
    return hole


def masked_inputs(rgb: np.ndarray, disparity: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inputs with the hole's content removed: uint8 (H, W, 3) photo grey inside the hole, (H, W)
    disparity filled from the nearest pixel outside it."""
    photo = rgb.copy()
    photo[hole] = 128
    return photo, nearest_fill(disparity, ~hole)


def score_in_hole(disparities: np.ndarray, depths: list[np.ndarray], holes: np.ndarray) -> dict:
    """Mean AbsRel / delta1 over the valid pixels inside each hole (scenes with none are skipped)."""
    rows = [evaluate_disparity(d, g, region=h) for d, g, h in zip(disparities, depths, holes) if (valid_mask(g) & h).any()]
    return mean_metrics(rows)


def evaluate_inpainting(model_dir=DEFAULT_MODEL_DIR, count: int = 200, steps: int = 20, seed: int = 0) -> dict:
    """Run the rows above; returns {"rows": {name: {"abs_rel", "delta1"}}, "settings": {...}}."""
    stack = load_stack(model_dir)
    scenes = held_out_scenes(count, size=stack.manifest["resolution"])
    depths = [s.depth for s in scenes]
    holes = np.stack([object_hole(s.labels) for s in scenes])
    photos, fills = zip(*(masked_inputs(s.rgb, normalized_disparity(s.depth), h) for s, h in zip(scenes, holes)))
    photos, fills = np.stack(photos), np.stack(fills)
    rows = {}
    _, joint = inpaint_rgbd(stack, photos, fills, holes, [s.caption for s in scenes], steps=steps, seed=seed)
    rows["joint_inpainting"] = score_in_hole(joint, depths, holes)
    rgb = np.stack([s.rgb for s in scenes])
    _, depth_only = inpaint_rgbd(stack, rgb, fills, holes, [" "] * len(scenes), steps=steps, seed=seed, depth_only=True)
    rows["depth_inpainting"] = score_in_hole(depth_only, depths, holes)
    rows["estimation"] = score_in_hole(depth_estimation(stack, rgb, steps=steps, seed=seed), depths, holes)
    rows["nearest"] = score_in_hole(fills, depths, holes)
    settings = dict(count=count, steps=steps, seed=seed, variant=stack.variant, test_scenes=f"split_indices('test')[0:{count}]",
                    hole_share=float(holes.mean()), hole=f"first object's box + {GROW} px, snapped to the {GRID}-px latent grid")
    return {"rows": rows, "settings": settings}


def main(argv=None) -> None:
    args = evaluation_parser(__doc__.splitlines()[0], str(DEFAULT_MODEL_DIR)).parse_args(argv)
    result = evaluate_inpainting(args.model, args.count, args.steps)
    print(f"hole: {result['settings']['hole']}; {100 * result['settings']['hole_share']:.1f}% of the pixels on average")
    print_rows(result, "AbsRel in the hole")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
