"""Window sampling of latents wider (or taller) than the model's window, MultiDiffusion-style.

At every step the latent is cut into overlapping windows, each window's velocity is computed by the
joint model as if it were a whole image (its own position ids, starting at 0), and the window velocities
are blended back with smooth weights that sum to one at every latent position (MultiDiffusion: Bar-Tal
et al., "MultiDiffusion: Fusing Diffusion Paths for Controlled Image Generation", ICML 2023, eq. 5, with
linearly ramped instead of uniform weights, as Mixture of Diffusers / tiled samplers do to hide the window
borders). With ``wrap`` the width is periodic: windows continue across the right edge onto the left one,
so a 360-degree panorama's first and last columns are denoised together.

:func:`windowed_velocity` wraps any velocity callable of :func:`~jointdit_core.sampler.sample` on
image-layout latents (P, C, H, W), so every task, schedule and mask of the ordinary sampling loop works
unchanged with windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .sampler import VelocityFn


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of one latent lie (latent units; 1 latent pixel = 8 image pixels).

    Attributes:
        height, width: the whole latent's size.
        size: (h, w) of every window, even, at most the latent's size.
        rows, cols: start row / start column of the windows along each axis (even); with ``wrap`` a
            window's columns are ``(col + arange(w)) % width``.
        overlap: the requested overlap of neighbouring windows along each axis.
        wrap: the width is periodic (360-degree panoramas).
    """

    height: int
    width: int
    size: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    overlap: int
    wrap: bool

    @property
    def windows(self) -> list[tuple[int, int]]:
        """(start row, start column) of every window, row-major."""
        return [(r, c) for r in self.rows for c in self.cols]

    def column_index(self, col: int, device=None) -> Tensor:
        """(w,) long column indices of the window starting at ``col`` (taken modulo the width)."""
        return (col + torch.arange(self.size[1], device=device)) % self.width


@dataclass(frozen=True)
class WindowSettings:
    """What a user chooses: window ``size`` (h, w) and ``overlap`` in latent pixels, ``wrap``, windows per model call."""

    size: tuple[int, int]
    overlap: int = 0
    wrap: bool = False
    per_batch: int = 1

    def grid(self, height: int, width: int) -> "WindowGrid":
        """:func:`plan_windows` for a (height, width) latent."""
        return plan_windows(height, width, self.size, self.overlap, self.wrap)


def _even(x: float) -> int:
    return 2 * int(round(x / 2))


def _starts(length: int, size: int, overlap: int, wrap: bool) -> tuple[int, ...]:
    """Evenly spread even window starts covering ``length`` (cyclically with ``wrap``)."""
    stride = size - overlap
    if wrap:
        count = max(1, math.ceil(length / stride))
        return tuple(sorted({_even(i * length / count) % length for i in range(count)}))
    if size >= length:
        return (0,)
    count = math.ceil((length - overlap) / stride)
    return tuple(sorted({_even(i * (length - size) / (count - 1)) for i in range(count)}))


def plan_windows(height: int, width: int, window: tuple[int, int], overlap: int, wrap: bool = False) -> WindowGrid:
    """Windows covering a (height, width) latent.

    Args:
        height, width: latent size (even, as every FLUX latent).
        window: (h, w) window size in latent pixels, even; larger than the latent is cut to the latent size
            (a window as large as the latent gives the ordinary sampler, except with ``wrap``).
        overlap: latent pixels shared by neighbouring windows, 0 <= overlap < each side of ``window`` (a window
            cut to a smaller latent shares at most half its width around the ``wrap`` seam).
        wrap: join the right edge to the left (360-degree panoramas): the windows are spread around the
            circle of ``width`` columns; a window as wide as the latent then takes a second, half-turned
            window when ``overlap`` > 0, so the seam is denoised inside a window.
    Returns:
        a :class:`WindowGrid`.
    Raises:
        ValueError: odd or non-positive sizes, or an overlap that is negative or not smaller than a window side.
    """
    if height <= 0 or width <= 0 or height % 2 or width % 2:
        raise ValueError(f"latent size {height}x{width} must be positive and even (images: multiples of 16 pixels)")
    if min(window) <= 0 or window[0] % 2 or window[1] % 2:
        raise ValueError(f"window size {tuple(window)} (latent pixels) must be positive and even (images: multiples of 16 pixels)")
    if overlap < 0 or overlap >= min(window):
        raise ValueError(
            f"window overlap {overlap} must be at least 0 and smaller than the window {window[0]}x{window[1]} (latent pixels); "
            "lower the overlap or enlarge the window"
        )
    size = (min(int(window[0]), height), min(int(window[1]), width))
    rows = _starts(height, size[0], min(overlap, size[0] - 1), False)
    cols = _starts(width, size[1], overlap if overlap < size[1] else size[1] // 2, wrap)
    return WindowGrid(height, width, size, rows, cols, int(overlap), bool(wrap))


def _ramp(size: int, overlap: int) -> Tensor:
    """(size,) float64 weights rising linearly over ``overlap`` positions at both ends, 1 inside, never 0."""
    i = torch.arange(size, dtype=torch.float64)
    return (torch.minimum(i + 0.5, size - 0.5 - i) / max(overlap, 1)).clamp(max=1.0)


def window_weights(grid: WindowGrid) -> Tensor:
    """Blending weights of every window, normalised so they sum to one at every latent position.

    Returns:
        (N, h, w) float64, N = ``len(grid.windows)``, each window's weight map; the sum of the maps
        placed at their windows (columns modulo the width with ``wrap``) is 1 everywhere.
    """
    h, w = grid.size
    raw = _ramp(h, grid.overlap)[:, None] * _ramp(w, grid.overlap)[None, :]
    total = torch.zeros(grid.height, grid.width, dtype=torch.float64)
    for row, col in grid.windows:
        total[row : row + h].index_add_(1, grid.column_index(col), raw)
    return torch.stack([raw / total[row : row + h][:, grid.column_index(col)] for row, col in grid.windows])


def _crop(x: Tensor, grid: WindowGrid, row: int, col: int) -> Tensor:
    return x[..., row : row + grid.size[0], :].index_select(-1, grid.column_index(col, x.device))


def windows_per_call(windows: int, windows_per_batch: int) -> int:
    """Windows in every model call of :func:`windowed_velocity`: ``windows`` split into balanced batches of at most
    ``windows_per_batch``. Raises ValueError when ``windows_per_batch`` < 1."""
    if windows_per_batch < 1:
        raise ValueError(f"windows per batch must be at least 1, got {windows_per_batch}")
    return math.ceil(windows / math.ceil(windows / windows_per_batch))


def windowed_velocity(velocity_fn: VelocityFn, grid: WindowGrid, windows_per_batch: int = 1) -> VelocityFn:
    """A velocity callable for :func:`~jointdit_core.sampler.sample` that evaluates ``velocity_fn`` window by window.

    Each call cuts both branches' (P, C, H, W) latents into the windows of ``grid``, evaluates
    ``velocity_fn`` on batches of windows, and blends the window velocities with :func:`window_weights`.
    A batch of k windows is one call with k*P pairs, window-major (rows ``j*P + p`` are window j of pair
    p, so a conditioning of batch P repeated k times matches). Every call gets the same number of
    windows (batches are balanced; the last is filled up with repeats of its last window, whose result
    is discarded), because a ComfyUI sampling run fixes its pairs per model call.

    Args:
        velocity_fn: ``(x_rgb, x_depth, sigma_rgb (B,), sigma_depth (B,)) -> (v_rgb, v_depth)`` on
            (B, C, h, w) windows.
        grid: from :func:`plan_windows`, for the latents' (H, W).
        windows_per_batch: at most this many windows per ``velocity_fn`` call (>= 1).
    Returns:
        ``(x_rgb, x_depth, sigma_rgb (P,), sigma_depth (P,)) -> (v_rgb, v_depth)`` on (P, C, H, W) latents.
    Raises:
        ValueError: ``windows_per_batch`` < 1, or (when called) latents of another size than the grid's.
    """
    windows = grid.windows
    per_call = windows_per_call(len(windows), windows_per_batch)
    weights = window_weights(grid)

    def velocity(x_rgb: Tensor, x_depth: Tensor, t_rgb: Tensor, t_depth: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x_rgb.shape[-2:]) != (grid.height, grid.width) or x_depth.shape != x_rgb.shape:
            raise ValueError(
                f"window sampling was planned for a {grid.height}x{grid.width} latent but got rgb {tuple(x_rgb.shape)} "
                f"and depth {tuple(x_depth.shape)}"
            )
        pairs = x_rgb.shape[0]
        out_rgb, out_depth = torch.zeros_like(x_rgb), torch.zeros_like(x_depth)
        for first in range(0, len(windows), per_call):
            chosen = list(range(first, min(first + per_call, len(windows))))
            filled = chosen + [chosen[-1]] * (per_call - len(chosen))
            v_rgb, v_depth = velocity_fn(
                torch.cat([_crop(x_rgb, grid, *windows[j]) for j in filled]),
                torch.cat([_crop(x_depth, grid, *windows[j]) for j in filled]),
                t_rgb.repeat(len(filled)),
                t_depth.repeat(len(filled)),
            )
            for k, j in enumerate(chosen):
                row, col = windows[j]
                weight = weights[j].to(x_rgb)
                cols = grid.column_index(col, x_rgb.device)
                rows = slice(row, row + grid.size[0])
                out_rgb[..., rows, :].index_add_(-1, cols, v_rgb[k * pairs : (k + 1) * pairs] * weight)
                out_depth[..., rows, :].index_add_(-1, cols, v_depth[k * pairs : (k + 1) * pairs] * weight)
        return out_rgb, out_depth

    return velocity


WRAP_DECODE_COLUMNS = 8  # latent columns borrowed from the other edge: beyond the decoder's convolutions' reach of the seam


def decode_wrapped(decode, z: Tensor, columns: int = WRAP_DECODE_COLUMNS, pixel_dim: int = -1) -> Tensor:
    """Decode a 360-degree latent with circular padding, so the autoencoder sees the panorama's two edges side by side.

    The latent is padded with its last ``columns`` columns on the left and its first ``columns`` on the right
    (``torch.nn.functional.pad(..., mode="circular")`` along the width), decoded, and the pixels of the padding
    cropped again. A plain decode pads both edges with zeros instead, which makes a seam where the image wraps.

    Args:
        decode: the autoencoder's decode, (B, C, h, W') latent -> pixels with the width at ``pixel_dim``
            (a whole multiple of W'), e.g. :meth:`jointdit_core.autoencoder.AutoEncoder.decode` (pixel_dim -1)
            or ComfyUI's ``VAE.decode`` ((B, H, W, 3): pixel_dim -2).
        z: (B, C, h, w) latent, any float dtype.
        columns: latent columns borrowed from each edge, 0 <= columns <= w (0: a plain decode).
        pixel_dim: the width dimension of ``decode``'s output.
    Returns:
        ``decode``'s output for ``z``: the same layout and dtype, width w times the autoencoder's cell.
    Raises:
        ValueError: ``columns`` outside [0, w], or a decoded width that is not a whole multiple of the padded
            latent's width.
    """
    width = z.shape[-1]
    if not 0 <= columns <= width:
        raise ValueError(f"circular decode borrows {columns} latent columns from each edge, but the latent is {width} wide: use 0 to {width}")
    if columns == 0:
        return decode(z)
    pixels = decode(torch.cat([z[..., -columns:], z, z[..., :columns]], dim=-1))
    cell, rest = divmod(pixels.shape[pixel_dim], width + 2 * columns)
    if rest:
        raise ValueError(f"decoded width {pixels.shape[pixel_dim]} (dim {pixel_dim}) is not a multiple of the padded latent's {width + 2 * columns}")
    return pixels.narrow(pixel_dim, cell * columns, cell * width)
