"""Depth metrics of the RGB-D world evaluation: alignment, AbsRel, delta1, the sky mask."""

import numpy as np
import pytest

from rgbd_world.evaluation import metrics as M
from rgbd_world.world.scenes import FAR, scene, split_indices


def test_alignment_recovers_scale_and_shift_exactly():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 1, (16, 16))
    target = 0.37 * pred + 0.05
    mask = rng.uniform(size=(16, 16)) < 0.5
    target_noisy = np.where(mask, target, 99.0)  # pixels outside the mask must not count
    scale, shift = M.align_scale_shift(pred, target_noisy, mask)
    assert scale == pytest.approx(0.37, abs=1e-12) and shift == pytest.approx(0.05, abs=1e-12)


def test_alignment_is_least_squares():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=50).reshape(5, 10), rng.normal(size=50).reshape(5, 10)
    mask = np.ones_like(pred, bool)
    scale, shift = M.align_scale_shift(pred, target, mask)
    expected = np.linalg.lstsq(np.stack([pred.ravel(), np.ones(50)], 1), target.ravel(), rcond=None)[0]
    np.testing.assert_allclose([scale, shift], expected, atol=1e-12)
    assert M.align_scale_shift(np.ones((4, 4)), target[:4, :4], mask[:4, :4]) == (0.0, pytest.approx(target[:4, :4].mean()))
    with pytest.raises(ValueError, match="at least 2"):
        M.align_scale_shift(pred, target, np.zeros_like(mask))


def test_abs_rel_and_delta1_on_known_inputs():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    mask = np.ones_like(gt, bool)
    assert M.depth_errors(gt, gt, mask) == {"abs_rel": 0.0, "delta1": 1.0}
    assert M.depth_errors(1.1 * gt, gt, mask) == pytest.approx({"abs_rel": 0.1, "delta1": 1.0})
    assert M.depth_errors(1.3 * gt, gt, mask) == pytest.approx({"abs_rel": 0.3, "delta1": 0.0})
    pred = gt.copy()
    pred[0, 0] = 2.0  # one pixel twice too far: |2-1|/1 = 1 -> mean 0.25; ratio 2 fails delta1
    assert M.depth_errors(pred, gt, mask) == pytest.approx({"abs_rel": 0.25, "delta1": 0.75})


def test_any_affine_disparity_of_the_truth_scores_perfectly_and_sky_is_excluded():
    s = scene(split_indices("test")[3], size=32)
    mask = M.valid_mask(s.depth)
    assert mask.sum() < mask.size  # this scene shows sky ...
    assert not mask[s.labels == -2].any() and mask[s.labels != -2].all()  # ... and only the sky is excluded
    disparity = 1.0 / s.depth
    pred = 3.0 * disparity - 0.2  # any scale and shift of the true disparity
    pred[~mask] = 123.0  # whatever is predicted for the sky does not count
    m = M.evaluate_disparity(pred, s.depth)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6) and m["delta1"] == 1.0
    flat = M.evaluate_disparity(np.zeros_like(disparity), s.depth)  # constant prediction: the mean disparity
    assert flat["abs_rel"] > 0.05


def test_aligned_depth_is_clipped_to_the_world_range():
    gt = np.full((4, 4), 5.0)
    gt[0] = 2.0
    pred = np.zeros((4, 4))
    pred[0] = 1.0
    pred[3, 3] = -10.0  # aligned disparity far below 1/FAR -> depth clipped to FAR, not negative or infinite
    d = M.aligned_depth(pred, gt)
    assert np.isfinite(d).all() and d.max() <= FAR and d.min() > 0


def test_mean_metrics():
    assert M.mean_metrics([{"abs_rel": 0.1, "delta1": 1.0}, {"abs_rel": 0.3, "delta1": 0.5}]) == pytest.approx({"abs_rel": 0.2, "delta1": 0.75})
    with pytest.raises(ValueError):
        M.mean_metrics([])


def test_depth_edges_mark_the_silhouette_and_the_breakdown_splits_the_error_there():
    from rgbd_world.evaluation.metrics import depth_edges, error_breakdown

    gt = np.full((8, 8), 4.0)
    gt[:, 4:] = 8.0  # a step between columns 3 and 4
    edges = depth_edges(gt)
    assert edges[:, 2:6].all() and not edges[:, :2].any() and not edges[:, 6:].any()
    assert not depth_edges(gt, width=0)[:, [2, 5]].any() and depth_edges(gt, width=0)[:, 3:5].all()
    assert not depth_edges(np.full((8, 8), 4.0) + np.linspace(0, 0.1, 8)[None]).any()  # a gentle slope is no edge

    # a prediction wrong only in the far interior (columns 6-7): no error near the edge
    pred = 1.0 / gt
    pred[:, 6:] *= 1.2
    pred = np.stack([pred, pred])
    b = error_breakdown(pred, np.stack([gt, gt]))
    assert b["edge_pixels"] == 0.5 and b["abs_rel_interior"] > 0.01
    # the affine alignment spreads a little error everywhere, but most of it stays where it was made
    assert b["edge_error"] < 0.5 and b["abs_rel_edge"] < b["abs_rel_interior"]
