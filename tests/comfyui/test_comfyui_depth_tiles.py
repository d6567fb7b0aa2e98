"""JointDiT Depth Estimation's large_photos = "tiles" inside ComfyUI (golden_tiny model, the linear test VAE).

A photo no larger than the processing resolution gives exactly the resize result; a larger one is estimated as
the resize estimate plus tiles of the processing size, the progress bar counting every tile's steps, cancel
stopping between tiles.
"""

from __future__ import annotations

import pytest
import torch
from comfyui_harness import recorded_progress
from test_comfyui_depth_tools import LinearVAE, _photo, nodes, pack  # noqa: F401  (fixtures)
from test_comfyui_golden import addon_checkpoint, conditioning, tiny  # noqa: F401  (fixtures)

from jointdit_core.tiles import plan_tiles


def _run(nodes, tiny, golden, photo, resolution=64, members=1, steps=2, **options):  # noqa: F811
    estimation, _ = nodes
    tensors, meta = golden
    return estimation.JointDiTDepthEstimation.execute(
        tiny[1], LinearVAE(), photo, resolution, members, 3, steps, "median", "gray", positive=conditioning(tensors, meta), **options
    ).result


def test_a_photo_no_larger_than_the_processing_size_gives_the_resize_result(pack, nodes, golden, tiny):  # noqa: F811
    photo = _photo(64, 48)
    resized = _run(nodes, tiny, golden, photo, members=2)
    tiled = _run(nodes, tiny, golden, photo, members=2, large_photos="tiles", tile_overlap=16)
    assert all(torch.equal(a, b) for a, b in zip(resized, tiled))


def test_tiles_of_a_photo_2_5_times_the_processing_size(pack, nodes, golden, tiny):  # noqa: F811
    photo = _photo(160, 112)
    tiles = len(plan_tiles(112, 160, 64, 16).windows)
    assert tiles == 6
    with recorded_progress() as seen:
        depth, mask, colours, uncertainty, view = _run(nodes, tiny, golden, photo, members=2, large_photos="tiles", tile_overlap=16)
    total = (tiles + 1) * 2 * 2  # (tiles + the whole photo) x steps x members
    assert [v for v, _ in seen] == list(range(1, total + 1)) and {t for _, t in seen} == {total}
    assert depth.shape == (1, 112, 160, 3) and mask.shape == uncertainty.shape == (1, 112, 160)
    assert mask.min() == 0 and mask.max() == 1
    assert uncertainty.min() >= 0 and uncertainty.max() > 0  # the tiles' two members disagree somewhere
    resized = _run(nodes, tiny, golden, photo, members=2)[1]
    assert (mask - resized).abs().mean() > 1e-3  # the tiles add their own detail to the resize estimate


def test_cancel_stops_before_the_first_tile(pack, nodes, golden, tiny):  # noqa: F811
    import comfy.model_management as mm
    import comfy.utils

    whole = 2  # steps of the whole-photo pass (one member)
    update = comfy.utils.ProgressBar.update_absolute
    seen = []

    def cancel_after_the_whole_photo(bar, value, total=None, preview=None):
        seen.append(value)
        mm.interrupt_current_processing(value == whole)
        return update(bar, value, total, preview)

    comfy.utils.ProgressBar.update_absolute = cancel_after_the_whole_photo
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _run(nodes, tiny, golden, _photo(160, 112), large_photos="tiles", tile_overlap=16)
    finally:
        comfy.utils.ProgressBar.update_absolute = update
        mm.interrupt_current_processing(False)
    assert seen == [1, 2]  # no tile step ran


def test_bad_tile_settings_are_refused(pack, nodes, golden, tiny):  # noqa: F811
    with pytest.raises(ValueError, match="tile_overlap 64 px must be .* smaller than processing_resolution"):
        _run(nodes, tiny, golden, _photo(160, 112), large_photos="tiles", tile_overlap=64)
    with pytest.raises(ValueError, match="unknown large_photos"):
        _run(nodes, tiny, golden, _photo(160, 112), large_photos="crop")
