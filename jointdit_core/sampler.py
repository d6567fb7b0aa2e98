"""Euler sampling of rgb/depth pairs where each branch follows its own sigma schedule.

The three JointDiT tasks (spec section 5) are presets of one general form: each branch starts at
its own noise level and ends at its own level. A branch whose schedule is constant is *held*: before
every step it is reset to ``(1 - s) * clean + s * noise`` (s = 0: the clean condition), as the official
conditional loop does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .schedules import rescale_schedule


@dataclass(frozen=True)
class BranchLevels:
    """Start and end noise level of one branch (1 = pure noise, 0 = clean)."""

    start: float = 1.0
    end: float = 0.0

    @property
    def held(self) -> bool:
        return self.start == self.end


TASKS: dict[str, tuple[BranchLevels, BranchLevels]] = {
    # task: (rgb levels, depth levels)
    "joint_generation": (BranchLevels(1.0, 0.0), BranchLevels(1.0, 0.0)),
    "depth_estimation": (BranchLevels(0.0, 0.0), BranchLevels(1.0, 0.0)),
    "depth_to_image": (BranchLevels(1.0, 0.0), BranchLevels(0.0, 0.0)),
}


def task_levels(task: str) -> tuple[BranchLevels, BranchLevels]:
    """(rgb, depth) levels of a named task. Raises ValueError for an unknown task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)} or give start/end levels")
    return TASKS[task]


def branch_schedules(base: Sequence[float], rgb: BranchLevels, depth: BranchLevels) -> tuple[list[float], list[float]]:
    """Per-branch sigma lists from one 1 -> 0 base schedule (see :func:`rescale_schedule`)."""
    return rescale_schedule(base, rgb.start, rgb.end), rescale_schedule(base, depth.start, depth.end)


def seeded_noise(seed: int, shape: Sequence[int], dtype=torch.float32, device="cpu") -> tuple[Tensor, Tensor]:
    """Gaussian noise for the rgb and the depth branch from one seed, identical on every device and task.

    Drawn on the CPU from ``torch.Generator().manual_seed(seed)`` as one (2, *shape) tensor; the rgb
    noise is the first half. Returns (noise_rgb, noise_depth), each ``shape``.
    """
    generator = torch.Generator("cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    noise = torch.randn((2, *shape), generator=generator, dtype=torch.float32)
    return noise[0].to(device=device, dtype=dtype), noise[1].to(device=device, dtype=dtype)


@dataclass
class SamplerStep:
    """What the per-step callback receives, after the update of step ``step`` (0-based) of ``total``."""

    step: int
    total: int
    sigma_rgb: float
    sigma_depth: float
    x_rgb: Tensor
    x_depth: Tensor
    v_rgb: Tensor
    v_depth: Tensor


VelocityFn = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _start(levels_start: float, held: bool, clean: Tensor | None, noise: Tensor, name: str) -> Tensor:
    if levels_start == 1.0 and not held:
        return noise.clone()
    if clean is None:
        raise ValueError(f"the {name} branch starts at sigma {levels_start} < 1: it needs a {name} latent")
    if clean.shape != noise.shape:
        raise ValueError(f"{name} latent shape {tuple(clean.shape)} does not match the noise {tuple(noise.shape)}")
    return (1 - levels_start) * clean + levels_start * noise


def sample(
    velocity_fn: VelocityFn,
    rgb_sigmas: Sequence[float],
    depth_sigmas: Sequence[float],
    noise_rgb: Tensor,
    noise_depth: Tensor,
    clean_rgb: Tensor | None = None,
    clean_depth: Tensor | None = None,
    callback: Callable[[SamplerStep], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Euler steps ``x <- x + (s_next - s) * v`` per branch (spec section 5).

    Args:
        velocity_fn: ``(x_rgb, x_depth, sigma_rgb (P,), sigma_depth (P,)) -> (v_rgb, v_depth)``.
        rgb_sigmas, depth_sigmas: non-increasing lists of equal length ``steps + 1`` in [0, 1].
        noise_rgb, noise_depth: (P, ...) Gaussian noise, any latent layout (packed tokens or images).
        clean_rgb, clean_depth: (P, ...) clean latents; needed by a branch that starts below 1 or is held.
        callback: called after every step with a :class:`SamplerStep` (progress, previews, interruption
            by raising).
    Returns:
        (x_rgb, x_depth) at the end levels; a held branch is returned as its held value.
    Raises:
        ValueError: schedules of different lengths or increasing, or a missing clean latent.
    """
    rgb_sigmas, depth_sigmas = [float(s) for s in rgb_sigmas], [float(s) for s in depth_sigmas]
    if len(rgb_sigmas) != len(depth_sigmas) or len(rgb_sigmas) < 2:
        raise ValueError(f"rgb and depth schedules need the same length >= 2 (got {len(rgb_sigmas)} and {len(depth_sigmas)})")
    for name, sig in (("rgb", rgb_sigmas), ("depth", depth_sigmas)):
        if any(b > a for a, b in zip(sig, sig[1:])):
            raise ValueError(f"the {name} sigmas must not increase: {sig}")
    rgb_held, depth_held = len(set(rgb_sigmas)) == 1, len(set(depth_sigmas)) == 1
    x_rgb = _start(rgb_sigmas[0], rgb_held, clean_rgb, noise_rgb, "rgb")
    x_depth = _start(depth_sigmas[0], depth_held, clean_depth, noise_depth, "depth")
    pairs = noise_rgb.shape[0]
    total = len(rgb_sigmas) - 1
    for i in range(total):
        s_rgb, s_depth = rgb_sigmas[i], depth_sigmas[i]
        if rgb_held:
            x_rgb = _start(s_rgb, True, clean_rgb, noise_rgb, "rgb")
        if depth_held:
            x_depth = _start(s_depth, True, clean_depth, noise_depth, "depth")
        t_rgb = torch.full((pairs,), s_rgb, dtype=x_rgb.dtype, device=x_rgb.device)
        t_depth = torch.full((pairs,), s_depth, dtype=x_depth.dtype, device=x_depth.device)
        v_rgb, v_depth = velocity_fn(x_rgb, x_depth, t_rgb, t_depth)
        x_rgb = x_rgb + (rgb_sigmas[i + 1] - s_rgb) * v_rgb
        x_depth = x_depth + (depth_sigmas[i + 1] - s_depth) * v_depth
        if callback is not None:
            callback(SamplerStep(i, total, rgb_sigmas[i + 1], depth_sigmas[i + 1], x_rgb, x_depth, v_rgb, v_depth))
    return x_rgb, x_depth
