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
