"""Pixel conversions between 8-bit images and the autoencoder's [-1, 1] range, written once."""

from __future__ import annotations

import torch
from torch import Tensor


def uint8_to_model(images) -> Tensor:
    """8-bit images, channels last -> autoencoder input, channels first: ``x / 127.5 - 1``.

    Args:
        images: (..., H, W, C) uint8 values 0..255, a numpy array or a tensor (e.g. ``np.asarray(pil_image)``).
    Returns:
        (..., C, H, W) float32 in [-1, 1], contiguous, on the input's device (CPU for numpy).
    """
    x = images if isinstance(images, Tensor) else torch.tensor(images)
    return (x.float() / 127.5 - 1.0).movedim(-1, -3).contiguous()


def model_to_uint8(x: Tensor) -> Tensor:
    """Autoencoder output, channels first -> 8-bit images, channels last: ``round((clamp(x, -1, 1) + 1) * 127.5)``.

    Args:
        x: (..., C, H, W) float, nominally in [-1, 1] (clamped).
    Returns:
        (..., H, W, C) uint8 tensor on the CPU (``.numpy()`` for PIL).
    """
    return ((x.detach().clamp(-1, 1) + 1) * 127.5).round().byte().movedim(-3, -1).cpu()


def unit_to_uint8(values) -> Tensor:
    """Values in [0, 1] (clamped; e.g. a normalised disparity or colormap colours) -> ``round(v * 255)`` uint8.

    Args:
        values: any shape, numpy array or tensor.
    Returns:
        uint8 tensor of the same shape on the CPU.
    """
    v = values if isinstance(values, Tensor) else torch.tensor(values)
    return (v.detach().clamp(0, 1) * 255).round().byte().cpu()
