"""Sparse depth (LiDAR-like, most pixels missing) for training: a validity mask from the file to the latent grid.

The path of a sparse map (``depth_kind = "kitti"``, or ``depth_zero_is_missing``):

1. read: 0 = no measurement (KITTI depth completion's 16-bit PNGs: metres = value / 256, 0 = missing;
   the convention ``zero_is_missing`` of *Load Depth*, :func:`jointdit_core.depth_files.read_depth`);
2. resize and centre-crop like the image, missing pixels left out of the interpolation
   (normalised interpolation: resize ``disparity * valid`` and ``valid``, divide);
3. min-max normalise over the valid pixels only, then fill the missing ones (pull-push: averages of
   the valid pixels at coarser and coarser scales fill the holes from the finest scale that has a value)
   so the autoencoder gets a whole image;
4. the latent grid's weight of each cell: the fraction of its ``f x f`` pixels that hold a measurement
   (f = 8 for the Flux autoencoder), stored in the cache as ``depth_valid`` (h, w) float32 in [0, 1];
5. the depth loss weights each latent cell by it (:func:`masked_mean`): cells with no measured pixel are
   ignored exactly, and a dense map (all ones) gives the plain mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

KITTI_DEPTH_SCALE = 256.0  # KITTI depth completion PNGs: uint16 value / 256 = metres, 0 = no measurement


def resize_with_mask(values: np.ndarray, valid: np.ndarray, image_size: tuple[int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize to the image's original size (if needed) and centre-crop to ``size`` like the image, missing pixels excluded.

    Args:
        values: (H, W) float32 disparity (any value at missing pixels); valid: (H, W) bool.
        image_size: the image's original (width, height).
    Returns:
        ``(values, coverage)``: (size, size) float32 disparity (0 where nothing valid contributed) and
        (size, size) float32 in [0, 1], the share of each output pixel's interpolation weight on valid pixels.
    Raises:
        ValueError: aspect ratio differs from the image's by more than 1%.
    """
    from .data import resize_center_crop

    h, w = values.shape
    if (w, h) != tuple(image_size) and abs((w / h) / (image_size[0] / image_size[1]) - 1) > 0.01:
        raise ValueError(f"depth map {w}x{h} does not match the image's {image_size[0]}x{image_size[1]} aspect ratio")
    out = []
    for arr in (np.where(valid, values, 0).astype(np.float32), valid.astype(np.float32)):
        im = Image.fromarray(arr, mode="F")
        if im.size != tuple(image_size):
            im = im.resize(tuple(image_size), resample=Image.Resampling.BILINEAR)
        out.append(np.asarray(resize_center_crop(im, size, Image.Resampling.BILINEAR), dtype=np.float32))
    num, coverage = out
    return np.where(coverage > 0, num / np.maximum(coverage, 1e-12), 0).astype(np.float32), np.clip(coverage, 0, 1)


def fill_missing(values: Tensor, valid: Tensor) -> Tensor:
    """Fill missing pixels by pull-push: the valid mean at the finest coarser scale that has data.

    Args:
        values: (H, W) float; valid: (H, W) bool (at least one True).
    Returns:
        (H, W) float32: ``values`` where valid, filled elsewhere.
    """
    v, m = (values.float() * valid)[None, None], valid.float()[None, None]
    levels = [(v, m)]
    while levels[-1][1].shape[-1] > 1 or levels[-1][1].shape[-2] > 1:
        v, m = (F.avg_pool2d(t, 2, ceil_mode=True) for t in levels[-1])
        levels.append((v, m))
    filled = levels[-1][0] / levels[-1][1].clamp_min(1e-12)
    for v, m in reversed(levels[:-1]):
        up = F.interpolate(filled, size=v.shape[-2:], mode="nearest")
        filled = torch.where(m > 0, v / m.clamp_min(1e-12), up)
    return torch.where(valid, values.float(), filled[0, 0])


def normalize_valid(disparity: Tensor, valid: Tensor) -> Tensor:
    """Min-max normalise to [0, 1] over the valid pixels, then fill the others (:func:`fill_missing`).

    disparity: (H, W) float; valid: (H, W) bool. Returns (H, W) float32 in [0, 1].
    Raises: ValueError when no pixel is valid.
    """
    if not valid.any():
        raise ValueError("the depth map has no valid pixel after resizing and cropping")
    d = disparity.float()
    lo, hi = d[valid].min(), d[valid].max()
    span = hi - lo
    d01 = ((d - lo) / span).clamp(0, 1) if span > 0 else torch.zeros_like(d)
    return fill_missing(d01, valid)


def latent_validity(valid: Tensor, factor: int) -> Tensor:
    """Share of measured pixels in each ``factor x factor`` cell: (H, W) bool/float -> (H/f, W/f) float32 in [0, 1]."""
    return F.avg_pool2d(valid.float()[None, None], factor)[0, 0]


def masked_mean(err: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean of a per-element error over latent cells.

    Args:
        err: (P, C, h, w) squared errors; weight: (P, h, w) cell weights in [0, 1] (:func:`latent_validity`).
    Returns:
        scalar ``sum(err * weight) / (C * sum(weight))``; 0 (with zero gradient) when every weight is 0.
        Elements of zero-weight cells contribute nothing, exactly.
    """
    w = weight.to(err)[:, None]
    total = w.sum() * err.shape[1]
    return (err * w).sum() / total if total > 0 else (err * w).sum()
