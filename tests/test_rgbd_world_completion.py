"""Depth-completion evaluation helpers: sparse sampling of valid pixels and nearest-neighbour fill."""

import numpy as np

from rgbd_world.evaluate_completion import nearest_fill, sparse_disparity
from rgbd_world.scenes import FAR


def test_sparse_disparity_keeps_a_share_of_valid_pixels_only():
    depth = np.linspace(1.0, 5.0, 100, dtype=np.float32).reshape(10, 10)
    depth[0] = FAR * 2  # sky: never kept
    disparity, kept = sparse_disparity(depth, 0.2, seed=0)
    assert kept.sum() == 18 and not kept[0].any()
    assert disparity[~kept].max() == 0 and disparity[kept].min() == 0 and disparity[kept].max() == 1
    inv = 1 / depth[kept]
    assert np.allclose(disparity[kept], (inv - inv.min()) / (inv.max() - inv.min()), atol=1e-6)  # near = 1


def test_nearest_fill_copies_the_nearest_kept_value():
    disparity = np.zeros((4, 6), np.float32)
    kept = np.zeros((4, 6), bool)
    kept[0, 0], kept[3, 5] = True, True
    disparity[0, 0], disparity[3, 5] = 0.25, 0.75
    filled = nearest_fill(disparity, kept)
    assert filled[1, 1] == 0.25 and filled[3, 4] == 0.75 and filled[0, 0] == 0.25 and filled[3, 5] == 0.75
