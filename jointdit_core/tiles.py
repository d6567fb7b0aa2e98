"""Depth estimation of photos larger than the processing resolution: pixel tiles, reconciled and blended.

A photo larger than the model's processing size is cut into overlapping tiles of that size at the photo's own
scale; each tile's disparity is estimated on its own and, being affine-invariant and min-max normalised to its
own content, is only known up to a scale and a shift. :func:`merge_tiles` solves one scale ``s_i`` and one shift
``t_i`` per tile jointly, in closed form, so that the tiles agree over their overlaps, weakly anchored to a
global reference (the whole photo estimated at processing resolution, upsampled), and blends the aligned tiles
with the ramp weights of the window sampler (:func:`jointdit_core.windows.window_weights`).

The objective, over all pairs (i, j) of overlapping tiles and their shared pixels O_ij, and every tile's pixels P_i:

    J(s, t) = sum_{i<j} sum_{p in O_ij} ((s_i d_i(p) + t_i) - (s_j d_j(p) + t_j))^2
              + anchor_weight * sum_i sum_{p in P_i} ((s_i d_i(p) + t_i) - g(p))^2

with d_i the tile's estimate and g the reference, is a linear least-squares problem in the 2N unknowns, solved
exactly from its normal equations (float64, minimum-norm ``lstsq`` so a constant tile does not make it fail).
The anchor fixes the global affine freedom the overlap terms leave and the low-frequency layout no single tile
sees. Without a reference the gauge is fixed as in :mod:`jointdit_core.ensemble` (mean scale 1, mean shift 0).

Sources: patches merged into a global base estimate by a per-patch scale and shift fitted by least squares is
the merging step of BoostingMonocularDepth (Miangoleh et al., "Boosting Monocular Depth Estimation Models to
High-Resolution via Content-Adaptive Multi-Resolution Merging", CVPR 2021) and of PatchFusion's coarse-to-fine
tiling (Li et al., CVPR 2024, which learns the fusion instead); aligning all overlapping views jointly, one scale
and shift each, is the rigid case of 360MonoDepth's global disparity alignment (Rey-Area et al., CVPR 2022);
the closed-form affine alignment is the one of Marigold's ensembling as solved in :mod:`jointdit_core.ensemble`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .windows import WindowGrid, window_weights


def _tile_starts(length: int, size: int, overlap: int) -> tuple[int, ...]:
    """Evenly spread starts (pixels) of tiles of ``size`` covering ``length`` with at least ``overlap`` shared."""
    if size >= length:
        return (0,)
    count = math.ceil((length - overlap) / (size - overlap))
    return tuple(sorted({round(i * (length - size) / (count - 1)) for i in range(count)}))


def plan_tiles(height: int, width: int, tile: int | tuple[int, int], overlap: int) -> WindowGrid:
    """Tiles covering a (height, width) photo, in pixels.

    Args:
        height, width: the photo's size in pixels (>= 1, any value).
        tile: (h, w) or one side of square tiles, pixels (>= 1); a tile side larger than the photo is cut to it
            (one tile along that axis).
        overlap: pixels shared by neighbouring tiles at least (the tiles are spread evenly, so they may share
            more), 0 <= overlap < each side of ``tile``.
    Returns:
        a :class:`jointdit_core.windows.WindowGrid` in pixel units (``wrap`` off), so that
        :func:`jointdit_core.windows.window_weights` gives the tiles' blending weights.
    Raises:
        ValueError: a size below 1, a negative overlap or one not smaller than a tile side.
    """
    size = (tile, tile) if isinstance(tile, int) else tuple(int(x) for x in tile)
    if height < 1 or width < 1:
        raise ValueError(f"the photo is {width}x{height} pixels; tiles need at least one pixel per side")
    if min(size) < 1:
        raise ValueError(f"tile size {size[0]}x{size[1]} must be at least 1 pixel per side")
    if overlap < 0 or overlap >= min(size):
        raise ValueError(
            f"tile overlap {overlap} px must be at least 0 and smaller than the tile ({size[0]}x{size[1]} px); lower the overlap"
        )
    size = (min(size[0], height), min(size[1], width))
    rows, cols = _tile_starts(height, size[0], overlap), _tile_starts(width, size[1], overlap)
    return WindowGrid(height, width, size, rows, cols, int(overlap), False)


def tile_slices(grid: WindowGrid) -> list[tuple[slice, slice]]:
    """(rows, columns) slices of every tile of ``grid`` (row-major, as ``grid.windows``): ``photo[..., rows, cols]``."""
    h, w = grid.size
    return [(slice(r, r + h), slice(c, c + w)) for r, c in grid.windows]


def _check_tiles(values: Tensor, grid: WindowGrid) -> None:
    if values.ndim != 3 or values.shape[0] != len(grid.windows) or tuple(values.shape[1:]) != grid.size:
        raise ValueError(f"expected {len(grid.windows)} tiles of {grid.size[0]}x{grid.size[1]} px (N, h, w), got shape {tuple(values.shape)}")


def blend_tiles(values: Tensor, grid: WindowGrid) -> Tensor:
    """Per-tile maps (N, h, w) -> one (H, W) float64 map: the tiles weighted by :func:`window_weights` (ramps over the
    overlap that sum to one at every pixel). Raises ValueError for a shape that is not the grid's."""
    _check_tiles(values, grid)
    out = torch.zeros(grid.height, grid.width, dtype=torch.float64)
    for (rows, cols), value, weight in zip(tile_slices(grid), values.double(), window_weights(grid)):
        out[rows, cols] += value * weight
    return out


def _overlapping_pairs(grid: WindowGrid) -> list[tuple[int, int, tuple[slice, slice], tuple[slice, slice]]]:
    """(i, j, region in tile i, region in tile j) of every pair of tiles sharing pixels."""
    h, w = grid.size
    pairs = []
    windows = grid.windows
    for i, (ri, ci) in enumerate(windows):
        for j in range(i + 1, len(windows)):
            rj, cj = windows[j]
            top, bottom, left, right = max(ri, rj), min(ri, rj) + h, max(ci, cj), min(ci, cj) + w
            if bottom > top and right > left:
                pairs.append((i, j, (slice(top - ri, bottom - ri), slice(left - ci, right - ci)),
                              (slice(top - rj, bottom - rj), slice(left - cj, right - cj))))
    return pairs


def align_tiles(tiles: Tensor, grid: WindowGrid, reference: Tensor | None = None, anchor_weight: float = 0.1) -> tuple[Tensor, Tensor]:
    """One scale and one shift per tile, solved jointly (the least squares of the module docstring).

    Args:
        tiles: (N, h, w) float disparity of every tile of ``grid`` (any affine range; row-major as ``grid.windows``).
        grid: from :func:`plan_tiles`.
        reference: (H, W) float disparity of the whole photo (e.g. its estimate at processing resolution
            upsampled), or None: the tiles only agree with each other, gauge mean scale 1, mean shift 0.
        anchor_weight: weight of a reference pixel against an overlap pixel (> 0 with a reference).
    Returns:
        (scale (N,), shift (N,)) float64: ``scale[i] * tiles[i] + shift[i]`` is tile i aligned (in the
        reference's units, or around the tiles' own without one).
    Raises:
        ValueError: shapes not matching the grid, NaN / infinite values, a non-positive ``anchor_weight`` with a
            reference, or several tiles without a reference and without overlap (nothing ties them together).
    """
    _check_tiles(tiles, grid)
    if not torch.isfinite(tiles).all():
        raise ValueError("a tile's disparity contains NaN or infinite values")
    n = tiles.shape[0]
    d = tiles.double().cpu()
    normal = torch.zeros(2 * n, 2 * n, dtype=torch.float64)  # unknowns (s_0, t_0, s_1, t_1, ...)
    rhs = torch.zeros(2 * n, dtype=torch.float64)
    pairs = _overlapping_pairs(grid)
    for i, j, region_i, region_j in pairs:
        # residual = f . p with f = (a, 1, -b, -1) on (s_i, t_i, s_j, t_j)
        a, b = d[i][region_i].flatten(), d[j][region_j].flatten()
        f = torch.stack([a, torch.ones_like(a), -b, -torch.ones_like(b)], dim=1)
        index = torch.tensor([2 * i, 2 * i + 1, 2 * j, 2 * j + 1])
        normal[index[:, None], index[None, :]] += f.T @ f
    if reference is not None:
        if tuple(reference.shape) != (grid.height, grid.width):
            raise ValueError(f"the reference must be the photo's size ({grid.height}x{grid.width}), got shape {tuple(reference.shape)}")
        if not torch.isfinite(reference).all():
            raise ValueError("the reference disparity contains NaN or infinite values")
        if not anchor_weight > 0:
            raise ValueError(f"anchor_weight must be positive with a reference, got {anchor_weight}")
        g = reference.double().cpu()
        for i, (rows, cols) in enumerate(tile_slices(grid)):
            x, y = d[i].flatten(), g[rows, cols].flatten()
            f = torch.stack([x, torch.ones_like(x)], dim=1)
            normal[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] += anchor_weight * (f.T @ f)
            rhs[2 * i : 2 * i + 2] += anchor_weight * (f.T @ y)
        system, target = normal, rhs
    else:
        if n > 1 and not pairs:
            raise ValueError("tiles that do not overlap can only be aligned to a reference; give one or an overlap above 0")
        gauge = torch.zeros(2, 2 * n, dtype=torch.float64)
        gauge[0, 0::2] = 1.0 / n  # mean scale = 1
        gauge[1, 1::2] = 1.0 / n  # mean shift = 0
        system = torch.cat([torch.cat([normal, gauge.T], dim=1), torch.cat([gauge, torch.zeros(2, 2, dtype=torch.float64)], dim=1)])
        target = torch.cat([rhs, torch.tensor([1.0, 0.0], dtype=torch.float64)])
    solution = torch.linalg.lstsq(system, target[:, None], driver="gelsd").solution[: 2 * n, 0]
    return solution[0::2], solution[1::2]


@dataclass(frozen=True)
class TileMerge:
    """Result of :func:`merge_tiles`.

    disparity: (H, W) float32 in [0, 1], near = 1, at the photo's size.
    uncertainty: (H, W) float32 >= 0 in the units of ``disparity`` (zeros when none was given).
    scale, shift: (N,) float64, each tile's alignment (before the final min-max normalisation).
    """

    disparity: Tensor
    uncertainty: Tensor
    scale: Tensor
    shift: Tensor


def merge_tiles(tiles: Tensor, grid: WindowGrid, reference: Tensor | None = None, anchor_weight: float = 0.1,
                uncertainty: Tensor | None = None) -> TileMerge:
    """Tiles' disparity estimates -> one disparity map of the photo: :func:`align_tiles`, :func:`blend_tiles`, then
    min-max normalised to [0, 1].

    Args:
        tiles: (N, h, w) disparity per tile (each min-max normalised, near = 1), row-major as ``grid.windows``.
        grid: from :func:`plan_tiles`.
        reference, anchor_weight: as :func:`align_tiles`.
        uncertainty: optional (N, h, w) spread per tile in the units of its ``tiles`` entry; blended after being
            multiplied by the tile's |scale|, and divided by the same range as the disparity.
    Returns:
        :class:`TileMerge`. A single tile covering the photo is returned unchanged (as float32; so one tile is the
        plain estimate, whatever the reference).
    Raises:
        ValueError: what :func:`align_tiles` raises, or an ``uncertainty`` of another shape than ``tiles``.
    """
    if uncertainty is not None and tuple(uncertainty.shape) != tuple(tiles.shape):
        raise ValueError(f"the tiles' uncertainty must have the tiles' shape {tuple(tiles.shape)}, got {tuple(uncertainty.shape)}")
    if len(grid.windows) == 1 and grid.size == (grid.height, grid.width) and tuple(tiles.shape) == (1, *grid.size):
        if not torch.isfinite(tiles).all():
            raise ValueError("a tile's disparity contains NaN or infinite values")
        spread = torch.zeros_like(tiles[0], dtype=torch.float32) if uncertainty is None else uncertainty[0].float()
        one = torch.ones(1, dtype=torch.float64)
        return TileMerge(tiles[0].float(), spread, one, torch.zeros_like(one))
    scale, shift = align_tiles(tiles, grid, reference, anchor_weight)
    merged = blend_tiles(scale[:, None, None] * tiles.double().cpu() + shift[:, None, None], grid)
    lo, span = merged.min(), (merged.max() - merged.min()).clamp_min(1e-12)
    spread = torch.zeros_like(merged)
    if uncertainty is not None:
        spread = blend_tiles(scale.abs()[:, None, None] * uncertainty.double().cpu(), grid)
    return TileMerge(((merged - lo) / span).float(), (spread / span).float(), scale, shift)
