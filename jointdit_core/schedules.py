"""Sigma (timestep) schedules from 1 (noise) towards 0 (clean) for rectified-flow sampling."""

from __future__ import annotations

import math
from typing import Sequence

import torch

BASE_SHIFT, MAX_SHIFT = 0.5, 1.15  # FLUX.1-dev: mu at 256 and at 4096 image tokens
BASE_TOKENS, MAX_TOKENS = 256, 4096


def flux_mu(token_count: int) -> float:
    """Flux-dev shift ``mu``, linear in the image token count: 0.5 at 256 tokens, 1.15 at 4096 (BFL ``get_lin_function``)."""
    slope = (MAX_SHIFT - BASE_SHIFT) / (MAX_TOKENS - BASE_TOKENS)
    return BASE_SHIFT + slope * (token_count - BASE_TOKENS)


def linear_schedule(steps: int) -> list[float]:
    """``linspace(1, 0, steps + 1)`` (computed in float32 like the official code).

    Raises:
        ValueError: steps < 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return torch.linspace(1, 0, steps + 1).tolist()


def flux_shifted_schedule(steps: int, token_count: int) -> list[float]:
    """The official FLUX.1-dev schedule (BFL ``get_schedule(shift=True)``, used by the official JointDiT sampler; method §5).

    ``t' = e^mu / (e^mu + (1/t - 1))`` applied to :func:`linear_schedule`, with ``mu = flux_mu(token_count)``.

    Args:
        steps: number of Euler steps (>= 1); the list has ``steps + 1`` sigmas, 1.0 first and 0.0 last.
        token_count: image tokens per row, ``(H/16) * (W/16)`` for an H x W image.
    """
    mu = flux_mu(token_count)
    return [0.0 if t <= 0 else math.exp(mu) / (math.exp(mu) + (1 / t - 1)) for t in linear_schedule(steps)]


def custom_schedule(sigmas: Sequence[float]) -> list[float]:
    """Validate a user-given list of sigmas (e.g. a ComfyUI SIGMAS input).

    Raises:
        ValueError: fewer than 2 values, values outside [0, 1] or NaN, or values that increase.
    """
    values = [float(s) for s in sigmas]
    if len(values) < 2:
        raise ValueError("a schedule needs at least two sigmas (start and end)")
    if any(not (0.0 <= s <= 1.0) for s in values):
        raise ValueError(f"sigmas must lie in [0, 1] (rectified flow); got {values}")
    if any(b > a for a, b in zip(values, values[1:])):
        raise ValueError(f"sigmas must not increase (noise -> clean); got {values}")
    return values


def rescale_schedule(sigmas: Sequence[float], start: float, end: float) -> list[float]:
    """Map a 1 -> 0 schedule onto ``start -> end``: ``end + (start - end) * s``.

    ``start == end`` gives a constant schedule: a branch held at that noise level (a condition).

    Raises:
        ValueError: start or end outside [0, 1], or start < end.
    """
    if not (0.0 <= end <= start <= 1.0):
        raise ValueError(f"need 0 <= end <= start <= 1 for a branch, got start={start}, end={end}")
    return [end + (start - end) * s for s in sigmas]
