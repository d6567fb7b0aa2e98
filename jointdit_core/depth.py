"""Depth conventions of JointDiT, as the official release prepares and decodes depth (docs/method.md §6).

The depth branch sees relative *disparity* (near = large), min-max normalised per image to [0, 1],
optionally inverted (checkpoint ``depth_transform == "inverse"``: near = dark), replicated to 3 channels
and mapped to [-1, 1] before the autoencoder. Decoding takes the autoencoder output, clamps it to
[-1, 1], averages the 3 channels and maps back to [0, 1], undoing the inversion.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEPTH_TRANSFORMS = ("none", "inverse")


def _check_transform(depth_transform: str) -> bool:
    if depth_transform not in DEPTH_TRANSFORMS:
        raise ValueError(f"depth_transform must be one of {DEPTH_TRANSFORMS}, got {depth_transform!r}")
    return depth_transform == "inverse"


def normalize_disparity(disparity: Tensor) -> Tensor:
    """Per-image min-max normalisation to [0, 1].

    Args:
        disparity: (H, W) or (B, H, W) float, any range (e.g. Depth-Anything-V2 relative disparity).
    Returns:
        float32 tensor of the same shape in [0, 1]; a constant image gives zeros (no NaN).
    Raises:
        ValueError: NaN or infinite values (say which image), or fewer than 2 dimensions.
    """
    if disparity.ndim < 2:
        raise ValueError(f"a depth map needs (H, W) or (B, H, W), got shape {tuple(disparity.shape)}")
    d = disparity.float()
    flat = d.reshape(-1, d.shape[-2] * d.shape[-1]) if d.ndim > 2 else d.reshape(1, -1)
    bad = ~torch.isfinite(flat).all(dim=1)
    if bad.any():
        raise ValueError(f"depth map(s) {bad.nonzero().flatten().tolist()} contain NaN or infinite values; fix or drop them")
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.reshape(d.shape)


def fill_missing_nearest(values: Tensor, valid: Tensor) -> Tensor:
    """Give every missing pixel the value of its nearest valid pixel (Euclidean, on the pixel grid).

    Used before encoding sparse or partial depth (depth completion): a masked latent cell still reads the
    pixels around the missing ones, and zeros there would read as "far" (or "near") structure.

    Args:
        values: (H, W) or (B, H, W) float map (any range; missing pixels may hold anything finite or not).
        valid: bool (or 0/1) tensor of the same shape, True where ``values`` is known.
    Returns:
        float32 tensor of ``values``' shape: the valid pixels unchanged, the others filled.
    Raises:
        ValueError: shapes that differ, or an image without a valid pixel.

    Algorithm: jump flooding (Rong & Tan, "Jump flooding in GPU with applications to Voronoi diagram and
    distance transform", I3D 2006) with one extra pass at step 1 (JFA+1): log2(max(H, W)) + 1 passes of
    8 neighbour lookups, pure torch; near-exact (a few pixels of a Voronoi edge may take the second-nearest
    seed).
    """
    if values.shape != valid.shape or values.ndim not in (2, 3):
        raise ValueError(f"values {tuple(values.shape)} and valid {tuple(valid.shape)} must both be (H, W) or (B, H, W)")
    v = values.float().reshape(-1, *values.shape[-2:])
    known = valid.bool().reshape(v.shape)
    empty = ~known.flatten(1).any(dim=1)
    if empty.any():
        raise ValueError(f"depth map(s) {empty.nonzero().flatten().tolist()} have no valid pixel to fill from")
    b, h, w = v.shape
    far = float(4 * (h + w))  # a missing seed sits this far away: farther than any real pixel
    rows = torch.arange(h, device=v.device, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
    cols = torch.arange(w, device=v.device, dtype=torch.float32).view(1, 1, w).expand(b, h, w)
    seed_r, seed_c = torch.where(known, rows, -far), torch.where(known, cols, -far)
    best = (seed_r - rows) ** 2 + (seed_c - cols) ** 2
    half = (max(h, w) - 1).bit_length() - 1  # the first jump is the largest power of 2 below the longer side
    for k in [1 << i for i in range(half, -1, -1)] + [1]:
        pad_r = torch.nn.functional.pad(seed_r, (k, k, k, k), value=-far)
        pad_c = torch.nn.functional.pad(seed_c, (k, k, k, k), value=-far)
        for dy in (-k, 0, k):
            for dx in (-k, 0, k):
                if dy == dx == 0:
                    continue
                r, c = pad_r[:, k + dy : k + dy + h, k + dx : k + dx + w], pad_c[:, k + dy : k + dy + h, k + dx : k + dx + w]
                d = (r - rows) ** 2 + (c - cols) ** 2
                better = d < best
                seed_r, seed_c, best = torch.where(better, r, seed_r), torch.where(better, c, seed_c), torch.minimum(d, best)
    batch = torch.arange(b, device=v.device).view(b, 1, 1).expand(b, h, w)
    filled = v[batch, seed_r.long(), seed_c.long()]
    return torch.where(known, v, filled).reshape(values.shape)


def depth_to_disparity(depth: Tensor, eps: float = 1e-6) -> Tensor:
    """Metric depth (distance, > 0) -> disparity ``1 / depth`` (near = large). Raises ValueError on depth <= 0."""
    if (depth <= 0).any():
        raise ValueError("metric depth must be positive to convert to disparity")
    return 1.0 / depth.float().clamp_min(eps)


def disparity_to_model_input(disparity01: Tensor, depth_transform: str = "none") -> Tensor:
    """[0, 1] disparity (B, H, W) -> autoencoder input (B, 3, H, W) in [-1, 1] (inverted first if "inverse").

    Raises:
        ValueError: values outside [0, 1] (normalise first) or an unknown ``depth_transform``.
    """
    inverse = _check_transform(depth_transform)
    if disparity01.ndim != 3:
        raise ValueError(f"expected (B, H, W) disparity, got {tuple(disparity01.shape)}")
    if disparity01.min() < 0 or disparity01.max() > 1:
        raise ValueError("disparity must be normalised to [0, 1] (see normalize_disparity)")
    d = 1.0 - disparity01 if inverse else disparity01
    return (d.float() * 2 - 1).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def model_output_to_disparity(decoded: Tensor, depth_transform: str = "none") -> Tensor:
    """Autoencoder output (B, 3, H, W) -> disparity (B, H, W) in [0, 1], near = 1 (clamp, channel mean)."""
    inverse = _check_transform(depth_transform)
    d = (decoded.float().clamp(-1, 1).mean(dim=1) + 1) / 2
    return 1.0 - d if inverse else d


# Colour tables sampled at evenly spaced points of [0, 1] (RGB in [0, 1]); linear interpolation in between.
# turbo: Google's Turbo (A. Mikhailov, 2019, Apache-2.0), 17 points, within 0.03 of the 256-entry table;
# viridis (CC0): 9 points (0, 1/8, ..., 1).
_COLOR_TABLES = {
    "turbo": (
        (0.1900, 0.0718, 0.2322), (0.2511, 0.2524, 0.6337), (0.2763, 0.4212, 0.8912), (0.2586, 0.5796, 0.9988),
        (0.1584, 0.7355, 0.9231), (0.0927, 0.8655, 0.7623), (0.1966, 0.9490, 0.5947), (0.4278, 0.9942, 0.3857),
        (0.6436, 0.9900, 0.2336), (0.8047, 0.9245, 0.2046), (0.9330, 0.8124, 0.2267), (0.9931, 0.6741, 0.2035),
        (0.9836, 0.4929, 0.1285), (0.9211, 0.3149, 0.0548), (0.8161, 0.1846, 0.0181), (0.6645, 0.0844, 0.0042),
        (0.4796, 0.0158, 0.0106),
    ),
    "viridis": tuple(
        tuple(c / 255 for c in rgb)
        for rgb in ((68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142), (31, 158, 137),
                    (53, 183, 121), (180, 222, 44), (253, 231, 37))
    ),
}
COLORMAPS = ("turbo", "viridis", "gray")


def colorize(depth01: Tensor, colormap: str = "turbo") -> Tensor:
    """Depth/disparity values (...) in [0, 1] (clamped) -> colours (..., 3) in [0, 1], in the input's float dtype.

    "turbo" and "viridis" go from far (0: dark blue / dark purple) to near (1: dark red / yellow); "gray"
    repeats the value. Non-finite values never fail: NaN is black (0, 0, 0) in every colormap, +Inf and
    -Inf are clamped like other out-of-range values (1 and 0). Raises ValueError for another colormap name.
    """
    d = depth01 if depth01.is_floating_point() else depth01.float()
    missing = torch.isnan(d)[..., None]
    d = d.nan_to_num(0.0).clamp(0, 1)
    if colormap == "gray":
        colours = d[..., None].expand(*d.shape, 3)
    elif colormap in _COLOR_TABLES:
        table = torch.tensor(_COLOR_TABLES[colormap], dtype=d.dtype, device=d.device)
        pos = d * (len(table) - 1)
        lo = pos.floor().long().clamp(max=len(table) - 2)
        frac = (pos - lo)[..., None]
        colours = table[lo] * (1 - frac) + table[lo + 1] * frac
    else:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {COLORMAPS}")
    return colours.masked_fill(missing, 0.0)
