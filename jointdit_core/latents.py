"""Packing of autoencoder latents into Flux tokens, and their position ids (BFL convention)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def check_latent_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless a latent of (height, width) can be packed into 2x2 patches."""
    if height % 2 or width % 2 or height <= 0 or width <= 0:
        raise ValueError(
            f"latent size {height}x{width} must be even (images must be multiples of 16 pixels for FLUX); "
            "resize or crop the image first"
        )


def pack(z: Tensor) -> Tensor:
    """(B, C, H, W) latent -> (B, (H/2)*(W/2), 4C) tokens (2x2 patches). Raises ValueError on odd H or W."""
    check_latent_size(z.shape[-2], z.shape[-1])
    return rearrange(z, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)


def unpack(tokens: Tensor, height: int, width: int) -> Tensor:
    """(B, (H/2)*(W/2), 4C) tokens -> (B, C, H, W) latent of the given latent height/width."""
    return rearrange(tokens, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=height // 2, w=width // 2, ph=2, pw=2)


def image_ids(batch: int, height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Flux image position ids for a (height, width) latent: (B, (H/2)*(W/2), 3) = (0, row, col)."""
    h, w = height // 2, width // 2
    ids = torch.zeros(h, w, 3, device=device, dtype=dtype)
    ids[..., 1] = torch.arange(h, device=device, dtype=dtype)[:, None]
    ids[..., 2] = torch.arange(w, device=device, dtype=dtype)[None, :]
    return ids.reshape(1, h * w, 3).expand(batch, -1, -1)


def text_ids(batch: int, tokens: int, device=None, dtype=torch.float32) -> Tensor:
    """Text position ids: all zero, as the official release trains and samples (method §1)."""
    return torch.zeros(batch, tokens, 3, device=device, dtype=dtype)
