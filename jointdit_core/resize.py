"""Processing resolution: photos of any size to the multiples of 16 FLUX needs, and depth back to the photo's size.

Depth estimators work at a fixed *processing resolution* and return the prediction at the input's own
size (Marigold: ``processing_resolution`` = the longer side, 768 for its v1 models; the diffusers
``MarigoldDepthPipeline`` resizes down with an antialiased bilinear filter and the prediction back up with
plain bilinear interpolation). JointDiT does the same, with two differences: the sides must be multiples
of 16 (the 8x autoencoder and FLUX's 2x2 patches), so each side is rounded to the nearest multiple of 16
instead of padded, and the default is 512 (the official training resolution).

Resampling (both directions, :func:`resize_image`): bilinear (``align_corners=False``), antialiased
(PyTorch's ``antialias=True``, a triangle filter widened by the scale factor) when a side shrinks, plain
bilinear when it grows; a size that does not change is returned untouched, so a 512x512 photo at
processing resolution 512 goes through bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MULTIPLE = 16  # FLUX: 8x autoencoder downscale x 2x2 patches


def _round16(x: float) -> int:
    return max(MULTIPLE, int(round(x / MULTIPLE)) * MULTIPLE)


def processing_size(height: int, width: int, processing_resolution: int = 512) -> tuple[int, int]:
    """The (height, width) a photo is processed at: longer side ``processing_resolution``, aspect kept, multiples of 16.

    Args:
        height, width: the photo's size in pixels (>= 1).
        processing_resolution: the longer side in pixels (rounded to the nearest multiple of 16, at least 16);
            0 = the photo's own size, each side rounded to the nearest multiple of 16.
    Returns:
        (height, width), both multiples of 16 and at least 16; e.g. 467x700 at 512 -> (336, 512),
        at 0 -> (464, 704); 512x512 at 512 -> (512, 512).
    Raises:
        ValueError: a side below 1 or a negative ``processing_resolution``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"the image is {width}x{height} pixels; it needs at least one pixel per side")
    if processing_resolution < 0:
        raise ValueError(f"processing_resolution must be 0 (the image's own size) or a positive number of pixels, got {processing_resolution}")
    if processing_resolution == 0:
        return _round16(height), _round16(width)
    scale = processing_resolution / max(height, width)
    return _round16(height * scale), _round16(width * scale)


def resize_image(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize channels-first images (B, C, H, W) (or (B, H, W) maps) to ``size`` = (height, width).

    Bilinear, ``align_corners=False``, antialiased along a dimension set to shrink (see the module
    docstring). The input is returned as it is when ``size`` equals its size. float32 computation,
    result in the input's floating dtype (float32 for integer input).

    Raises:
        ValueError: a tensor that is not 3- or 4-dimensional, or a size below 1.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"resize_image needs (B, C, H, W) or (B, H, W), got shape {tuple(x.shape)}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize to {width}x{height}")
    if tuple(x.shape[-2:]) == (height, width):
        return x
    dtype = x.dtype if x.is_floating_point() else torch.float32
    y = x[:, None] if x.ndim == 3 else x
    shrink = height < y.shape[-2] or width < y.shape[-1]
    y = F.interpolate(y.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return (y[:, 0] if x.ndim == 3 else y).to(dtype)


def to_processing_resolution(image: Tensor, processing_resolution: int = 512) -> Tensor:
    """A ComfyUI IMAGE (B, H, W, C) in [0, 1] -> the same at :func:`processing_size` (clamped to [0, 1]).

    Raises:
        ValueError: not a (B, H, W, C) tensor, or what :func:`processing_size` raises.
    """
    if image.ndim != 4:
        raise ValueError(f"an IMAGE must be (B, H, W, C), got shape {tuple(image.shape)}")
    size = processing_size(image.shape[1], image.shape[2], processing_resolution)
    if size == tuple(image.shape[1:3]):
        return image
    return resize_image(image.movedim(-1, 1), size).movedim(1, -1).clamp(0, 1)


def to_input_size(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """Depth/disparity maps (B, H', W') at processing resolution -> (B, H, W) at the photo's ``size`` = (H, W).

    Same resampling as :func:`resize_image`; values stay in the range they had (bilinear weights are
    convex; the antialiased filter is too), so a [0, 1] map stays in [0, 1] up to rounding (clamped).
    """
    if depth.ndim != 3:
        raise ValueError(f"depth maps must be (B, H, W), got shape {tuple(depth.shape)}")
    out = resize_image(depth, size)
    return out if out is depth else out.clamp(float(depth.min()), float(depth.max()))
