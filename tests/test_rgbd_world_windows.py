"""The wide demo-world renders of the window-sampling evaluation (rgbd_world.evaluation.windows)."""

import numpy as np

from rgbd_world.evaluation.windows import _seam_ratio, render_wide
from rgbd_world.world.scenes import scene, split_indices


def test_wide_render_has_the_native_view_in_its_middle():
    index = split_indices("test")[3]
    rgb, depth = render_wide(index, width=128)
    native = scene(index, size=64)
    assert rgb.shape == (64, 128, 3) and depth.shape == (64, 128)
    np.testing.assert_array_equal(depth[:, 32:96], native.depth)  # same focal length and centre: the same rays
    np.testing.assert_array_equal(rgb[:, 32:96], native.rgb)
    assert (depth > 0).all() and np.isfinite(depth).all()


def test_seam_ratio_is_one_for_a_periodic_image_and_large_for_a_ramp():
    columns = np.arange(16)
    periodic = np.minimum(columns, 16 - columns)[None, :].repeat(4, 0).astype(float)  # 0 1 .. 8 .. 1: every step 1, the seam too
    assert _seam_ratio(periodic) == 1.0
    assert _seam_ratio(np.tile(columns, (4, 1)).astype(float)) == 15.0
    cells = np.repeat(np.minimum(columns, 16 - columns), 8)[None, :].astype(float)  # 8 pixels per latent column
    assert _seam_ratio(cells, 8) == 1.0 and _seam_ratio(cells) > 8.0


def test_windows_are_the_demo_models_native_64_pixels_in_its_own_latent():
    from types import SimpleNamespace

    from rgbd_world.evaluation.windows import _windows

    for cell in (4, 8):  # the demo autoencoder's 4 pixels a latent column, FLUX.1's 8
        stack = SimpleNamespace(ae=SimpleNamespace(config=SimpleNamespace(downscale=cell)))
        settings = _windows(stack, 32, wrap=True)
        assert settings.size == (64 // cell, 64 // cell) and settings.overlap == 32 // cell and settings.wrap


def test_a_zoomed_render_is_the_native_view_at_a_higher_resolution():
    index = split_indices("test")[3]
    rgb, depth = render_wide(index, height=256, width=256, zoom=4)
    native = scene(index, size=64)
    assert rgb.shape == (256, 256, 3) and depth.shape == (256, 256)
    pooled = depth.reshape(64, 4, 64, 4).mean(axis=(1, 3))  # the same field of view: 4x4 pixels per native pixel
    assert np.median(np.abs(pooled - native.depth) / native.depth) < 0.02


def test_tiles_of_the_demo_world_go_through_the_core_tiles():
    """rgbd_world.stack's tiles: each tile is the plain estimate of its crop, merged by jointdit_core.tiles."""
    import torch

    from jointdit_core.tiles import merge_tiles, tile_slices
    from rgbd_world import stack as S

    stack = S.load_stack()
    rgb, _ = render_wide(split_indices("test")[0], width=96)
    grid, tiles = S.tile_estimates(stack, rgb[None], 32, steps=1, seed=3)
    assert len(grid.windows) == 2 and tiles.shape == (1, 2, 64, 64)
    crops = np.stack([rgb[rows, cols] for rows, cols in tile_slices(grid)])
    np.testing.assert_array_equal(tiles[0].numpy(), S.depth_estimation(stack, crops, 1, 3))
    reference = S.depth_estimation_resized(stack, rgb[None], 1, 3)
    assert reference.shape == (1, 64, 96) and reference.min() >= 0 and reference.max() <= 1
    merged = S.depth_estimation_tiles(stack, rgb[None], 32, steps=1, seed=3)
    np.testing.assert_array_equal(merged[0], merge_tiles(tiles[0], grid, torch.from_numpy(reference[0])).disparity.numpy())
    free = S.depth_estimation_tiles(stack, rgb[None], 32, steps=1, seed=3, anchor_weight=None)
    assert free.shape == (1, 64, 96) and not np.array_equal(free, merged)
    square = rgb[:, :64]
    np.testing.assert_array_equal(S.depth_estimation_resized(stack, square[None], 1, 3), S.depth_estimation(stack, square[None], 1, 3))
