"""Tiles for photos larger than the processing resolution: planning, blending weights, the joint scale/shift solve."""

from __future__ import annotations

import pytest
import torch

from jointdit_core.tiles import align_tiles, blend_tiles, merge_tiles, plan_tiles, tile_slices


def _ground_truth(height, width, seed=0):
    """A smooth random disparity map with structure at several scales, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, 5, 7, generator=g, dtype=torch.float64)
    fine = torch.rand(1, 1, 23, 31, generator=g, dtype=torch.float64)
    up = lambda x: torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)[0, 0]  # noqa: E731
    x = up(coarse) + 0.3 * up(fine)
    return (x - x.min()) / (x.max() - x.min())


def _normalise(x):
    return (x - x.min()) / (x.max() - x.min())


def _affine_tiles(truth, grid, seed=1):
    """Every tile an exact affine copy of the truth with its own random scale and shift, then min-max normalised
    (what an affine-invariant estimator returns)."""
    g = torch.Generator().manual_seed(seed)
    tiles = []
    for rows, cols in tile_slices(grid):
        scale, shift = 0.3 + 2 * torch.rand((), generator=g, dtype=torch.float64), torch.randn((), generator=g, dtype=torch.float64)
        tiles.append(_normalise(scale * truth[rows, cols] + shift))
    return torch.stack(tiles)


@pytest.mark.parametrize("size, tile, overlap", [((100, 150), 48, 16), ((64, 256), 64, 32), ((97, 61), (40, 32), 8)])
def test_tiles_cover_the_photo_with_at_least_the_overlap(size, tile, overlap):
    grid = plan_tiles(*size, tile, overlap)
    for starts, length, side in ((grid.rows, size[0], grid.size[0]), (grid.cols, size[1], grid.size[1])):
        assert starts[0] == 0 and starts[-1] + side == length
        assert all(b - a <= side - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap pixels
    assert len(grid.windows) > 1


@pytest.mark.parametrize("size, tile, overlap", [((100, 150), 48, 16), ((64, 256), 64, 32), ((97, 61), (40, 32), 8), ((50, 70), 64, 0)])
def test_blending_weights_sum_to_one(size, tile, overlap):
    grid = plan_tiles(*size, tile, overlap)
    total = blend_tiles(torch.ones(len(grid.windows), *grid.size), grid)
    assert torch.allclose(total, torch.ones(size, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("anchored", [True, False])
@pytest.mark.parametrize("size, tile, overlap", [((100, 150), 48, 16), ((64, 256), 64, 32), ((130, 130), 64, 8)])
def test_affine_copies_of_one_map_are_reconciled_to_it(size, tile, overlap, anchored):
    truth = _ground_truth(*size)
    grid = plan_tiles(*size, tile, overlap)
    tiles = _affine_tiles(truth, grid)
    assert (tiles.amax(dim=(1, 2)) == 1).all()  # each tile normalised to its own content: they disagree as given
    reference = 0.4 * truth + 0.2 if anchored else None  # the global estimate: the truth up to its own affine
    merged = merge_tiles(tiles, grid, reference)
    assert merged.disparity.shape == size and merged.disparity.dtype == torch.float32
    assert (merged.disparity - _normalise(truth)).abs().max() < 1e-5
    naive = blend_tiles(tiles, grid)  # the tiles blended as they are: far from the truth
    assert (_normalise(naive) - _normalise(truth)).abs().max() > 0.05


def test_the_anchor_ties_tiles_without_overlap_and_no_anchor_then_is_an_error():
    truth = _ground_truth(64, 128)
    grid = plan_tiles(64, 128, 64, 0)
    tiles = _affine_tiles(truth, grid)
    assert len(grid.windows) == 2
    merged = merge_tiles(tiles, grid, truth * 3 - 1)
    assert (merged.disparity - truth).abs().max() < 1e-5
    with pytest.raises(ValueError, match="do not overlap"):
        merge_tiles(tiles, grid)


def test_the_anchor_fixes_what_tiles_cannot_see_and_its_weight_matters():
    """A reference differing from the tiles by a ramp: a large anchor weight follows it, a small one the tiles."""
    truth = _ground_truth(64, 192)
    grid = plan_tiles(64, 192, 64, 16)
    tiles = _affine_tiles(truth, grid)
    reference = truth + torch.linspace(0, 0.5, 192, dtype=torch.float64)[None, :]
    weak = merge_tiles(tiles, grid, reference, anchor_weight=1e-4).disparity
    strong = merge_tiles(tiles, grid, reference, anchor_weight=1e4).disparity
    assert (weak - truth).abs().max() < (strong - truth).abs().max()
    assert (strong - _normalise(reference)).abs().mean() < (weak - _normalise(reference)).abs().mean()


def test_scales_and_shifts_undo_the_tiles_affine():
    truth = _ground_truth(80, 120)
    grid = plan_tiles(80, 120, 48, 16)
    tiles = _affine_tiles(truth, grid)
    scale, shift = align_tiles(tiles, grid, truth)
    for (rows, cols), tile, s, t in zip(tile_slices(grid), tiles, scale, shift):
        assert torch.allclose(s * tile.double() + t, truth[rows, cols], atol=1e-8)


def test_one_tile_covering_the_photo_is_returned_unchanged():
    estimate = torch.rand(48, 80)
    for tile in (80, 512):  # the photo's size, and larger than the photo (cut to it)
        grid = plan_tiles(48, 80, tile, 16)
        assert grid.windows == [(0, 0)] and grid.size == (48, 80)
        merged = merge_tiles(estimate[None], grid, reference=torch.rand(48, 80))
        assert torch.equal(merged.disparity, estimate) and torch.equal(merged.uncertainty, torch.zeros(48, 80))


def test_uncertainty_is_blended_in_the_merged_units():
    truth = _ground_truth(64, 160)
    grid = plan_tiles(64, 160, 64, 16)
    tiles = _affine_tiles(truth, grid)
    spread = torch.full_like(tiles, 0.01)
    merged = merge_tiles(tiles, grid, truth, uncertainty=spread)
    rows, cols = tile_slices(grid)[0]
    first_range = truth[rows, cols].max() - truth[rows, cols].min()  # tile 0 spans this much of the merged [0, 1]
    assert torch.isclose(merged.uncertainty[0, 0].double(), 0.01 * first_range, rtol=1e-4)
    assert (merged.uncertainty > 0).all()


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="overlap .* smaller than the tile"):
        plan_tiles(200, 300, 64, 64)
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles(200, 300, 64, -1)
    with pytest.raises(ValueError, match="at least one pixel"):
        plan_tiles(0, 300, 64, 16)
    grid = plan_tiles(100, 150, 48, 16)
    tiles = _affine_tiles(_ground_truth(100, 150), grid)
    broken = tiles.clone()
    broken[2, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        merge_tiles(broken, grid)
    with pytest.raises(ValueError, match="NaN"):
        merge_tiles(tiles, grid, torch.full((100, 150), float("nan")))
    with pytest.raises(ValueError, match="tiles of 48x48"):
        merge_tiles(tiles[:-1], grid)
    with pytest.raises(ValueError, match="photo's size"):
        merge_tiles(tiles, grid, torch.rand(50, 75))
    with pytest.raises(ValueError, match="anchor_weight"):
        merge_tiles(tiles, grid, torch.rand(100, 150), anchor_weight=0)
    with pytest.raises(ValueError, match="uncertainty"):
        merge_tiles(tiles, grid, uncertainty=torch.rand(3, 48, 48))
