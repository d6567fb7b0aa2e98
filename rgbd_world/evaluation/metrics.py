"""Relative-depth metrics for the RGB-D world: AbsRel and delta1 after least-squares alignment.

Protocol (affine-invariant disparity, as Depth-Anything / MiDaS evaluate relative disparity; the
metrics are those of Marigold and the JointDiT paper, docs/method.md §9):

1. valid pixels: ground-truth z-depth below the world's backdrop distance ``FAR`` (the sky is
   excluded: it has no finite depth in a real scene);
2. the predicted disparity (any affine-invariant map, here normalised to [0, 1], near = 1) is
   aligned to the ground-truth disparity ``1 / z`` by the scale and shift that minimise the squared
   error over the valid pixels, per image (closed-form least squares,
   :func:`jointdit_trainer.benchmark.alignment.least_squares_scale_shift`);
3. predicted depth = ``1 / aligned disparity``, with the aligned disparity clamped to at least
   ``1 / FAR`` (predicted depth clipped to the world's depth range (0, FAR], as Marigold clips to the
   dataset's range);
4. per image, over the valid pixels: ``AbsRel = mean |d - d*| / d*`` and
   ``delta1 = mean(max(d / d*, d* / d) < 1.25)``; reported values are means over the images.
"""

from __future__ import annotations

import numpy as np

from jointdit_trainer.benchmark.alignment import align_prediction
from jointdit_trainer.benchmark.alignment import least_squares_scale_shift as align_scale_shift  # noqa: F401 (evaluation.ensemble)
from jointdit_trainer.benchmark.metrics import depth_metrics, mean_metrics  # noqa: F401 (rgbd_world's evaluations import it from here)

from ..world.scenes import FAR, NEAR_DEPTH


def valid_mask(depth: np.ndarray, far: float = FAR) -> np.ndarray:
    """Boolean mask of pixels with a finite ground-truth depth: ``0 < depth < far`` (sky excluded)."""
    depth = np.asarray(depth)
    return np.isfinite(depth) & (depth > 0) & (depth < far)


def aligned_depth(pred_disparity: np.ndarray, gt_depth: np.ndarray, far: float = FAR) -> np.ndarray:
    """Steps 1-3 of the protocol: (H, W) predicted disparity -> (H, W) predicted depth in (0, far].

    The benchmark's disparity alignment (:func:`jointdit_trainer.benchmark.alignment.align_prediction`) with
    every valid pixel in the fit, also those predicted at disparity 0 (the farthest point of a normalised map)."""
    return align_prediction(pred_disparity, gt_depth, valid_mask(gt_depth, far), "disparity", 0.0, far, fit_zero_disparity=True)


def depth_errors(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """AbsRel and delta1 of a depth map against the ground truth over ``mask`` (step 4; the benchmark's
    formulas, :func:`jointdit_trainer.benchmark.metrics.depth_metrics`).

    Returns:
        {"abs_rel": float >= 0 (0 = perfect), "delta1": float in [0, 1] (1 = perfect)}.
    Raises:
        ValueError: empty mask or non-positive depths under the mask.
    """
    return depth_metrics(pred_depth, gt_depth, mask, names=("abs_rel", "delta1"))


def evaluate_disparity(pred_disparity: np.ndarray, gt_depth: np.ndarray, far: float = FAR, region: np.ndarray | None = None) -> dict[str, float]:
    """The whole protocol for one image: align ``pred_disparity`` (H, W) to ``gt_depth`` (H, W), score it.

    ``region``: optional (H, W) bool; the alignment still uses every valid pixel, the errors only the
    valid pixels inside ``region`` (e.g. an inpainted hole). Raises ValueError when no valid pixel is in it.
    """
    scored = valid_mask(gt_depth, far) if region is None else valid_mask(gt_depth, far) & np.asarray(region, bool)
    return depth_errors(aligned_depth(pred_disparity, gt_depth, far), gt_depth, scored)


def generated_depth_abs_rel(estimated: np.ndarray, generated: np.ndarray, near: float = NEAR_DEPTH, far: float = FAR) -> float:
    """AbsRel of a re-estimated disparity against a generated one (both (H, W), normalised to [0, 1], near = 1).

    A generated map has no metric scale; it is read as a world scene's normalised disparity whose nearest
    pixel is at ``near`` (default the median nearest depth of the world's scenes) and whose farthest is at the
    backdrop ``far``: ``1/z = 1/far + d * (1/near - 1/far)``; pixels at d <= 0 count as sky (excluded). Then
    :func:`evaluate_disparity` scores ``estimated`` against that depth. Raises ValueError (from the protocol)
    when fewer than 2 pixels are left, e.g. a generated map that is all sky.
    """
    reference = np.asarray(generated, np.float64)
    disparity = 1.0 / far + np.clip(reference, 0, 1) * (1.0 / near - 1.0 / far)
    depth = np.where(reference <= 0, far, 1.0 / disparity)
    return evaluate_disparity(estimated, depth, far)["abs_rel"]


def depth_edges(gt_depth: np.ndarray, jump: float = 0.05, width: int = 1) -> np.ndarray:
    """(H, W) bool: pixels within ``width`` pixels of a depth discontinuity, where the ground-truth depth of a
    pixel and one of its 8 neighbours differ by more than ``jump`` (relative to the pixel's depth): the
    silhouettes of objects and the horizon."""
    depth = np.asarray(gt_depth, np.float64)
    h, w = depth.shape

    def neighbours(a: np.ndarray, fill: str):
        padded = np.pad(a, 1, mode=fill)
        return [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]

    edge = np.max([np.abs(n - depth) for n in neighbours(depth, "edge")], axis=0) > jump * depth
    for _ in range(width):
        edge = np.any(neighbours(edge, "constant"), axis=0)
    return edge


def error_breakdown(pred_disparity: np.ndarray, gt_depth: np.ndarray, far: float = FAR) -> dict[str, float]:
    """Where the absolute relative error sits, pooled over images (after the protocol's alignment).

    Args:
        pred_disparity, gt_depth: (N, H, W) arrays (or lists of (H, W)).
    Returns:
        {"edge_pixels": share of valid pixels near depth edges (:func:`depth_edges`), "edge_error": share of
        the summed error there, "abs_rel_edge" / "abs_rel_interior": mean error per pixel on either side}.
    """
    err, edge = [], []
    for pred, gt in zip(pred_disparity, gt_depth):
        mask = valid_mask(gt, far)
        err.append((np.abs(aligned_depth(pred, gt, far) - gt) / np.where(mask, gt, 1.0))[mask])
        edge.append(depth_edges(gt)[mask])
    err, edge = np.concatenate(err), np.concatenate(edge)
    return {"edge_pixels": float(edge.mean()), "edge_error": float(err[edge].sum() / err.sum()),
            "abs_rel_edge": float(err[edge].mean()), "abs_rel_interior": float(err[~edge].mean())}
