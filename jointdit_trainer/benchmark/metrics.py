"""The depth metrics Marigold reports, per image over the valid pixels (prs-eth/Marigold
``src/util/metric.py``, commit b1dffaaa3f7a2fe406b3bb9dd3c358b30da66060; the same formulas in float64):

* ``abs_rel`` mean |d - d*| / d*; ``sq_rel`` mean (d - d*)^2 / d*;
* ``rmse`` sqrt(mean (d - d*)^2); ``rmse_log`` sqrt(mean (ln d - ln d*)^2); ``log10`` mean |log10 d - log10 d*|;
* ``delta1`` / ``delta2`` / ``delta3``: share of pixels with max(d / d*, d* / d) < 1.25, 1.25^2, 1.25^3;
* ``i_rmse`` sqrt(mean (1/d - 1/d*)^2) (1/m);
* ``silog`` 100 sqrt(mean e^2 - (mean e)^2) with e = ln d - ln d* (scale-invariant log error).

d: predicted depth, d*: ground truth, both metres and > 0 under the mask. A benchmark's figure is the
mean of the per-image values over its images.
"""

from __future__ import annotations

import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "i_rmse", "silog")
LOWER_IS_BETTER = {name: not name.startswith("delta") for name in METRICS}
DELTA_BASE = 1.25


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, names=METRICS) -> dict[str, float]:
    """The metrics ``names`` (default all of :data:`METRICS`) of one depth map.

    Args:
        pred_depth, gt_depth: (H, W) depth in metres; valid: (H, W) bool.
    Returns:
        {name: float}; errors >= 0 (0 = perfect), delta shares in [0, 1] (1 = perfect).
    Raises:
        ValueError: shapes that differ, an empty mask, non-positive depths under the mask, an unknown name.
    """
    pred_depth, gt_depth, valid = np.asarray(pred_depth), np.asarray(gt_depth), np.asarray(valid, bool)
    if pred_depth.shape != gt_depth.shape or valid.shape != gt_depth.shape:
        raise ValueError(f"shapes differ: prediction {pred_depth.shape}, ground truth {gt_depth.shape}, mask {valid.shape}")
    d, g = pred_depth[valid].astype(np.float64), gt_depth[valid].astype(np.float64)
    if d.size == 0:
        raise ValueError("no valid pixel to evaluate")
    if (d <= 0).any() or (g <= 0).any():
        raise ValueError("depths must be positive under the mask")
    unknown = set(names) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {METRICS}")
    log_error = np.log(d) - np.log(g)
    ratio = np.maximum(d / g, g / d)
    formulas = {
        "abs_rel": lambda: np.mean(np.abs(d - g) / g),
        "sq_rel": lambda: np.mean((d - g) ** 2 / g),
        "rmse": lambda: np.sqrt(np.mean((d - g) ** 2)),
        "rmse_log": lambda: np.sqrt(np.mean(log_error**2)),
        "log10": lambda: np.mean(np.abs(np.log10(d) - np.log10(g))),
        "delta1": lambda: np.mean(ratio < DELTA_BASE),
        "delta2": lambda: np.mean(ratio < DELTA_BASE**2),
        "delta3": lambda: np.mean(ratio < DELTA_BASE**3),
        "i_rmse": lambda: np.sqrt(np.mean((1 / d - 1 / g) ** 2)),
        "silog": lambda: 100 * np.sqrt(max(np.mean(log_error**2) - np.mean(log_error) ** 2, 0.0)),
    }
    return {name: float(formulas[name]()) for name in names}


def mean_metrics(per_image: list[dict[str, float]], names=None) -> dict[str, float]:
    """Mean of each metric (``names``, default the first image's keys) over images. Raises ValueError for an empty list."""
    if not per_image:
        raise ValueError("no image was evaluated")
    return {k: float(np.mean([m[k] for m in per_image])) for k in (names or per_image[0])}
