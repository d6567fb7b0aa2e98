"""A joint-aware step cache: skip a model evaluation when every denoising branch is predicted to change little.

The idea is EasyCache's (Zhou et al., "Less is Enough: Training-Free Video Diffusion Acceleration via
Runtime-Adaptive Caching", 2025; ComfyUI's ``comfy_extras/nodes_easycache.py``) and TeaCache's: between
two nearby steps a transformer's output changes roughly in proportion to its input, with a rate ``k``
measured on the last two fully computed steps. When the predicted relative output change since the last
computed step is under a threshold, the model is not run and the cached residual ``output - input`` of
that step is added to the new input instead.

What is joint about it (JointDiT, Kwon et al., ICCV 2025, runs an rgb and a depth branch at different
noise levels in one batch):

* the change is predicted **per branch** (its own rows, its own rate, its own cached residual);
* only the **denoising** branches decide: in depth estimation the rgb branch is held (a condition), its
  input never changes, and a measure over both branches would be diluted by it; in depth-to-image the
  depth branch is held; in joint generation both decide and a step is skipped only when *both* are
  under the threshold;
* the caching window (start / end percent) is read on each branch's own sigma;
* the state is kept per chunk key (ComfyUI's cond / uncond conditioning, each a set of rows), so CFG's
  two passes never share a residual; a model call is skipped only if every chunk in it may be skipped.

A threshold of 0 never skips (the predicted change is never negative), and the computed output is
returned as it is: the uncached result, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping, Sequence

import torch
from torch import Tensor

BRANCHES = ("rgb", "depth")


@dataclass(frozen=True)
class CacheSettings:
    """The user's choices.

    Attributes:
        threshold: skip while the predicted relative output change of every denoising branch since its
            last computed step is below this (0 = never skip; EasyCache's default is 0.2).
        start_percent, end_percent: caching is allowed while a branch's sigma is in
            ``(1 - end_percent, 1 - start_percent]``, i.e. on the part of that branch's own 1 -> 0
            noise range between the two percentages. Values in [0, 1], start <= end; default the whole
            range (the first two computed steps of a run measure the rate and are never skipped).
    Raises:
        ValueError: a negative threshold or percentages outside [0, 1] or in the wrong order.
    """

    threshold: float = 0.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"cache threshold must be >= 0 (0 = never skip); got {self.threshold}")
        if not 0 <= self.start_percent <= self.end_percent <= 1:
            raise ValueError(
                f"start_percent and end_percent must satisfy 0 <= start <= end <= 1; got {self.start_percent}, {self.end_percent}"
            )

    def in_window(self, sigma: float) -> bool:
        """True when caching is allowed at a branch sigma (in [0, 1])."""
        return 1.0 - self.end_percent < sigma <= 1.0 - self.start_percent


def reuse_decision(changes: Mapping[Hashable, float | None], threshold: float) -> bool:
    """True (reuse the cache) when there is at least one decider and every predicted change is under ``threshold``.

    Args:
        changes: per deciding (chunk, branch): its predicted relative output change, or None when it
            cannot be predicted (no rate measured yet, outside the caching window, new shape).
    """
    return bool(changes) and all(c is not None and c < threshold for c in changes.values())


def mean_abs(x: Tensor) -> float:
    return x.detach().float().abs().mean().item()


@dataclass
class BranchTrack:
    """One branch of one chunk: its last computed input/output, the measured rate and the cached residual."""

    x: Tensor
    out: Tensor
    rate: float | None = None

    def predicted_change(self, x: Tensor) -> float | None:
        """``rate * mean|x - x_last| / mean|out_last|`` (EasyCache's approximate output change rate)."""
        if self.rate is None or x.shape != self.x.shape:
            return None
        norm = mean_abs(self.out)
        return self.rate * mean_abs(x - self.x) / norm if norm > 0 else None

    def updated(self, x: Tensor, out: Tensor) -> "BranchTrack":
        """The track after a computed step: the rate ``mean|out - out_last| / mean|x - x_last|`` (kept if undefined)."""
        rate = self.rate
        if x.shape == self.x.shape:
            change = mean_abs(x - self.x)
            rate = mean_abs(out - self.out) / change if change > 0 else rate
        return BranchTrack(x, out, rate)

    def reused(self, x: Tensor) -> Tensor:
        return (x.to(self.out.dtype) + (self.out - self.x.to(self.out.dtype))).to(self.out.dtype)


@dataclass(frozen=True)
class Chunk:
    """Rows of one conditioning chunk in a model batch: ``rows[branch]`` a 1-D long tensor of row indices."""

    key: Hashable
    rows: Mapping[str, Tensor]


@dataclass
class JointStepCache:
    """Decides, per model call, whether to compute or to reuse; keeps the per-branch state of one sampling run.

    Args:
        settings: :class:`CacheSettings`.
        denoising: the branches being denoised in this run (a held branch, start sigma == end sigma, is
            left out: it never decides).
    Attributes:
        computed, reused: model calls computed / answered from the cache since the last :meth:`reset`.
    """

    settings: CacheSettings
    denoising: tuple[str, ...] = BRANCHES
    tracks: dict = field(default_factory=dict)
    computed: int = 0
    reused: int = 0

    def __post_init__(self):
        self.start(self.denoising)

    def start(self, denoising: Sequence[str]) -> None:
        """Begin a sampling run that denoises the branches ``denoising`` (the others are held): resets the state."""
        unknown = set(denoising) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown branches {sorted(unknown)}; branches are {BRANCHES}")
        self.denoising = tuple(denoising)
        self.reset()

    def reset(self) -> None:
        """Forget every cached tensor and the counts (call between sampling runs and after an interruption)."""
        self.tracks.clear()
        self.computed = self.reused = 0

    def changes(self, x: Tensor, sigma: Tensor, chunks: Sequence[Chunk]) -> dict:
        """The decision inputs: per (chunk key, denoising branch) its predicted change, None where unknown."""
        out = {}
        for chunk in chunks:
            for branch in self.denoising:
                rows = chunk.rows[branch]
                track = self.tracks.get((chunk.key, branch))
                in_window = self.settings.in_window(float(sigma[rows].max()))
                out[(chunk.key, branch)] = track.predicted_change(x[rows]) if track is not None and in_window else None
        return out

    def _from_cache(self, x: Tensor, chunks: Sequence[Chunk]) -> Tensor | None:
        """``x`` plus every branch's cached residual (held branches too), or None if a track is missing."""
        keys = [(chunk.key, branch, chunk.rows[branch]) for chunk in chunks for branch in BRANCHES]
        tracks = [self.tracks.get((key, branch)) for key, branch, _ in keys]
        if any(t is None or t.x.shape != x[rows].shape for t, (_, _, rows) in zip(tracks, keys)):
            return None
        out = torch.empty(x.shape, dtype=tracks[0].out.dtype, device=tracks[0].out.device)
        for track, (_, _, rows) in zip(tracks, keys):
            out[rows] = track.reused(x[rows])
        return out

    def __call__(self, compute: Callable[[], Tensor], x: Tensor, sigma: Tensor, chunks: Sequence[Chunk]) -> Tensor:
        """The model output for input ``x``: ``compute()`` or the cached residuals added to ``x``.

        Args:
            compute: runs the model on the whole batch, returns a tensor shaped like ``x``.
            x: (B, ...) the model input (latents or packed tokens).
            sigma: (B,) per-row sigmas in [0, 1].
            chunks: every row of ``x`` in exactly one chunk, with its rgb and depth rows.
        Returns:
            (B, ...) the output; ``compute()``'s tensor itself when computed.
        """
        if reuse_decision(self.changes(x, sigma, chunks), self.settings.threshold):
            out = self._from_cache(x, chunks)
            if out is not None:
                self.reused += 1
                return out
        out = compute()
        for chunk in chunks:
            for branch in BRANCHES:
                rows = chunk.rows[branch]
                x_b, out_b = x[rows].detach().clone(), out[rows].detach().clone()
                track = self.tracks.get((chunk.key, branch))
                self.tracks[(chunk.key, branch)] = BranchTrack(x_b, out_b) if track is None else track.updated(x_b, out_b)
        self.computed += 1
        return out


def pair_chunk(pairs: int, key: Hashable = 0, device=None) -> Chunk:
    """The chunk of a ``[P rgb rows, P depth rows]`` batch (the core sampler's layout)."""
    return Chunk(key, {"rgb": torch.arange(pairs, device=device), "depth": torch.arange(pairs, 2 * pairs, device=device)})


def denoising_branches(rgb_sigmas: Sequence[float], depth_sigmas: Sequence[float]) -> tuple[str, ...]:
    """The branches whose schedule moves (a constant schedule is a held branch, which never decides)."""
    return tuple(name for name, s in zip(BRANCHES, (rgb_sigmas, depth_sigmas)) if len(set(float(v) for v in s)) > 1)
