"""Benchmark metrics and alignment against Marigold's own functions.

The expected numbers were computed by prs-eth/Marigold's ``src/util/metric.py`` and
``src/util/alignment.py`` (and ``script/depth/eval.py``'s alignment and clipping steps) at commit
b1dffaaa3f7a2fe406b3bb9dd3c358b30da66060, on the arrays :func:`fixed_arrays` builds, NYUv2's range
(1e-3, 10). Marigold computes in float32, we in float64: agreement to about 1e-6 relative.
"""

import numpy as np
import pytest

from jointdit_trainer.benchmark.alignment import align_prediction, least_squares_scale_shift
from jointdit_trainer.benchmark.metrics import METRICS, depth_metrics, mean_metrics

MARIGOLD_NAMES = dict(zip(METRICS, ("abs_relative_difference", "squared_relative_difference", "rmse_linear", "rmse_log", "log10",
                                    "delta1_acc", "delta2_acc", "delta3_acc", "i_rmse", "silog_rmse")))
RANGE = (1e-3, 10.0)

# Marigold's outputs (keys: Marigold's metric names).
RAW = {'abs_relative_difference': 0.21810778975486755, 'squared_relative_difference': 0.2997789680957794, 'rmse_linear': 1.4370546340942383, 'rmse_log': 0.26302826404571533, 'log10': 0.10504321753978729, 'delta1_acc': 0.3333333432674408, 'delta2_acc': 0.9851484894752502, 'delta3_acc': 0.9933993220329285, 'i_rmse': 0.1416115164756775, 'silog_rmse': 16.28624725341797}
DEPTH_SCALE_SHIFT = (1.4272356033325195, -0.4145199656486511)
DEPTH = {'abs_relative_difference': 0.07236488908529282, 'squared_relative_difference': 0.026139410212635994, 'rmse_linear': 0.28754082322120667, 'rmse_log': 0.3042377829551697, 'log10': 0.03491952642798424, 'delta1_acc': 0.9504950642585754, 'delta2_acc': 0.9867987036705017, 'delta3_acc': 0.9966996908187866, 'i_rmse': 40.58175277709961, 'silog_rmse': 30.416730880737305}
DISPARITY_SCALE_SHIFT = (2.484989643096924, -0.12322103977203369)
DISPARITY = {'abs_relative_difference': 0.09682069718837738, 'squared_relative_difference': 0.10625703632831573, 'rmse_linear': 0.8657658100128174, 'rmse_log': 0.12670421600341797, 'log10': 0.04206910729408264, 'delta1_acc': 0.9174917340278625, 'delta2_acc': 1.0, 'delta3_acc': 1.0, 'i_rmse': 0.023547528311610222, 'silog_rmse': 12.66499137878418}
MAX_RES_SCALE_SHIFT = (1.4273806810379028, -0.5080318450927734)  # alignment_max_res=50 on a 96 x 128 map


def fixed_arrays():
    rng = np.random.default_rng(28)
    gt = rng.uniform(0.5, 9.5, (24, 32)).astype(np.float32)
    gt[rng.uniform(size=gt.shape) < 0.1] = 0.0  # missing ground truth
    valid = (gt > 1e-3) & (gt < 10.0)
    valid[:3] = False  # a crop
    disparity = (0.4 / np.maximum(gt, 0.5) + 0.05 + rng.normal(0, 0.01, gt.shape)).astype(np.float32)
    depth_like = (0.7 * gt + 0.3 + rng.normal(0, 0.2, gt.shape)).astype(np.float32)
    return gt, valid, disparity, depth_like


def assert_marigold(ours: dict, theirs: dict):
    for name, marigold_name in MARIGOLD_NAMES.items():
        assert ours[name] == pytest.approx(theirs[marigold_name], rel=2e-5, abs=1e-7), name


def test_metrics_match_marigold_without_alignment():
    gt, valid, _, depth_like = fixed_arrays()
    pred = align_prediction(np.abs(depth_like) + 0.1, gt, valid, "none", *RANGE)
    assert_marigold(depth_metrics(pred, gt, valid), RAW)


def test_depth_alignment_matches_marigold_least_square():
    gt, valid, _, depth_like = fixed_arrays()
    scale, shift = least_squares_scale_shift(depth_like, gt, valid)
    assert (scale, shift) == pytest.approx(DEPTH_SCALE_SHIFT, rel=1e-5)
    # some aligned depths fall below the range: the clip to 1e-3 is what makes i_rmse 40
    assert_marigold(depth_metrics(align_prediction(depth_like, gt, valid, "depth", *RANGE), gt, valid), DEPTH)


def test_disparity_alignment_matches_marigold_least_square_disparity():
    gt, valid, disparity, _ = fixed_arrays()
    fit_mask = valid & (disparity > 0)
    assert least_squares_scale_shift(disparity, 1 / np.where(valid, gt, 1), fit_mask) == pytest.approx(DISPARITY_SCALE_SHIFT, rel=1e-5)
    assert_marigold(depth_metrics(align_prediction(disparity, gt, valid, "disparity", *RANGE), gt, valid), DISPARITY)


def test_alignment_max_resolution_subsamples_as_marigold():
    gt, valid, _, depth_like = fixed_arrays()
    big = [np.kron(a, np.ones((4, 4), a.dtype)) for a in (gt, depth_like, valid)]
    pred = big[1] + np.arange(big[1].shape[1], dtype=np.float32) * 1e-3
    aligned = align_prediction(pred, big[0], big[2], "depth", 0.0, np.inf, max_resolution=50)
    expected = np.maximum(MAX_RES_SCALE_SHIFT[0] * pred.astype(np.float64) + MAX_RES_SCALE_SHIFT[1], 1e-6)  # the clip to d > 0
    np.testing.assert_allclose(aligned, expected, rtol=1e-5, atol=1e-6)
    full = align_prediction(pred, big[0], big[2], "depth", 0.0, np.inf)
    assert np.abs(full - aligned).max() > 1e-3  # the subsampled fit is a different fit


def test_disparity_alignment_recovers_any_affine_disparity_exactly():
    gt, valid, _, _ = fixed_arrays()
    pred = 3.0 / np.where(gt > 0, gt, 1) - 0.05
    scores = depth_metrics(align_prediction(pred, gt, valid, "disparity", *RANGE), gt, valid)
    assert scores["abs_rel"] < 1e-6 and scores["delta1"] == 1.0 and scores["silog"] < 1e-5


def test_errors_for_wrong_shapes_and_empty_masks():
    gt, valid, disparity, _ = fixed_arrays()
    with pytest.raises(ValueError, match="resize the prediction"):
        align_prediction(disparity[:, :-1], gt, valid, "disparity", *RANGE)
    with pytest.raises(ValueError, match="unknown alignment"):
        align_prediction(disparity, gt, valid, "median", *RANGE)
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_metrics(gt, gt, np.zeros_like(valid))
    with pytest.raises(ValueError, match="shapes differ"):
        depth_metrics(gt[:-1], gt, valid)
    with pytest.raises(ValueError, match="no image"):
        mean_metrics([])
