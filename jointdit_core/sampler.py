"""Euler sampling of rgb/depth pairs where each branch follows its own sigma schedule.

The three JointDiT tasks of the paper (JointDiT, Byung-Ki Kwon et al., ICCV 2025) are presets of one
general form: each branch starts at its own noise level and ends at its own level. A branch whose
schedule is constant is *held*: before every step it is reset to ``(1 - s) * clean + s * noise``
(s = 0: the clean condition), as the official conditional loop does (kaist-ami/JointDiT; docs/method.md §5).

:func:`plan_sampling` plans both branches once (task or levels, steps, schedule, token count, optional
SIGMAS) into a :class:`SamplingPlan`; :func:`sample` runs the Euler loop on any two schedules, with an
optional mask per branch (inpainting, outpainting, depth completion; see :func:`sample`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .schedules import custom_schedule, flux_shifted_schedule, linear_schedule, rescale_schedule


@dataclass(frozen=True)
class BranchLevels:
    """Start and end noise level of one branch (1 = pure noise, 0 = clean)."""

    start: float = 1.0
    end: float = 0.0

    @property
    def held(self) -> bool:
        """True when the branch stays at one level (a condition: its schedule is constant)."""
        return self.start == self.end


TASKS: dict[str, tuple[BranchLevels, BranchLevels]] = {
    # task: (rgb levels, depth levels)
    "joint_generation": (BranchLevels(1.0, 0.0), BranchLevels(1.0, 0.0)),
    "depth_estimation": (BranchLevels(0.0, 0.0), BranchLevels(1.0, 0.0)),
    "depth_to_image": (BranchLevels(1.0, 0.0), BranchLevels(0.0, 0.0)),
}
SCHEDULES = ("flux_shifted", "linear")  # flux_shifted: the official FLUX.1-dev schedule; linear: 1 -> 0 evenly


def task_levels(task: str) -> tuple[BranchLevels, BranchLevels]:
    """(rgb, depth) levels of a named task. Raises ValueError for an unknown task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}, or 'custom' with start/end levels")
    return TASKS[task]


def branch_schedules(base: Sequence[float], rgb: BranchLevels, depth: BranchLevels) -> tuple[list[float], list[float]]:
    """Per-branch sigma lists from one 1 -> 0 base schedule (see :func:`rescale_schedule`)."""
    return rescale_schedule(base, rgb.start, rgb.end), rescale_schedule(base, depth.start, depth.end)


@dataclass(frozen=True)
class SamplingPlan:
    """Both branch schedules of one sampling run and what follows from them.

    Build it with :func:`plan_sampling` (or directly from two sigma lists, validated here).

    Attributes:
        task: a :data:`TASKS` name, or "custom" (levels or SIGMAS given by the caller).
        rgb_sigmas, depth_sigmas: non-increasing sigmas in [0, 1] of equal length ``steps + 1``.
        rgb, depth: each branch's :class:`BranchLevels` (first and last sigma); a constant schedule is
            ``held``.
    Raises:
        ValueError: schedules of different lengths, or an invalid schedule (see :func:`custom_schedule`).
    """

    task: str
    rgb_sigmas: tuple[float, ...]
    depth_sigmas: tuple[float, ...]
    rgb: BranchLevels = field(init=False)
    depth: BranchLevels = field(init=False)

    def __post_init__(self):
        rgb, depth = tuple(custom_schedule(self.rgb_sigmas)), tuple(custom_schedule(self.depth_sigmas))
        if len(rgb) != len(depth):
            raise ValueError(f"the rgb and depth schedules have different lengths ({len(rgb)} and {len(depth)}); they need the same length")
        object.__setattr__(self, "rgb_sigmas", rgb)
        object.__setattr__(self, "depth_sigmas", depth)
        object.__setattr__(self, "rgb", BranchLevels(rgb[0], rgb[-1]))
        object.__setattr__(self, "depth", BranchLevels(depth[0], depth[-1]))

    @property
    def steps(self) -> int:
        return len(self.rgb_sigmas) - 1

    @property
    def rgb_held(self) -> bool:
        return self.rgb.held

    @property
    def depth_held(self) -> bool:
        return self.depth.held

    @property
    def needs_rgb_latent(self) -> bool:
        """The rgb branch starts below pure noise or is held, so it needs an image latent."""
        return self.rgb.start < 1.0 or self.rgb_held

    @property
    def needs_depth_latent(self) -> bool:
        """The depth branch starts below pure noise or is held, so it needs a depth latent."""
        return self.depth.start < 1.0 or self.depth_held

    @property
    def preview_branch(self) -> str:
        """The branch worth previewing: "depth" when the rgb branch is held, else "rgb"."""
        return "depth" if self.rgb_held else "rgb"

    def check_latents(self, has_rgb: bool, has_depth: bool) -> None:
        """Raise ValueError naming the latent this plan needs and did not get."""
        for name, needs, has, levels, what in (
            ("rgb", self.needs_rgb_latent, has_rgb, self.rgb, "an image latent"),
            ("depth", self.needs_depth_latent, has_depth, self.depth, "a depth latent"),
        ):
            if needs and not has:
                how = f"holds the {name} branch at sigma {levels.start:g}" if levels.held else f"starts the {name} branch at sigma {levels.start:g}"
                raise ValueError(f"task {self.task!r} {how}: it needs {what} ({name} branch)")


def _base_schedule(schedule: str, steps: int, token_count: int) -> list[float]:
    if schedule == "flux_shifted":
        return flux_shifted_schedule(steps, token_count)
    if schedule == "linear":
        return linear_schedule(steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)} or give SIGMAS")


def _given(sigmas) -> list[float] | None:
    """A caller's SIGMAS (list, tuple or tensor such as ComfyUI's SIGMAS) as a validated list, or None."""
    return None if sigmas is None else custom_schedule(torch.as_tensor(sigmas, dtype=torch.float64).flatten().tolist())


def plan_sampling(
    task: str = "joint_generation",
    *,
    steps: int = 20,
    schedule: str = "flux_shifted",
    token_count: int,
    levels: tuple[BranchLevels, BranchLevels] | None = None,
    rgb_sigmas=None,
    depth_sigmas=None,
) -> SamplingPlan:
    """Plan both branches of a sampling run.

    Each branch's schedule is the base schedule (``schedule`` with ``steps`` steps) mapped onto its
    levels: the task's preset, or ``levels`` (then the plan's task is "custom"). A SIGMAS input replaces
    that branch's schedule as given; the other branch then takes as many steps.

    Args:
        task: a :data:`TASKS` name, or "custom" (needs ``levels``).
        steps: Euler steps (official 20); ignored when SIGMAS are given.
        schedule: one of :data:`SCHEDULES`; "flux_shifted" is the official FLUX.1-dev schedule (BFL
            ``get_schedule(shift=True)``), shifted by ``token_count``.
        token_count: image tokens per row, ``(H/16) * (W/16)`` for an H x W image.
        levels: (rgb, depth) :class:`BranchLevels`, e.g. image-to-image with a partly noised rgb branch.
        rgb_sigmas, depth_sigmas: per-branch schedules (sequence or 1-D tensor), non-increasing in [0, 1].
    Returns:
        a :class:`SamplingPlan`.
    Raises:
        ValueError: an unknown task or schedule, "custom" without levels, invalid levels or SIGMAS,
            two SIGMAS of different lengths, steps < 1.
    """
    if levels is not None:
        task, (rgb, depth) = "custom", levels
    elif task == "custom":
        raise ValueError("task 'custom' needs levels: (rgb, depth) BranchLevels with each branch's start and end")
    else:
        rgb, depth = task_levels(task)
    given_rgb, given_depth = _given(rgb_sigmas), _given(depth_sigmas)
    if given_rgb is not None and given_depth is not None and len(given_rgb) != len(given_depth):
        raise ValueError(f"the rgb and depth SIGMAS have different lengths ({len(given_rgb)} and {len(given_depth)}); give the same number of steps")
    if given_rgb is not None or given_depth is not None:
        steps = len(given_rgb if given_rgb is not None else given_depth) - 1
    planned_rgb, planned_depth = branch_schedules(_base_schedule(schedule, steps, token_count), rgb, depth)
    return SamplingPlan(task, planned_rgb if given_rgb is None else given_rgb, planned_depth if given_depth is None else given_depth)


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


def _noised(level: float, clean: Tensor | None, noise: Tensor, name: str) -> Tensor:
    """``(1 - level) * clean + level * noise`` (pure noise at level 1 without a clean latent)."""
    if clean is None or level == 1.0:
        return noise.clone()
    if clean.shape != noise.shape:
        raise ValueError(f"{name} latent shape {tuple(clean.shape)} does not match the noise {tuple(noise.shape)}")
    return (1 - level) * clean + level * noise


def check_mask(mask: Tensor | None, latent: Tensor, name: str) -> Tensor | None:
    """A branch's mask (1 = regenerate, 0 = keep the given latent) checked against that branch's latent.

    Args:
        mask: same number of dims as ``latent`` (e.g. (P or 1, 1 or C, h, w) for image latents, or
            (P or 1, L, 1 or D) for packed tokens); every dim is 1 (broadcast) or the latent's size.
            Float values in [0, 1]; fractional values blend softly. None: no mask.
        latent: the branch's (P, ...) latent (or noise), giving the shape.
        name: "rgb" or "depth", for the messages.
    Returns:
        the mask as a float tensor of ``latent``'s dtype and device, or None.
    Raises:
        ValueError: a mask whose dims or sizes do not fit the latent (resize it to the latent size
            first, e.g. ``torch.nn.functional.interpolate`` to (h, w)), or values outside [0, 1] / NaN.
    """
    if mask is None:
        return None
    mask = torch.as_tensor(mask)
    if mask.ndim != latent.ndim or any(m not in (1, n) for m, n in zip(mask.shape, latent.shape)):
        raise ValueError(
            f"the {name} mask has shape {tuple(mask.shape)} but the {name} latent is {tuple(latent.shape)}: the mask needs "
            f"{latent.ndim} dims, each 1 or the latent's size (batch 1 or {latent.shape[0]}); resize it to the latent size first"
        )
    mask = mask.to(device=latent.device, dtype=latent.dtype)
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise ValueError(f"the {name} mask must hold values in [0, 1] (1 = regenerate, 0 = keep); it has values outside that range or NaN")
    return mask


def keep_unmasked(x: Tensor, kept: Tensor, mask: Tensor | None) -> Tensor:
    """``x * mask + kept * (1 - mask)``: exactly ``kept`` where the mask is 0, exactly ``x`` where it is 1."""
    return x if mask is None else x * mask + kept * (1 - mask)


def sample(
    velocity_fn: VelocityFn,
    rgb_sigmas: Sequence[float],
    depth_sigmas: Sequence[float],
    noise_rgb: Tensor,
    noise_depth: Tensor,
    clean_rgb: Tensor | None = None,
    clean_depth: Tensor | None = None,
    callback: Callable[[SamplerStep], None] | None = None,
    *,
    rgb_mask: Tensor | None = None,
    depth_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Euler steps ``x <- x + (s_next - s) * v`` per branch (rectified flow, as the official sampler; method §5).

    Masks (inpainting, outpainting, depth completion): a branch with a mask ``m`` (1 = regenerate,
    0 = keep) regenerates only where ``m`` is 1. Before every model call its unmasked part is reset to
    the given clean latent noised to that step's sigma of the branch, as ComfyUI's samplers do with a
    ``denoise_mask`` (``KSamplerX0Inpaint``)::

        x = x * m + ((1 - s) * clean + s * noise) * (1 - m)

    and after the last step the same blend at the branch's end level (``x * m + clean * (1 - m)`` for
    the usual end level 0), so where ``m`` is 0 the output is exactly ``clean``; where ``m`` is 1 everything is as without a mask (an all-ones mask gives the unmasked
    result exactly). The masked branch still follows its own schedule (e.g. 1 -> 0) and needs its
    clean latent. A held branch cannot take a mask (it regenerates nothing).

    Args:
        velocity_fn: ``(x_rgb, x_depth, sigma_rgb (P,), sigma_depth (P,)) -> (v_rgb, v_depth)``.
        rgb_sigmas, depth_sigmas: non-increasing lists of equal length ``steps + 1`` in [0, 1]
            (e.g. ``plan.rgb_sigmas`` of a :class:`SamplingPlan`).
        noise_rgb, noise_depth: (P, ...) Gaussian noise, any latent layout (packed tokens or images).
        clean_rgb, clean_depth: (P, ...) clean latents; needed by a branch that starts below 1 or is held.
        callback: called after every step with a :class:`SamplerStep` (progress, previews, interruption
            by raising).
        rgb_mask, depth_mask: optional per-branch masks in the latent layout (see :func:`check_mask`),
            1 = regenerate, 0 = keep the clean latent.
    Returns:
        (x_rgb, x_depth) at the end levels; a held branch is returned as its held value.
    Raises:
        ValueError: invalid schedules (see :class:`SamplingPlan`), a missing clean latent, a clean
            latent of another shape than the noise, a mask that does not fit (see :func:`check_mask`),
            a mask without its clean latent or on a held branch.
    """
    plan = SamplingPlan("custom", rgb_sigmas, depth_sigmas)
    plan.check_latents(clean_rgb is not None, clean_depth is not None)
    rgb_mask, depth_mask = check_mask(rgb_mask, noise_rgb, "rgb"), check_mask(depth_mask, noise_depth, "depth")
    for name, mask, clean, held in (("rgb", rgb_mask, clean_rgb, plan.rgb_held), ("depth", depth_mask, clean_depth, plan.depth_held)):
        if mask is None:
            continue
        if clean is None:
            raise ValueError(f"a {name} mask needs the {name} latent to keep outside the mask; give the clean {name} latent")
        if held:
            raise ValueError(
                f"the {name} branch is held (a condition), so a {name} mask has nothing to regenerate; generate that branch "
                "(its schedule going to 0, e.g. joint generation) or remove the mask"
            )
    rgb_sigmas, depth_sigmas = plan.rgb_sigmas, plan.depth_sigmas
    x_rgb = _noised(rgb_sigmas[0], clean_rgb, noise_rgb, "rgb")
    x_depth = _noised(depth_sigmas[0], clean_depth, noise_depth, "depth")
    pairs = noise_rgb.shape[0]
    for i in range(plan.steps):
        s_rgb, s_depth = rgb_sigmas[i], depth_sigmas[i]
        if plan.rgb_held:
            x_rgb = _noised(s_rgb, clean_rgb, noise_rgb, "rgb")
        if plan.depth_held:
            x_depth = _noised(s_depth, clean_depth, noise_depth, "depth")
        if rgb_mask is not None:
            x_rgb = keep_unmasked(x_rgb, _noised(s_rgb, clean_rgb, noise_rgb, "rgb"), rgb_mask)
        if depth_mask is not None:
            x_depth = keep_unmasked(x_depth, _noised(s_depth, clean_depth, noise_depth, "depth"), depth_mask)
        t_rgb = torch.full((pairs,), s_rgb, dtype=x_rgb.dtype, device=x_rgb.device)
        t_depth = torch.full((pairs,), s_depth, dtype=x_depth.dtype, device=x_depth.device)
        v_rgb, v_depth = velocity_fn(x_rgb, x_depth, t_rgb, t_depth)
        x_rgb = x_rgb + (rgb_sigmas[i + 1] - s_rgb) * v_rgb
        x_depth = x_depth + (depth_sigmas[i + 1] - s_depth) * v_depth
        if i == plan.steps - 1:  # the kept part ends exactly at the clean latent (noised to a non-zero end level)
            if rgb_mask is not None:
                x_rgb = keep_unmasked(x_rgb, _noised(rgb_sigmas[-1], clean_rgb, noise_rgb, "rgb"), rgb_mask)
            if depth_mask is not None:
                x_depth = keep_unmasked(x_depth, _noised(depth_sigmas[-1], clean_depth, noise_depth, "depth"), depth_mask)
        if callback is not None:
            callback(SamplerStep(i, plan.steps, rgb_sigmas[i + 1], depth_sigmas[i + 1], x_rgb, x_depth, v_rgb, v_depth))
    return x_rgb, x_depth
