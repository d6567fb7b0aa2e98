"""Unbalanced timestep sampling (UTS), docs/method.md §7.

Per pair, a scenario is drawn uniformly from four slots (the official ``randint(0, 4)``):
slots 0 and 1 (probability 1/2) give both rows one shared "normal" timestep, slot 2 (1/4) gives
rgb a normal and depth a "small" timestep, slot 3 (1/4) gives rgb a small and depth a normal one.

normal: ``u = sigmoid(sigmoid_scale * N(0, 1))``, ``t = u*s / (1 + (s-1)*u)`` with s = 3.1582;
small: the same with s = 0.25 (skewed towards clean). Small and normal draws are independent.
Source: the official ``train.py`` and ``jointdit_utils.get_{small,normal}_timesteps`` ("shift"
timestep sampling of sd-scripts with ``--discrete_flow_shift 3.1582``).
"""

from __future__ import annotations

import torch
from torch import Tensor

NORMAL_SHIFT = 3.1582
SMALL_SHIFT = 0.25

SCENARIO_SHARED = 0  # both rows share one normal t (slots 0 and 1)
SCENARIO_DEPTH_SMALL = 2  # rgb normal, depth small
SCENARIO_RGB_SMALL = 3  # rgb small, depth normal


def shifted_logit_normal(n: int, shift: float, generator: torch.Generator | None = None, sigmoid_scale: float = 1.0) -> Tensor:
    """Draw ``n`` timesteps ``t = u*shift / (1 + (shift-1)*u)``, ``u = sigmoid(sigmoid_scale * N(0,1))``.

    Returns:
        (n,) float32 in (0, 1) on the generator's device (CPU when ``generator`` is None).
        The median is ``shift / (1 + shift)`` (u = 0.5).
    """
    device = generator.device if generator is not None else "cpu"
    u = torch.sigmoid(torch.randn(n, generator=generator, device=device) * sigmoid_scale)
    return u * shift / (1 + (shift - 1) * u)


def sample_timesteps(
    pairs: int,
    generator: torch.Generator | None = None,
    mode: str = "uts",
    normal_shift: float = NORMAL_SHIFT,
    small_shift: float = SMALL_SHIFT,
    sigmoid_scale: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Timesteps of the rgb and depth rows of ``pairs`` pairs.

    Args:
        pairs: number of rgb-depth pairs P.
        generator: torch RNG (its device is used); draws: scenario slots, small, normal, in that order.
        mode: "uts" (official, see module docstring) or "same" (ablation: every pair shares one
            normal timestep, i.e. scenario 0 always).
        normal_shift, small_shift, sigmoid_scale: distribution parameters (official 3.1582, 0.25, 1.0).

    Returns:
        ``(t_rgb, t_depth, scenario)``: two (P,) float32 tensors in (0, 1) (0 = clean, 1 = noise) and
        a (P,) int64 tensor of scenario slots in {0, 1, 2, 3} (0 and 1 mean shared).

    Raises:
        ValueError: unknown ``mode`` or ``pairs < 1``.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    if mode not in ("uts", "same"):
        raise ValueError(f"timestep mode must be 'uts' or 'same', got {mode!r}")
    device = generator.device if generator is not None else "cpu"
    if mode == "uts":
        scenario = torch.randint(0, 4, (pairs,), generator=generator, device=device)
    else:
        scenario = torch.zeros(pairs, dtype=torch.long, device=device)
    small = shifted_logit_normal(pairs, small_shift, generator, sigmoid_scale)
    normal = shifted_logit_normal(pairs, normal_shift, generator, sigmoid_scale)
    t_rgb = torch.where(scenario == SCENARIO_RGB_SMALL, small, normal)
    t_depth = torch.where(scenario == SCENARIO_DEPTH_SMALL, small, normal)
    return t_rgb, t_depth, scenario
