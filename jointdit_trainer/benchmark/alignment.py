"""Least-squares scale and shift of an affine-invariant prediction, and the clip to the dataset's range.

Marigold's protocol (prs-eth/Marigold ``script/depth/eval.py`` and ``src/util/alignment.py``, commit
b1dffaaa3f7a2fe406b3bb9dd3c358b30da66060), per image, at the ground truth's resolution:

* ``"depth"`` (Marigold's ``least_square``, its default): ``scale * pred + shift`` fitted to the depth
  over the valid pixels; for a model that predicts affine-invariant *depth*.
* ``"disparity"`` (``least_square_disparity``): fitted to the ground-truth disparity ``1 / depth`` over
  the valid pixels where depth and prediction are positive; the aligned disparity is clipped to at least
  1e-3 and inverted. For a model that predicts affine-invariant *disparity*: JointDiT (near = 1).
  Marigold leaves pixels predicted at disparity <= 0 out of the fit (they are still scored); in JointDiT's
  min-max normalised disparity 0 is the farthest point, not a missing one, and the demo world's protocol
  (``rgbd_world.evaluation.metrics``) fits it: ``fit_zero_disparity=True``.
* ``"none"``: the prediction is metric depth already.

Then the depth is clipped to ``[min_depth, max_depth]`` and to at least 1e-6.
"""

from __future__ import annotations

import numpy as np
import torch

ALIGNMENTS = ("disparity", "depth", "none")
MIN_DISPARITY = 1e-3
MIN_EVAL_DEPTH = 1e-6


def least_squares_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(scale, shift)`` minimising ``sum_mask (scale * pred + shift - target)^2`` (closed form, float64).

    Args:
        pred, target: float arrays of one shape; mask: bool array of that shape.
    Returns:
        (scale, shift). A constant prediction gets scale 0 and shift = the mean target (the fitted values
        equal the minimum-norm solution's).
    Raises:
        ValueError: shapes that differ or fewer than 2 pixels under the mask.
    """
    pred, target, mask = np.asarray(pred, np.float64), np.asarray(target, np.float64), np.asarray(mask, bool)
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, target {target.shape}, mask {mask.shape}")
    if mask.sum() < 2:
        raise ValueError("alignment needs at least 2 valid pixels")
    p, t = pred[mask], target[mask]
    p_mean, t_mean = p.mean(), t.mean()
    var = ((p - p_mean) ** 2).sum()
    if var <= 0:
        return 0.0, float(t_mean)
    scale = float(((p - p_mean) * (t - t_mean)).sum() / var)
    return scale, float(t_mean - scale * p_mean)


def _fit_columns(arrays: list[np.ndarray], max_resolution: int | None) -> list[np.ndarray]:
    """Marigold's ``max_resolution`` subsampling: ``torch.nn.Upsample(scale_factor, "nearest")`` on an
    (1, H, W) array, which PyTorch reads as (batch, channels, length), so only the columns are thinned."""
    if max_resolution is None:
        return arrays
    factor = float(np.min(max_resolution / np.array(arrays[0].shape[-2:])))
    if factor >= 1:
        return arrays
    resample = torch.nn.Upsample(scale_factor=factor, mode="nearest")
    return [resample(torch.as_tensor(a.astype(np.float32))[None]).numpy()[0] for a in arrays]


def align_prediction(pred: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, alignment: str, min_depth: float,
                     max_depth: float, max_resolution: int | None = None, fit_zero_disparity: bool = False) -> np.ndarray:
    """The aligned, clipped depth of one prediction (module docstring).

    Args:
        pred: (H, W) float prediction at the ground truth's resolution (disparity, depth or metric depth,
            as ``alignment`` says); gt_depth: (H, W) metres, 0 = missing; valid: (H, W) bool.
        alignment: "disparity", "depth" or "none"; min_depth, max_depth: the dataset's range (metres);
        max_resolution: fit the scale and shift on a subsampled copy (ETH3D: 1024).
        fit_zero_disparity: also fit the pixels predicted at disparity <= 0 (module docstring).
    Returns:
        (H, W) float64 depth in ``[max(min_depth, 1e-6), max_depth]``.
    Raises:
        ValueError: a prediction whose shape is not the ground truth's, an unknown alignment, or fewer than
        2 pixels to fit.
    """
    pred, gt_depth = np.asarray(pred, np.float64), np.asarray(gt_depth, np.float64)
    if pred.shape != gt_depth.shape:
        raise ValueError(f"the prediction is {pred.shape[-1]} x {pred.shape[0]} but the ground truth {gt_depth.shape[1]} x {gt_depth.shape[0]}; "
                         "resize the prediction to the ground truth's size before scoring")
    if alignment == "none":
        depth = pred
    elif alignment == "depth":
        fit = _fit_columns([gt_depth, pred, valid.astype(np.float32)], max_resolution)
        scale, shift = least_squares_scale_shift(fit[1], fit[0], fit[2].astype(bool))
        depth = scale * pred + shift
    elif alignment == "disparity":
        gt_disparity = np.where(gt_depth > 0, 1.0 / np.where(gt_depth > 0, gt_depth, 1.0), 0.0)
        fit_mask = valid & (gt_depth > 0) & ((pred > 0) | fit_zero_disparity)
        fit = _fit_columns([gt_disparity, pred, fit_mask.astype(np.float32)], max_resolution)
        scale, shift = least_squares_scale_shift(fit[1], fit[0], fit[2].astype(bool))
        depth = 1.0 / np.maximum(scale * pred + shift, MIN_DISPARITY)
    else:
        raise ValueError(f"unknown alignment {alignment!r}; choose one of {ALIGNMENTS}")
    return np.maximum(np.clip(depth, min_depth, max_depth), MIN_EVAL_DEPTH)
