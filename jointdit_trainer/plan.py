"""``python -m jointdit_trainer plan``: the expected peak accelerator memory of a training run, part by part.

Counted exactly from the model's sizes (closed form over :class:`~jointdit_core.config.FluxConfig` and
:class:`~jointdit_core.config.LoraRanks`; tests compare them with the bytes of real and meta-device models):

* frozen base weights by dtype and placement: bf16/fp16/fp32, or with ``fp8_base`` the linear weights in
  float8_e4m3fn (1 byte) plus one float32 scale each, biases and norm scales in the base dtype; with
  ``blocks_to_swap`` N the linear weights and biases of the last N blocks in CPU memory, plus on the
  accelerator the next swapped block copied ahead and one layer's weight in the compute dtype;
* addon weights and their gradients (float32, the optimizer's master copy); with ``fused_backward_pass``
  one gradient at a time, the largest, with the two full-size temporaries Adafactor's update of it makes;
* Adafactor's state (transformers' ``Adafactor`` without momentum: a row and a column second-moment
  vector per matrix, a full one per vector, and a scalar ``RMS`` per parameter; float32).

Activations are an **estimate**: the bytes of the tensors autograd saves in one forward of a meta-device
model at the configured sizes (no memory is used), attention counted as a fused kernel saves it (q, k, v,
output, float32 log-sum-exp; no L x L matrix), activations in the compute dtype. With gradient checkpointing
the saved part is each block's input plus one block's saved tensors during its recomputation. Not counted:
the allocator's rounding and fragmentation, CUDA context and library workspaces (~0.5-1 GiB), float32
intermediates that CUDA autocast keeps (layer norms), the optimizer step's temporaries.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from dataclasses import dataclass, field

import torch

from jointdit_core.config import FluxConfig, LoraRanks

GIB = 2**30
CONTEXT_GIB = 0.75  # assumed CUDA context + cuBLAS/attention workspaces (typically 0.5-1 GiB), added when checking a budget


# ----------------------------------------------------------------------------- sizes in closed form


@dataclass
class LinearShape:
    out_features: int
    in_features: int
    bias: bool = True


@dataclass
class BaseShapes:
    """The base's linear layers and norm scales: outside the blocks, and per block (execution order)."""

    outer_linears: list[LinearShape]
    blocks: list[tuple[list[LinearShape], int]]  # (linears, norm scale elements) per block


def base_shapes(c: FluxConfig) -> BaseShapes:
    """Linear shapes of the BFL Flux (black-forest-labs/flux ``model.py``) for config ``c``."""
    h, m, d = c.hidden_size, c.mlp_hidden_dim, c.head_dim
    embedders = [LinearShape(h, c.in_channels), LinearShape(h, 256), LinearShape(h, h), LinearShape(h, c.vec_in_dim),
                 LinearShape(h, h), LinearShape(h, c.context_in_dim), LinearShape(c.in_channels, h), LinearShape(2 * h, h)]
    if c.guidance_embed:
        embedders += [LinearShape(h, 256), LinearShape(h, h)]
    stream = [LinearShape(6 * h, h), LinearShape(3 * h, h, c.qkv_bias), LinearShape(h, h), LinearShape(m, h), LinearShape(h, m)]
    double = (stream + stream, 2 * 2 * d)
    single = ([LinearShape(3 * h + m, h), LinearShape(h, h + m), LinearShape(3 * h, h)], 2 * d)
    return BaseShapes(embedders, [double] * c.depth + [single] * c.depth_single_blocks)


def addon_shapes(c: FluxConfig, ranks: LoraRanks) -> list[tuple[int, ...]]:
    """Shapes of every addon parameter (:class:`~jointdit_core.addons.JointAddons`): LoRA A (r, in), B (out, r);
    joint layers (2h, 2h) and (2h,)."""
    h, m, r = c.hidden_size, c.mlp_hidden_dim, ranks.blocks

    def lora(inp, out, rank):
        return [(rank, inp), (out, rank)]

    joint = [(2 * h, 2 * h), (2 * h,)]
    shapes = lora(c.context_in_dim, h, ranks.txt_in) + lora(c.vec_in_dim, h, ranks.vector_in_in_layer)
    shapes += lora(h, h, ranks.vector_in_out_layer)
    double = lora(h, 6 * h, r) + lora(h, 3 * h, r) + lora(h, h, r)
    shapes += (double + double + joint) * c.depth
    shapes += (lora(h, 3 * h + m, r) + lora(h, 3 * h, r) + joint) * c.depth_single_blocks
    return shapes


def adafactor_state_bytes(shapes: list[tuple[int, ...]]) -> int:
    """float32 bytes of transformers' ``Adafactor`` state (beta1 None): factored row + column vectors for
    tensors of 2 or more dims, a full ``exp_avg_sq`` otherwise, and the 0-dim ``RMS`` of every parameter."""
    total = 0
    for s in shapes:
        total += 4 * (math.prod(s[:-1]) + math.prod(s[:-2] + s[-1:])) if len(s) >= 2 else 4 * math.prod(s)
    return total + 4 * len(shapes)


def _linear_bytes(shape: LinearShape, weight_bytes: float, other_bytes: int, fp8: bool) -> float:
    return shape.out_features * shape.in_features * weight_bytes + shape.bias * shape.out_features * other_bytes + 4 * fp8


@dataclass
class WeightPlacement:
    """Base weight bytes: ``resident`` and ``cpu`` map a description ("float8_e4m3fn linear weights") to bytes;
    ``swap_buffers``: accelerator bytes for the block copied ahead and one layer's compute copy."""

    resident: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, int] = field(default_factory=dict)
    swap_buffers: int = 0


def base_weight_placement(c: FluxConfig, base_dtype: torch.dtype, fp8: bool = False, blocks_to_swap: int = 0) -> WeightPlacement:
    """Where the frozen base's bytes are with :func:`~jointdit_trainer.frozen_base.place_frozen_base`'s settings."""
    shapes = base_shapes(c)
    other = base_dtype.itemsize
    weight = 1 if fp8 else other
    wname = "float8_e4m3fn linear weights (+ float32 scales)" if fp8 else f"{str(base_dtype)[6:]} linear weights"
    oname = f"{str(base_dtype)[6:]} biases and norm scales"
    place = WeightPlacement()

    def add(where: dict, linears: list[LinearShape]):
        where[wname] = where.get(wname, 0) + sum(s.out_features * s.in_features * weight for s in linears)
        where[oname] = where.get(oname, 0) + sum(s.out_features for s in linears if s.bias) * other

    place.resident = {wname: 0, oname: 0}
    first_swapped = len(shapes.blocks) - blocks_to_swap
    for i, (linears, norms) in enumerate([(shapes.outer_linears, 0), *shapes.blocks], start=-1):
        add(place.resident if i < first_swapped else place.cpu, linears)
        place.resident[oname] += norms * other  # norm scales stay on the accelerator
        place.resident[wname] += 4 * fp8 * len(linears)  # and so do the fp8 scales
    if fp8 or blocks_to_swap:
        swapped = shapes.blocks[first_swapped:]
        ahead = max((sum(_linear_bytes(s, weight, other, fp8) for s in ls) for ls, _ in swapped), default=0)
        largest = max(s.out_features * s.in_features for ls, _ in shapes.blocks for s in ls)
        place.swap_buffers = int(ahead + (2 if fp8 else 1) * largest * other)  # cast, then scaled (fp8)
    return place


# ----------------------------------------------------------------------------- activations (estimate)


class _FusedAttentionCount(torch.autograd.Function):
    """Stands in for a fused attention kernel on the meta device: saves what flash / memory-efficient
    attention saves (q, k, v, the output and a float32 log-sum-exp per query), no L x L matrix."""

    @staticmethod
    def forward(ctx, q, k, v):
        b, heads, length, d = q.shape
        out = q.new_empty(b, length, heads * d)
        ctx.save_for_backward(q, k, v, out, q.new_empty(b, heads, length, dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - never run, the count needs only the forward
        q, k, v, _, _ = ctx.saved_tensors
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)


@functools.lru_cache(maxsize=32)
def saved_activation_bytes(c: FluxConfig, ranks: LoraRanks, resolution: int, t5_tokens: int, dtype: torch.dtype = torch.bfloat16) -> tuple[int, list[int], int]:
    """Bytes autograd saves in one training forward of ONE rgb/depth pair (a meta-device run, no memory used).

    Returns:
        ``(outside, per_block, block_input)``: bytes saved outside the blocks, by each block (execution
        order), and one block's input (the part gradient checkpointing keeps per block).
    """
    from jointdit_core.latents import image_ids, text_ids
    from jointdit_core.model import JointDiT

    with torch.device("meta"):
        model = JointDiT(c, ranks)
    model.base.to(dtype)
    model.freeze_base()
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    owner, saved = [-1], {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in params and key not in saved:
            saved[key] = (owner[0], t.untyped_storage().nbytes())
        return t

    blocks = [*model.base.double_blocks, *model.base.single_blocks]
    for i, block in enumerate(blocks):
        block.register_forward_pre_hook(lambda mod, args, i=i: owner.__setitem__(0, i))
        block.register_forward_hook(lambda mod, args, out: owner.__setitem__(0, -1))
    side = resolution // 16
    with torch.device("meta"):
        args = (torch.empty(2, side * side, c.in_channels, dtype=dtype), image_ids(2, 2 * side, 2 * side, device="meta"),
                torch.empty(2, t5_tokens, c.context_in_dim, dtype=dtype), text_ids(2, t5_tokens, device="meta"),
                torch.rand(2), torch.empty(2, c.vec_in_dim, dtype=dtype), torch.ones(2) if c.guidance_embed else None)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*args, attention=_FusedAttentionCount.apply)
    per_block = [sum(n for o, n in saved.values() if o == i) for i in range(len(blocks))]
    outside = sum(n for o, n in saved.values() if o == -1)
    block_input = 2 * (side * side + t5_tokens) * c.hidden_size * dtype.itemsize
    return outside, per_block, block_input


def activation_bytes(c: FluxConfig, ranks: LoraRanks, resolution: int, pairs: int, t5_tokens: int, checkpointing: bool, dtype=torch.bfloat16) -> int:
    """Estimated activation bytes of ``pairs`` pairs (linear in pairs): all saved tensors without
    checkpointing; with it, every block's input plus the largest block's saved tensors (its recomputation)."""
    outside, per_block, block_input = saved_activation_bytes(c, ranks, resolution, t5_tokens, dtype)
    if checkpointing:
        per_pair = outside + len(per_block) * block_input + max(per_block)
    else:
        per_pair = outside + sum(per_block)
    return pairs * per_pair


# ----------------------------------------------------------------------------- the plan


@dataclass
class Settings:
    resolution: int
    pairs: int
    fp8_base: bool
    blocks_to_swap: int
    checkpointing: bool = True
    fused_backward: bool = False


def memory_parts(c: FluxConfig, ranks: LoraRanks, s: Settings, base_dtype=torch.bfloat16, t5_tokens: int = 512) -> list[tuple[str, int]]:
    """(part, accelerator bytes) of one training step; the expected peak is their sum."""
    place = base_weight_placement(c, base_dtype, s.fp8_base, s.blocks_to_swap)
    addons = addon_shapes(c, ranks)
    addon_bytes = 4 * sum(math.prod(x) for x in addons)
    parts = [(f"base: {k}", v) for k, v in place.resident.items()]
    if place.swap_buffers:
        parts.append(("base: block copied ahead + one layer in the compute dtype", place.swap_buffers))
    # fused: one gradient at a time, with Adafactor's two full-size temporaries for it (grad^2, the factored estimate)
    grads = 3 * 4 * max(math.prod(x) for x in addons) if s.fused_backward else addon_bytes
    parts += [("addon weights (float32)", addon_bytes),
              ("addon gradients (float32" + (", one at a time + 2 Adafactor temporaries: fused backward pass)" if s.fused_backward else ")"), grads),
              ("Adafactor state (float32)", adafactor_state_bytes(addons)),
              (f"activations, {s.pairs} pair(s) at {s.resolution}px ({'with' if s.checkpointing else 'without'} checkpointing; estimate)",
               activation_bytes(c, ranks, s.resolution, s.pairs, t5_tokens, s.checkpointing, base_dtype))]
    return parts


def peak_bytes(c: FluxConfig, ranks: LoraRanks, s: Settings, base_dtype=torch.bfloat16, t5_tokens: int = 512) -> int:
    return sum(n for _, n in memory_parts(c, ranks, s, base_dtype, t5_tokens))


def fitting_settings(c: FluxConfig, ranks: LoraRanks, budget_bytes: float, base_dtype=torch.bfloat16, t5_tokens: int = 512,
                     resolutions=(512, 1024), batches=(1, 2, 4)) -> list[tuple[Settings, int]]:
    """For each resolution, batch, base storage (as configured, fp8) and optimizer step (after the backward,
    fused into it), the fewest swapped blocks that fit ``budget_bytes`` (:data:`CONTEXT_GIB` added to the peak) with gradient checkpointing:
    ``[(settings, peak bytes)]``; combinations that fit with no number of swapped blocks are left out."""
    blocks = c.depth + c.depth_single_blocks
    found = []
    for resolution, pairs, fp8, fused in itertools.product(resolutions, batches, (False, True), (False, True)):
        for swap in range(blocks):
            s = Settings(resolution, pairs, fp8, swap, fused_backward=fused)
            peak = peak_bytes(c, ranks, s, base_dtype, t5_tokens)
            if peak + CONTEXT_GIB * GIB <= budget_bytes:
                found.append((s, peak))
                break
    return found


def _config_of(cfg) -> tuple[FluxConfig, str]:
    """The base's config from ``flux_path``'s header, or FLUX.1-dev when the file is not there."""
    from pathlib import Path

    from jointdit_core.checkpoint import read_safetensors_shapes, strip_prefix

    if cfg.flux_path and Path(cfg.flux_path).is_file():
        shapes = strip_prefix({k: v[0] for k, v in read_safetensors_shapes(cfg.flux_path).items()})
        return FluxConfig.from_state_dict(shapes), cfg.flux_path
    return FluxConfig(), "FLUX.1-dev sizes (flux_path not found)"


def print_plan(cfg, budget_gb: float, out=None) -> int:
    """Print the plan of ``cfg`` (a :class:`~jointdit_trainer.config.TrainConfig`) and the settings that fit
    ``budget_gb`` GiB; returns 0 when the configured run fits, 1 when it does not."""
    out = out or sys.stdout
    c, source = _config_of(cfg)
    ranks = LoraRanks(**cfg.lora_ranks)
    base_dtype = cfg.base_dtype
    s = Settings(cfg.resolution, cfg.train_batch_size, cfg.fp8_base, cfg.blocks_to_swap, cfg.gradient_checkpointing, cfg.fused_backward_pass)
    parts = memory_parts(c, ranks, s, base_dtype, cfg.t5_max_length)
    place = base_weight_placement(c, base_dtype, s.fp8_base, s.blocks_to_swap)
    print(f"model: {source}; LoRA ranks {ranks.to_dict()}; T5 tokens {cfg.t5_max_length}", file=out)
    print(f"configured: {s.pairs} pair(s) at {s.resolution}x{s.resolution}, base {cfg.mixed_precision}"
          f"{' stored fp8' if s.fp8_base else ''}, {s.blocks_to_swap} block(s) swapped, checkpointing {'on' if s.checkpointing else 'off'}"
          f"{', fused backward pass' if s.fused_backward else ''}", file=out)
    for name, n in parts:
        print(f"  {n / GIB:8.2f} GiB  {name}", file=out)
    peak = sum(n for _, n in parts)
    print(f"  {peak / GIB:8.2f} GiB  expected peak of allocated memory (activations estimated)", file=out)
    print(f"  {CONTEXT_GIB:8.2f} GiB  assumed CUDA context and workspaces (not allocated by torch)", file=out)
    for name, n in place.cpu.items():
        print(f"  {n / GIB:8.2f} GiB  in CPU memory: {name} of {s.blocks_to_swap} swapped block(s)", file=out)
    fits = peak + CONTEXT_GIB * GIB <= budget_gb * GIB
    print(f"\n{'fits' if fits else 'does NOT fit'} in {budget_gb:g} GiB. Settings that fit (gradient checkpointing on, fewest swapped blocks):", file=out)
    for f, p in fitting_settings(c, ranks, budget_gb * GIB, base_dtype, cfg.t5_max_length):
        print(f"  {f.resolution}x{f.resolution} batch {f.pairs}: fp8_base = {str(f.fp8_base).lower()}, "
              f"fused_backward_pass = {str(f.fused_backward).lower()}, blocks_to_swap = {f.blocks_to_swap}  -> {p / GIB:.1f} GiB", file=out)
    return 0 if fits else 1
