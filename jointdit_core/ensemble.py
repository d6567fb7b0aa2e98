"""Ensembling of affine-invariant disparity maps: N samples (seeds) -> one map and its uncertainty.

The reference is Marigold (Ke et al., CVPR 2024; ``MarigoldDepthPipeline.ensemble_depth`` in diffusers):
each member's disparity is only known up to a scale and a shift, so the members are first aligned to
each other by a per-member scale ``s_i`` and shift ``t_i`` solved jointly, then reduced pixel-wise by the
median (default) or the mean; the spread of the aligned members is the uncertainty (median absolute
deviation for the median, standard deviation for the mean); finally the result is min-max normalised to
[0, 1] and the uncertainty divided by the same range.

The joint alignment differs from Marigold's in how it is solved, not in what it asks for. Marigold
minimises the sum over member pairs of the RMS difference of the aligned maps (plus a small pull of the
result towards [0, 1]) with two BFGS steps of SciPy. Here the objective is the sum over pairs of the
*mean squared* difference,

    J(s, t) = sum_{i<j} mean_pixels((s_i x_i + t_i) - (s_j x_j + t_j))^2
            = N * sum_i mean_pixels((s_i x_i + t_i) - mean_k(s_k x_k + t_k))^2,

a quadratic form in (s, t); it is minimised exactly in closed form under the gauge constraints
``mean_i s_i = 1`` and ``mean_i t_i = 0`` (which rule out the trivial s = 0 and fix the global affine
freedom; members are min-max normalised first, so s and t act on comparable [0, 1] maps). Pure torch,
no SciPy, no iteration, deterministic; float64 for the 2N x 2N system.

Members that are exact affine copies of each other are aligned exactly (J = 0), whatever their scales
and shifts: :func:`align_members` returns the scales and shifts so a test can check that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

REDUCTIONS = ("median", "mean")


@dataclass(frozen=True)
class Ensemble:
    """Result of :func:`ensemble_disparity`.

    disparity: (B, H, W) float32 in [0, 1], near = 1 (N = 1: the member unchanged).
    uncertainty: (B, H, W) float32 >= 0, in the units of ``disparity`` (a fraction of its range);
        zeros for N = 1.
    """

    disparity: Tensor
    uncertainty: Tensor


def align_members(members: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Jointly align N affine-invariant maps of one image (the closed-form solve of the module docstring).

    Args:
        members: (N, H, W) float disparity maps (any affine range), N >= 1, finite.
    Returns:
        (aligned, scale, shift): aligned (N, H, W) float32 = ``scale[i] * members[i] + shift[i]``; scale,
        shift (N,) float64 in the units of the given members. (The gauge ``mean scale = 1, mean shift = 0``
        holds for the min-max normalised members the solve works on.) N = 1 gives the member min-max
        normalised to [0, 1].
    Raises:
        ValueError: not (N, H, W), or NaN / infinite values.
    """
    if members.ndim != 3:
        raise ValueError(f"ensemble members must be (N, H, W), got shape {tuple(members.shape)}")
    if not torch.isfinite(members).all():
        raise ValueError("an ensemble member contains NaN or infinite values")
    n = members.shape[0]
    raw = members.reshape(n, -1).double()
    lo = raw.min(dim=1).values
    span = raw.max(dim=1).values - lo
    span = torch.where(span > 0, span, torch.ones_like(span))
    x = (raw - lo[:, None]) / span[:, None]  # min-max normalised (a constant member: zeros)
    if n == 1:
        return x.reshape(members.shape).float(), 1.0 / span, -lo / span
    pixels = x.shape[1]
    centre = torch.eye(n, dtype=torch.float64) - 1.0 / n  # C = I - 11^T / N (symmetric, idempotent)
    gram = x @ x.T / pixels  # <x_k, x_l> / M
    means = x.mean(dim=1)  # <x_k, 1> / M
    # J / N = p^T Q p with p = (s, t): Q_ss = C * gram, Q_st[k, l] = C_kl * means_k, Q_tt = C (elementwise *).
    q = torch.cat(
        [torch.cat([centre * gram, centre * means[:, None]], dim=1), torch.cat([centre * means[None, :], centre], dim=1)],
        dim=0,
    )
    constraints = torch.zeros(2, 2 * n, dtype=torch.float64)
    constraints[0, :n] = 1.0 / n  # mean scale = 1
    constraints[1, n:] = 1.0 / n  # mean shift = 0
    kkt = torch.cat([torch.cat([2 * q, constraints.T], dim=1), torch.cat([constraints, torch.zeros(2, 2, dtype=torch.float64)], dim=1)])
    rhs = torch.zeros(2 * n + 2, dtype=torch.float64)
    rhs[2 * n] = 1.0
    # Minimum-norm least squares: also well defined when a constant member makes the system singular.
    solution = torch.linalg.lstsq(kkt, rhs[:, None], driver="gelsd").solution[:, 0]
    scale, shift = solution[:n], solution[n : 2 * n]
    aligned = scale[:, None] * x + shift[:, None]
    return aligned.reshape(members.shape).float(), scale / span, shift - scale * lo / span


def _median(x: Tensor) -> Tensor:
    """Median over dim 0, the mean of the two middle values for an even count (any tensor size, unlike torch.quantile)."""
    ordered = x.sort(dim=0).values
    n = x.shape[0]
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


def reduce_members(aligned: Tensor, reduction: str = "median") -> tuple[Tensor, Tensor]:
    """Pixel-wise reduction of aligned members (N, H, W) -> (value (H, W), spread (H, W)), both float32.

    "median": the median (for an even N the mean of the two middle values; Marigold's ``torch.median``
    takes the lower one, which for N = 2 makes the deviation always 0) and the median absolute deviation
    from it;
    "mean": the mean and the standard deviation (Bessel-corrected, as ``torch.std``; 0 for N = 1).

    Raises:
        ValueError: an unknown reduction.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown ensemble reduction {reduction!r}; choose one of {REDUCTIONS}")
    if reduction == "median":
        value = _median(aligned)
        spread = _median((aligned - value).abs())
    else:
        value = aligned.mean(dim=0)
        spread = aligned.std(dim=0) if aligned.shape[0] > 1 else torch.zeros_like(value)
    return value.float(), spread.float()


def ensemble_disparity(members: Tensor, reduction: str = "median") -> Ensemble:
    """Combine N disparity samples per image into one disparity map and an uncertainty map.

    Args:
        members: (N, B, H, W) or (N, H, W) float disparity maps (near = large), N >= 1 samples (e.g.
            seeds) of B images; each an affine-invariant prediction.
        reduction: "median" (Marigold's default) or "mean".
    Returns:
        :class:`Ensemble` with (B, H, W) maps ((1, H, W) for a 3-d input). N = 1: the member itself
        (not renormalised, so one sample equals a single run exactly) and zero uncertainty. N > 1: the
        jointly aligned members (:func:`align_members`) reduced pixel-wise (:func:`reduce_members`), then
        min-max normalised to [0, 1]; the uncertainty is the spread divided by the same range.
    Raises:
        ValueError: a wrong shape, NaN / infinite values, an unknown reduction.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown ensemble reduction {reduction!r}; choose one of {REDUCTIONS}")
    if members.ndim == 3:
        members = members[:, None]
    if members.ndim != 4 or members.shape[0] < 1:
        raise ValueError(f"ensemble members must be (N, B, H, W) with N >= 1, got shape {tuple(members.shape)}")
    if not torch.isfinite(members).all():
        raise ValueError("an ensemble member contains NaN or infinite values")
    if members.shape[0] == 1:
        return Ensemble(members[0].float(), torch.zeros_like(members[0], dtype=torch.float32))
    values, spreads = [], []
    for b in range(members.shape[1]):
        aligned, _, _ = align_members(members[:, b].cpu())
        value, spread = reduce_members(aligned, reduction)
        lo, hi = value.min(), value.max()
        span = (hi - lo).clamp_min(1e-6)
        values.append((value - lo) / span)
        spreads.append(spread / span)
    device = members.device
    return Ensemble(torch.stack(values).to(device), torch.stack(spreads).to(device))
