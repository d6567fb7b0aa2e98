"""The JointDiT block math, written once.

The functions here run one Flux block (double- or single-stream) on any module with the BFL block
structure (attributes ``img_mod.lin``, ``img_norm1``, ``img_attn.qkv``, ``img_attn.norm``,
``img_attn.proj``, ``img_mlp``, ``txt_*``; ``modulation.lin``, ``pre_norm``, ``linear1``, ``linear2``,
``norm``, ``mlp_act``), so the same code drives our own :class:`~jointdit_core.flux.Flux`, ComfyUI's
Flux module and the trainer. Without a :class:`JointInputs` they compute plain Flux.

With one, they add what JointDiT adds (the paper, JointDiT by Byung-Ki Kwon et al., ICCV 2025, and the
official code, kaist-ami/JointDiT; summarised in docs/method.md §3 and §4):

* depth-branch LoRA: depth rows run ``W x + b + 0.5 * B(A x)``, rgb rows run ``W x + b``;
* the joint connection: after QK-norm and RoPE, each row also attends to its partner row's keys and
  values (text tokens included); the two cross outputs of a pair are concatenated feature-wise, mixed
  by ``joint1`` / ``joint2`` (2*hidden -> 2*hidden) and split back;
* adaptive scheduling weights (ASW): each row's joint part is scaled by
  ``sigmoid(3 * (t_self / (t_self + t_other) - 0.5))`` so the noisier branch listens more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ASW_SHARPNESS = 3.0  # official: sigmoid(3 * (w - 0.5))


# ----------------------------------------------------------------------------- row layout


@dataclass
class BranchLayout:
    """Which rows of a batch are rgb and which are depth, pair by pair.

    Pair ``p`` is rows ``rgb_rows[p]`` (rgb branch) and ``depth_rows[p]`` (depth branch). The official
    layout (:meth:`official`) puts all rgb rows first: ``[rgb_0..rgb_{P-1}, depth_0..depth_{P-1}]``.
    Any other arrangement (e.g. ComfyUI's cond/uncond stacking) works as long as every row belongs to
    exactly one pair.

    Raises:
        ValueError: rows not covering ``0..B-1`` exactly once, or rgb/depth counts differ.
    """

    rgb_rows: Tensor
    depth_rows: Tensor
    _slices: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.rgb_rows = torch.as_tensor(self.rgb_rows, dtype=torch.long).flatten()
        self.depth_rows = torch.as_tensor(self.depth_rows, dtype=torch.long).flatten()
        if self.rgb_rows.numel() != self.depth_rows.numel() or self.rgb_rows.numel() == 0:
            raise ValueError(
                f"a joint batch needs as many rgb rows as depth rows (got {self.rgb_rows.numel()} and "
                f"{self.depth_rows.numel()})"
            )
        rows = torch.cat([self.rgb_rows, self.depth_rows]).sort().values
        if not torch.equal(rows, torch.arange(rows.numel())):
            raise ValueError(f"rgb_rows and depth_rows must cover rows 0..{rows.numel() - 1} once each")
        p = self.pairs
        if torch.equal(self.rgb_rows, torch.arange(p)) and torch.equal(self.depth_rows, torch.arange(p, 2 * p)):
            self._slices = (slice(0, p), slice(p, 2 * p))

    @classmethod
    def official(cls, pairs: int) -> "BranchLayout":
        """All rgb rows, then all depth rows (the layout of the official forward)."""
        return cls(torch.arange(pairs), torch.arange(pairs, 2 * pairs))

    @property
    def pairs(self) -> int:
        return self.rgb_rows.numel()

    @property
    def rows(self) -> int:
        return 2 * self.pairs

    def rgb(self, x: Tensor) -> Tensor:
        """Rows of the rgb branch, pair order: (P, ...)."""
        return x[self._slices[0]] if self._slices else x.index_select(0, self.rgb_rows.to(x.device))

    def depth(self, x: Tensor) -> Tensor:
        """Rows of the depth branch, pair order: (P, ...)."""
        return x[self._slices[1]] if self._slices else x.index_select(0, self.depth_rows.to(x.device))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(rgb(x), depth(x))`` in one op. In the official layout this is ``torch.split``, whose backward
        is one concatenation, where two slices would each fill a zero tensor of ``x``'s size (training)."""
        if self._slices:
            return tuple(x.split(self.pairs))
        return self.rgb(x), self.depth(x)

    def merge(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """Inverse of :meth:`rgb` / :meth:`depth`: (P, ...) + (P, ...) -> (2P, ...) in row order."""
        if self._slices:
            return torch.cat([rgb, depth])
        out = rgb.new_empty((self.rows, *rgb.shape[1:]))
        out[self.rgb_rows.to(rgb.device)] = rgb
        out[self.depth_rows.to(rgb.device)] = depth
        return out

    def partner(self, x: Tensor) -> Tensor:
        """Each row replaced by the other row of its pair: (2P, ...)."""
        return self.merge(self.depth(x), self.rgb(x))

    def add_to_depth(self, out: Tensor, delta: Tensor) -> Tensor:
        """``out`` with ``delta`` (P, ...) added to the depth rows (out of place, autograd-safe)."""
        if self._slices:
            rgb, depth = self.split(out)
            return torch.cat([rgb, depth + delta])
        return out.index_add(0, self.depth_rows.to(out.device), delta.to(out.dtype))


def adaptive_weights(t_self: Tensor, t_other: Tensor, strength: float = 1.0) -> Tensor:
    """Adaptive scheduling weight of each row's joint-connection output (the paper's ASW; method §4).

    ``sigmoid(3 * strength * (t_self / (t_self + t_other) - 0.5))``. The official formula is 0/0 when
    both timesteps are 0; there the ratio is defined as 0.5 (the limit along t_self = t_other), giving
    0.5, so the weight is finite everywhere. ``strength`` 1 is the official weighting, 0 switches ASW
    off (a constant 0.5 for every row, the value at equal timesteps).

    Args:
        t_self, t_other: (B,) timesteps in [0, 1] of the row and of its partner row.
    Returns:
        (B,) weights in (0, 1), dtype of ``t_self``.
    """
    total = t_self + t_other
    ratio = torch.where(total > 0, t_self / torch.where(total > 0, total, torch.ones_like(total)), 0.5)
    return torch.sigmoid(ASW_SHARPNESS * strength * (ratio - 0.5))


@dataclass
class JointInputs:
    """What a joint forward needs beyond plain Flux inputs and the addons.

    Args:
        layout: the rgb/depth rows of the batch.
        timesteps: (B,) per-row timesteps in [0, 1] (row order), used by the adaptive weights.
        asw_strength: 1.0 official adaptive weights, 0.0 off (constant 0.5).
    Attributes:
        row_weights: (B,) float32 adaptive weight of each row's joint part (:func:`adaptive_weights`),
            computed from the above.
    Raises:
        ValueError: ``timesteps`` does not have one value per row of ``layout``.
    """

    layout: BranchLayout
    timesteps: Tensor
    asw_strength: float = 1.0
    row_weights: Tensor = field(init=False)

    def __post_init__(self):
        t = self.timesteps.flatten().float()
        if t.numel() != self.layout.rows:
            raise ValueError(f"{t.numel()} timesteps for a joint batch of {self.layout.rows} rows")
        self.row_weights = adaptive_weights(t, self.layout.partner(t), self.asw_strength)


# ----------------------------------------------------------------------------- attention

AttentionFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""An attention backend: q, k, v (B, H, L, D) -> (B, L, H*D), heads merged (no mask, no scale change)."""


def _merge_heads(x: Tensor) -> Tensor:
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The core's attention backend: ``F.scaled_dot_product_attention``, heads merged.

    q: (B, H, Lq, D), k and v: (B, H, Lk, D) -> (B, Lq, H*D).
    """
    return _merge_heads(F.scaled_dot_product_attention(q, k, v))


# ----------------------------------------------------------------------------- primitives


def add_lora(out: Tensor, lora, x: Tensor, joint: JointInputs | None) -> Tensor:
    """``out`` plus the depth-branch LoRA update ``lora(x)`` on the depth rows (rgb rows unchanged).

    Args:
        out: (B, ..., out_features) the base layer's output; x: (B, ..., in_features) its input.
        lora: a :class:`~jointdit_core.addons.LoRA` (called, so ComfyUI's ops cast or offload it), or None.
    Returns:
        ``out`` unchanged when ``joint`` or ``lora`` is None, else a new tensor.
    """
    if joint is None or lora is None:
        return out
    return joint.layout.add_to_depth(out, lora(joint.layout.depth(x)))


def lora_linear(linear, lora, x: Tensor, joint: JointInputs | None) -> Tensor:
    """``linear(x)`` for every row plus the depth-branch LoRA update on depth rows (method §3)."""
    return add_lora(linear(x), lora, x, joint)


def rope(pos: Tensor, dim: int, theta: int) -> Tensor:
    """Rotary tables for one axis (BFL): pos (B, L) -> (B, L, dim/2, 2, 2) float32."""
    scale = torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim
    omega = 1.0 / (theta**scale)
    out = pos.to(torch.float64)[..., None] * omega
    out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], dim=-1)
    return out.reshape(*out.shape[:-1], 2, 2).float()


def rope_embedding(ids: Tensor, axes_dim, theta: int) -> Tensor:
    """Flux positional embedding ``pe``: ids (B, L, n_axes) -> (B, 1, L, head_dim/2, 2, 2)."""
    return torch.cat([rope(ids[..., i], d, theta) for i, d in enumerate(axes_dim)], dim=-3).unsqueeze(1)


def apply_rope(xq: Tensor, xk: Tensor, pe: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate queries and keys (B, H, L, D) by ``pe`` (BFL ``apply_rope``), computed in float32."""
    xq_ = xq.float().reshape(*xq.shape[:-1], -1, 1, 2)
    xk_ = xk.float().reshape(*xk.shape[:-1], -1, 1, 2)
    xq_out = pe[..., 0] * xq_[..., 0] + pe[..., 1] * xq_[..., 1]
    xk_out = pe[..., 0] * xk_[..., 0] + pe[..., 1] * xk_[..., 1]
    return xq_out.reshape(*xq.shape).type_as(xq), xk_out.reshape(*xk.shape).type_as(xk)


def _heads(x: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, L, 3*H*D) -> q, k, v each (B, H, L, D)."""
    b, length, _ = x.shape
    q, k, v = x.reshape(b, length, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v


def joint_attention(q: Tensor, k: Tensor, v: Tensor, pe: Tensor, joint: JointInputs | None, joint_linear, attention: AttentionFn = sdpa_attention) -> Tensor:
    """Self-attention over all tokens of each row, plus (joint) the weighted joint-connection output.

    Three calls of ``attention`` when joint (self, rgb -> depth, depth -> rgb), one otherwise.

    Args:
        q, k, v: (B, H, L, D) after QK-norm, before RoPE.
        pe: (B or 1, 1, L, D/2, 2, 2) rotary tables.
        joint_linear: the block's ``joint1``/``joint2`` linear (2*hidden -> 2*hidden), called if ``joint``.
        attention: the attention backend (:data:`AttentionFn`).
    Returns:
        (B, L, H*D)
    """
    q, k = apply_rope(q, k, pe)
    out = attention(q, k, v)
    if joint is None:
        return out
    layout = joint.layout
    # rgb queries attend to the depth row's keys/values and vice versa (views, no copies, in the official layout)
    (q_rgb, q_depth), (k_rgb, k_depth), (v_rgb, v_depth) = layout.split(q), layout.split(k), layout.split(v)
    cross_rgb = attention(q_rgb, k_depth, v_depth)
    cross_depth = attention(q_depth, k_rgb, v_rgb)
    mixed = joint_linear(torch.cat([cross_rgb, cross_depth], dim=-1))
    rgb_part, depth_part = mixed.chunk(2, dim=-1)
    weights = joint.row_weights.to(device=out.device, dtype=out.dtype)[:, None, None]
    return out + layout.merge(rgb_part, depth_part) * weights


def _modulation(mod_lin, lora, vec: Tensor, joint, parts: int) -> list[Tensor]:
    """Flux ``Modulation``: ``lin(silu(vec))`` split in ``parts`` chunks of (B, 1, hidden)."""
    return lora_linear(mod_lin, lora, F.silu(vec), joint)[:, None, :].chunk(parts, dim=-1)


# ----------------------------------------------------------------------------- blocks


def joint_double_block(block, addon, img: Tensor, txt: Tensor, vec: Tensor, pe: Tensor, joint: JointInputs | None = None, attention: AttentionFn = sdpa_attention):
    """One double-stream block (BFL ``DoubleStreamBlock``), joint when ``joint`` is given.

    Args:
        block: module with the BFL double-block attributes (ours or ComfyUI's).
        addon: the matching :class:`~jointdit_core.addons.DoubleBlockAddons` (``JointAddons.double_blocks[i]``;
            ignored when ``joint`` is None).
        img: (B, L_img, hidden), txt: (B, L_txt, hidden), vec: (B, hidden), pe: rotary tables for [txt, img].
        attention: the attention backend for all three attention calls (:data:`AttentionFn`).
    Returns:
        (img, txt) of the same shapes.
    """
    if joint is None:
        addon = None  # below, ``addon and addon.x`` is None without addons
    img_lora, txt_lora = addon and addon.img_attn, addon and addon.txt_attn
    img_shift1, img_scale1, img_gate1, img_shift2, img_scale2, img_gate2 = _modulation(
        block.img_mod.lin, addon and addon.img_mod.lin, vec, joint, 6
    )
    txt_shift1, txt_scale1, txt_gate1, txt_shift2, txt_scale2, txt_gate2 = _modulation(
        block.txt_mod.lin, addon and addon.txt_mod.lin, vec, joint, 6
    )
    heads = block.num_heads

    img_in = (1 + img_scale1) * block.img_norm1(img) + img_shift1
    img_q, img_k, img_v = _heads(lora_linear(block.img_attn.qkv, img_lora and img_lora.qkv, img_in, joint), heads)
    img_q, img_k = block.img_attn.norm(img_q, img_k, img_v)

    txt_in = (1 + txt_scale1) * block.txt_norm1(txt) + txt_shift1
    txt_q, txt_k, txt_v = _heads(lora_linear(block.txt_attn.qkv, txt_lora and txt_lora.qkv, txt_in, joint), heads)
    txt_q, txt_k = block.txt_attn.norm(txt_q, txt_k, txt_v)

    q = torch.cat((txt_q, img_q), dim=2)
    k = torch.cat((txt_k, img_k), dim=2)
    v = torch.cat((txt_v, img_v), dim=2)
    attn = joint_attention(q, k, v, pe, joint, addon and addon.joint1, attention)
    txt_attn, img_attn = attn.split([txt.shape[1], attn.shape[1] - txt.shape[1]], dim=1)

    img = img + img_gate1 * lora_linear(block.img_attn.proj, img_lora and img_lora.proj, img_attn, joint)
    img = img + img_gate2 * block.img_mlp((1 + img_scale2) * block.img_norm2(img) + img_shift2)
    txt = txt + txt_gate1 * lora_linear(block.txt_attn.proj, txt_lora and txt_lora.proj, txt_attn, joint)
    txt = txt + txt_gate2 * block.txt_mlp((1 + txt_scale2) * block.txt_norm2(txt) + txt_shift2)
    return img, txt


def joint_single_block(block, addon, x: Tensor, vec: Tensor, pe: Tensor, joint: JointInputs | None = None, attention: AttentionFn = sdpa_attention) -> Tensor:
    """One single-stream block (BFL ``SingleStreamBlock``) on x = [txt, img] tokens (B, L, hidden).

    ``addon``: the matching :class:`~jointdit_core.addons.SingleBlockAddons` (ignored when ``joint`` is None);
    ``attention``: the backend of its three attention calls.
    """
    if joint is None:
        addon = None
    shift, scale, gate = _modulation(block.modulation.lin, addon and addon.modulation.lin, vec, joint, 3)
    x_mod = (1 + scale) * block.pre_norm(x) + shift
    qkv, mlp = torch.split(
        lora_linear(block.linear1, addon and addon.linear1, x_mod, joint),
        [3 * block.hidden_size, block.mlp_hidden_dim],
        dim=-1,
    )
    q, k, v = _heads(qkv, block.num_heads)
    q, k = block.norm(q, k, v)
    attn = joint_attention(q, k, v, pe, joint, addon and addon.joint2, attention)
    return x + gate * block.linear2(torch.cat((attn, block.mlp_act(mlp)), dim=2))


def joint_txt_in(txt_in, addon, context: Tensor, joint: JointInputs | None = None) -> Tensor:
    """Text projection ``txt_in`` with the depth-branch LoRA (r=1024): (B, T, context) -> (B, T, hidden).

    ``addon``: ``JointAddons.txt_in`` (a :class:`~jointdit_core.addons.LoRA`), ignored when ``joint`` is None.
    """
    return lora_linear(txt_in, addon, context, joint)


def joint_vector_in(vector_in, addon, y: Tensor, joint: JointInputs | None = None) -> Tensor:
    """Pooled-text embedder ``vector_in`` (MLPEmbedder) with depth-branch LoRAs on both layers: (B, vec) -> (B, hidden).

    ``addon``: ``JointAddons.vector_in`` (a :class:`~jointdit_core.addons.VectorInAddons`), ignored when ``joint`` is None.
    """
    h = F.silu(lora_linear(vector_in.in_layer, addon and addon.in_layer, y, joint))
    return lora_linear(vector_in.out_layer, addon and addon.out_layer, h, joint)
