"""Depth maps as ComfyUI passes them around, to and from the JointDiT depth branch (torch only, no ComfyUI).

ComfyUI's depth packs and ControlNet preprocessors (Depth Anything V2, MiDaS, Marigold with invert)
give IMAGE tensors (B, H, W, 3) in [0, 1] with near = bright, i.e. relative disparity: the JointDiT
training convention of JointDiT (Byung-Ki Kwon et al., ICCV 2025). The autoencoder side of ComfyUI's VAE also works on
(B, H, W, 3) images in [0, 1]. The formulas are :mod:`jointdit_core.depth`'s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jointdit_core.depth import colorize, disparity_to_model_input, fill_missing_nearest, model_output_to_disparity, normalize_disparity  # noqa: F401 (colorize re-exported)

COLORMAPS = ("turbo", "gray")  # offered by DecodeDepth; colours from jointdit_core.depth.colorize
MIN_SIZE = 16  # pixels: the smallest map JointSampler takes (the VAE's 8x8-pixel latent cells, 2x2 cells per FLUX token)


def check_depth_size(depth: Tensor, vae_cell: int = 1, what: str = "depth map") -> Tensor:
    """Refuse an empty batch or a map smaller than the VAE's cell; returns ``depth`` (B, H, W).

    Args:
        depth: (B, H, W) depth maps.
        vae_cell: pixels per latent cell of the VAE that will encode the map (8 for FLUX's ``ae.safetensors``);
            a smaller map would reach the VAE as an empty image.
    Raises:
        ValueError: batch 0 or no pixels; H or W below ``vae_cell``, saying that :data:`MIN_SIZE` is the smallest size that works.
    """
    batch, height, width = depth.shape
    if batch == 0 or height == 0 or width == 0:
        raise ValueError(f"the {what} is empty (shape {tuple(depth.shape)}): connect at least one image")
    if height < vae_cell or width < vae_cell:
        raise ValueError(
            f"the {what} is {width}x{height} pixels; the smallest size that works is {MIN_SIZE}x{MIN_SIZE} "
            f"(the VAE needs {vae_cell}x{vae_cell}, JointSampler multiples of 16: e.g. ImageScale to 512x512)"
        )
    return depth


def depth_from_comfy(depth: Tensor) -> Tensor:
    """A ComfyUI IMAGE (B, H, W, C) or MASK (B, H, W) / (H, W) depth map -> (B, H, W) float32.

    IMAGE: mean of the first three channels (grey depth maps have three equal channels; alpha ignored).

    Raises:
        ValueError: other shapes.
    """
    if depth.ndim == 2:
        return depth[None].float()
    if depth.ndim == 3:
        return depth.float()
    if depth.ndim == 4 and depth.shape[-1] in (1, 3, 4):
        return depth[..., :3].float().mean(dim=-1)
    raise ValueError(f"a depth map must be an IMAGE (B, H, W, 3) or a MASK (B, H, W); got shape {tuple(depth.shape)}")


def depth_to_vae_pixels(depth: Tensor, near_is_bright: bool = True, normalize: bool = True, depth_transform: str = "none", valid: Tensor | None = None) -> Tensor:
    """(B, H, W) depth map -> (B, H, W, 3) pixels in [0, 1] for ``VAE.encode`` (the depth branch input).

    ``valid``: optional (B or 1, H, W) mask, 1 where the depth is known (sparse or partial depth): the
    other pixels first take their nearest known pixel's value (:func:`fill_missing_nearest`), so the
    normalisation sees only known values and no hole reads as structure.

    Args:
        depth: any range if ``normalize`` (per-image min-max, :func:`normalize_disparity`), else [0, 1].
        near_is_bright: True for disparity-like maps (Depth Anything, MiDaS, Marigold with invert);
            False for depth-like maps (near = dark), which are flipped (``1 - d``) after normalising.
        depth_transform: the addon's sidecar value, "none" or "inverse" (official ``1 - d``).
    Raises:
        ValueError: values outside [0, 1] with ``normalize`` off, NaN, or an unknown ``depth_transform``.
    """
    if valid is not None:
        depth = fill_missing_nearest(depth.float(), _valid_like(valid, depth) > 0.5)
    d = normalize_disparity(depth) if normalize else depth.float()
    if not normalize and (d.min() < 0 or d.max() > 1):
        raise ValueError("depth values lie outside [0, 1]: switch 'normalize' on")
    if not near_is_bright:
        d = 1.0 - d
    x = disparity_to_model_input(d, depth_transform)  # (B, 3, H, W) in [-1, 1]
    return ((x + 1) / 2).permute(0, 2, 3, 1).contiguous()


def _valid_like(valid: Tensor, depth: Tensor) -> Tensor:
    """A validity MASK (B or 1, H, W) checked against the (B, H, W) depth and repeated to its batch."""
    valid = valid.float().reshape(-1, *valid.shape[-2:]) if valid.ndim >= 2 else valid
    if valid.ndim != 3 or valid.shape[-2:] != depth.shape[-2:] or valid.shape[0] not in (1, depth.shape[0]):
        raise ValueError(
            f"the valid mask has shape {tuple(valid.shape)} but the depth map is {tuple(depth.shape)}: it needs the depth's height and width "
            "(and batch 1 or the depth's); resize the mask together with the depth map"
        )
    return valid.expand(depth.shape[0], -1, -1)


def vae_pixels_to_depth(pixels: Tensor, depth_transform: str = "none") -> Tensor:
    """``VAE.decode`` output (B, H, W, C) in [0, 1] -> depth (B, H, W) in [0, 1], near = 1 (bright).

    Clamp, mean over the three channels, undo the "inverse" transform (the official code's ``1 - d``).

    Raises:
        ValueError: NaN or Inf in ``pixels`` (a decoder that overflowed), instead of a depth map of NaN.
    """
    if not torch.isfinite(pixels).all():
        raise ValueError(
            "the VAE decoded NaN or Inf values from the depth LATENT: run the VAE in float32 or bfloat16 "
            "(ComfyUI --fp32-vae / --bf16-vae) and check the sampler's output"
        )
    x = pixels[..., :3].float().permute(0, 3, 1, 2) * 2 - 1
    return model_output_to_disparity(x, depth_transform)
