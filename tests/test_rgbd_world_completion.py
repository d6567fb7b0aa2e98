"""Depth-completion evaluation helpers: sparse sampling of valid pixels and nearest-neighbour fill."""

import numpy as np
import pytest

from rgbd_world.evaluation.completion import nearest_fill, sparse_disparity
from rgbd_world.world.scenes import FAR


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


def test_object_hole_is_the_grown_box_on_the_latent_grid():
    from rgbd_world.evaluation.inpainting import object_hole

    labels = np.full((16, 16), -1, np.int8)
    labels[5:7, 9:10] = 0  # rows 5-6, column 9
    labels[12, 1] = 1
    hole = object_hole(labels, grow=1, grid=4)
    rows, cols = np.nonzero(hole)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 7, 8, 11)  # box 4..7 x 8..10 snapped out to 8..11
    assert hole.sum() == 16
    with pytest.raises(ValueError, match="not visible"):
        object_hole(labels, index=2)


def test_masked_inputs_hide_the_hole_and_scoring_stays_inside_it():
    from rgbd_world.evaluation.inpainting import masked_inputs, score_in_hole

    rgb = np.full((8, 8, 3), 200, np.uint8)
    disparity = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))
    hole = np.zeros((8, 8), bool)
    hole[2:4, 4:6] = True
    photo, fill = masked_inputs(rgb, disparity, hole)
    assert (photo[hole] == 128).all() and (photo[~hole] == 200).all()
    assert np.array_equal(fill[~hole], disparity[~hole]) and set(np.unique(fill[hole])) <= set(disparity[~hole].ravel())
    depth = 1.0 / (0.2 + disparity)  # exact disparity = perfect inside and outside
    assert score_in_hole(disparity[None], [depth], hole[None])["abs_rel"] < 1e-6
    wrong = disparity.copy()
    wrong[hole] = 0  # wrong only in the hole: the error shows inside it, more than over the whole image
    inside = score_in_hole(wrong[None], [depth], hole[None])["abs_rel"]
    from rgbd_world.evaluation.metrics import evaluate_disparity

    assert inside > evaluate_disparity(wrong, depth)["abs_rel"] > 0
