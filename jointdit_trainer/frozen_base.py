"""The frozen Flux base in less accelerator memory: float8 storage (``fp8_base``) and block swap (``blocks_to_swap``).

Both follow kohya-ss/sd-scripts (``--fp8_base``, ``--blocks_to_swap``, its ``custom_offloading_utils``):

* ``fp8_base``: every ``nn.Linear`` weight of the base is stored as ``float8_e4m3fn`` with one float32
  scale per tensor (``amax / 448``, 448 being e4m3fn's largest value; sd-scripts casts without a scale,
  the scale keeps small weights out of the subnormal range). Each layer casts its weight to the compute
  dtype when it runs, in the forward and again in the backward, so only one layer's full-precision copy
  exists at a time. Biases and norm scales (under 0.1% of the bytes) stay in the base dtype.
* ``blocks_to_swap`` N: the linear weights of the last N of the base's blocks (in execution order:
  the double-stream blocks, then the single-stream blocks) stay in CPU memory (pinned when CUDA is
  there) and are copied to the accelerator per layer when it runs, forward, recomputation and backward.
  With CUDA, entering a block starts the copy of the next block's weights on a side stream
  (:class:`BlockSwap`), so the copy overlaps the current block's compute.

The addons are untouched: they stay resident in their training dtype (float32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a layer computes in: autocast's dtype when autocast is on for ``x``'s device, else ``x``'s."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class _FrozenLinearFn(torch.autograd.Function):
    """``x @ W.T + b`` with a frozen ``W`` fetched (moved, cast, unscaled) in the forward and again in the
    backward, so the autograd graph holds no full-precision copy of ``W``; no gradient for ``W`` or ``b``."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: "FrozenLinear") -> Tensor:
        dtype = compute_dtype(x)
        ctx.layer, ctx.dtype = layer, dtype
        weight, bias = layer.fetch(x.device, dtype)
        return F.linear(x.to(dtype), weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, _ = ctx.layer.fetch(grad.device, ctx.dtype)
        return grad.to(ctx.dtype).matmul(weight), None


class FrozenLinear(nn.Linear):
    """A frozen ``nn.Linear`` whose weight may be float8 (with ``weight_scale``) and may live off the accelerator.

    Made from an ``nn.Linear`` by :func:`freeze_linear` (the module keeps its names, so state dict keys
    stay BFL's). Input (..., in_features) in any float dtype; output (..., out_features) in
    :func:`compute_dtype` of the input.
    """

    _ready: tuple | None = None  # (weight, bias, event) copied ahead on a side stream by BlockSwap

    def fetch(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """The weight (out, in) and bias (out,) on ``device`` in ``dtype``, the weight unscaled."""
        if self._ready is not None and device.type == "cuda":
            weight, bias, event = self._ready
            self._ready = None
            stream = torch.cuda.current_stream(device)
            stream.wait_event(event)
            for t in (weight, bias):
                if t is not None:
                    t.record_stream(stream)
        else:
            weight = self.weight.to(device, non_blocking=True)
            bias = None if self.bias is None else self.bias.to(device, non_blocking=True)
        weight = weight.to(dtype)
        scale = self._buffers.get("weight_scale")  # set by freeze_linear(fp8=True)
        if scale is not None:
            weight = weight * scale.to(device=device, dtype=dtype)
        return weight, None if bias is None else bias.to(dtype)

    def prefetch(self, device: torch.device) -> None:
        """Start copying weight and bias to ``device`` on the current (side) stream; :meth:`fetch` waits for it."""
        weight = self.weight.to(device, non_blocking=True)
        bias = None if self.bias is None else self.bias.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._ready = (weight, bias, event)

    def forward(self, x: Tensor) -> Tensor:
        return _FrozenLinearFn.apply(x, self)


def to_fp8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-tensor scaled float8: ``(q, scale)`` with ``q = (weight / scale)`` in float8_e4m3fn, ``scale = amax / 448``
    (float32 scalar; 1.0 for an all-zero tensor), so ``q.float() * scale`` approximates ``weight``."""
    w = weight.detach().float()
    amax = w.abs().max()
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


@torch.no_grad()
def freeze_linear(linear: nn.Linear, fp8: bool) -> FrozenLinear:
    """Turn ``linear`` (in place) into a :class:`FrozenLinear`; with ``fp8`` its weight becomes scaled float8."""
    linear.__class__ = FrozenLinear
    if fp8:
        q, scale = to_fp8(linear.weight)
        linear.weight = nn.Parameter(q, requires_grad=False)
        linear.register_buffer("weight_scale", scale)
    linear.requires_grad_(False)
    return linear


def base_blocks(base: nn.Module) -> list[nn.Module]:
    """The base's blocks in execution order: double-stream blocks, then single-stream blocks."""
    return [*base.double_blocks, *base.single_blocks]


class BlockSwap:
    """Copies the next swapped block's weights ahead on a side CUDA stream.

    A forward pre-hook on every block starts, on the side stream, the copy of the neighbouring block in
    the direction of travel (forward, or backward during the recomputation of gradient checkpointing)
    when that block is swapped. Without CUDA it does nothing (weights are copied when used).
    """

    def __init__(self, blocks: list[nn.Module], swapped: set[int], device: torch.device):
        self.device, self.swapped, self.last = device, swapped, None
        self.layers = [[m for m in b.modules() if isinstance(m, FrozenLinear)] for b in blocks]
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        if self.stream is not None:
            for i, block in enumerate(blocks):
                block.register_forward_pre_hook(lambda module, args, i=i: self.before(i))

    def before(self, index: int) -> None:
        step = 1 if self.last is None or index > self.last else -1
        self.last = index
        nxt = index + step
        if nxt in self.swapped:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                for layer in self.layers[nxt]:
                    layer.prefetch(self.device)


@torch.no_grad()
def place_frozen_base(base: nn.Module, device, fp8: bool = False, blocks_to_swap: int = 0) -> BlockSwap | None:
    """Store the frozen ``base`` (its weights on the CPU) for training on ``device``.

    Args:
        base: a :class:`~jointdit_core.flux.Flux` with loaded weights, frozen, on the CPU.
        fp8: store every linear weight as scaled float8_e4m3fn (:func:`to_fp8`).
        blocks_to_swap: keep the linear weights (and biases) of the last N blocks of :func:`base_blocks`
            in CPU memory, pinned when ``device`` is CUDA.
    Returns:
        The :class:`BlockSwap` of the swapped blocks, or None when none is swapped.
    Raises:
        ValueError: ``blocks_to_swap`` outside ``0..number of blocks - 1``.
    """
    device = torch.device(device)
    blocks = base_blocks(base)
    if not 0 <= blocks_to_swap < len(blocks):
        raise ValueError(f"blocks_to_swap must be in 0..{len(blocks) - 1} (this base has {len(blocks)} blocks), got {blocks_to_swap}")
    if fp8 or blocks_to_swap:
        for module in base.modules():
            if type(module) is nn.Linear:
                freeze_linear(module, fp8)
    swapped = set(range(len(blocks) - blocks_to_swap, len(blocks)))
    offloaded = {id(t) for i in swapped for m in blocks[i].modules() if isinstance(m, FrozenLinear) for t in (m.weight, m.bias) if t is not None}
    for module in base.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                if tensor is None:
                    continue
                if id(tensor) not in offloaded:
                    data = tensor.detach().to(device)
                else:
                    data = tensor.detach().pin_memory() if device.type == "cuda" else tensor.detach()
                store[name] = nn.Parameter(data, requires_grad=False) if store is module._parameters else data
    return BlockSwap(blocks, swapped, device) if swapped else None
