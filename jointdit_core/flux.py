"""A Flux-structured transformer in the BFL key layout (``flux1-dev.safetensors``), any size.

Module and parameter names follow black-forest-labs/flux so that ``Flux(config).state_dict()`` has
exactly the names and shapes of the official checkpoint. The block bodies live in
:mod:`jointdit_core.joint` (one implementation for plain and joint forwards).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .config import FluxConfig
from .joint import (
    AttentionFn,
    JointInputs,
    joint_double_block,
    joint_single_block,
    joint_txt_in,
    joint_vector_in,
    rope_embedding,
    sdpa_attention,
)


def timestep_embedding(t: Tensor, dim: int, max_period: int = 10000, time_factor: float = 1000.0) -> Tensor:
    """Sinusoidal embedding of ``time_factor * t`` (BFL): t (B,) in [0, 1] -> (B, dim) in t's float dtype."""
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb.to(t.dtype) if torch.is_floating_point(t) else emb


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim, bias=True)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(self.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        rrms = torch.rsqrt(torch.mean(x**2, dim=-1, keepdim=True) + 1e-6)
        return (x * rrms * self.scale.float()).to(dtype)


class QKNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


class SelfAttention(nn.Module):
    """Parameter holder (``qkv``, ``norm``, ``proj``); the blocks run the attention themselves."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)


class Modulation(nn.Module):
    def __init__(self, dim: int, double: bool):
        super().__init__()
        self.lin = nn.Linear(dim, (6 if double else 3) * dim, bias=True)


def _mlp(hidden: int, mlp_hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden))


class DoubleStreamBlock(nn.Module):
    def __init__(self, config: FluxConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads, self.hidden_size = config.num_heads, h
        for stream in ("img", "txt"):
            setattr(self, f"{stream}_mod", Modulation(h, double=True))
            setattr(self, f"{stream}_norm1", nn.LayerNorm(h, elementwise_affine=False, eps=1e-6))
            setattr(self, f"{stream}_attn", SelfAttention(h, config.num_heads, config.qkv_bias))
            setattr(self, f"{stream}_norm2", nn.LayerNorm(h, elementwise_affine=False, eps=1e-6))
            setattr(self, f"{stream}_mlp", _mlp(h, config.mlp_hidden_dim))

    def forward(self, img, txt, vec, pe, addon=None, joint: JointInputs | None = None, attention: AttentionFn = sdpa_attention):
        return joint_double_block(self, addon, img, txt, vec, pe, joint, attention)


class SingleStreamBlock(nn.Module):
    def __init__(self, config: FluxConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads, self.hidden_size, self.mlp_hidden_dim = config.num_heads, h, config.mlp_hidden_dim
        self.linear1 = nn.Linear(h, 3 * h + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(h + self.mlp_hidden_dim, h)
        self.norm = QKNorm(config.head_dim)
        self.pre_norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(h, double=False)

    def forward(self, x, vec, pe, addon=None, joint: JointInputs | None = None, attention: AttentionFn = sdpa_attention):
        return joint_single_block(self, addon, x, vec, pe, joint, attention)


class LastLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear((1 + scale[:, None, :]) * self.norm_final(x) + shift[:, None, :])


class Flux(nn.Module):
    """Flux transformer (rectified-flow velocity model) in the BFL layout.

    Args:
        config: sizes; ``FluxConfig()`` is FLUX.1-dev (11.9B parameters).
    """

    def __init__(self, config: FluxConfig = FluxConfig()):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.img_in = nn.Linear(config.in_channels, h)
        self.time_in = MLPEmbedder(256, h)
        self.vector_in = MLPEmbedder(config.vec_in_dim, h)
        if config.guidance_embed:
            self.guidance_in = MLPEmbedder(256, h)
        self.txt_in = nn.Linear(config.context_in_dim, h)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(config) for _ in range(config.depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(config) for _ in range(config.depth_single_blocks))
        self.final_layer = LastLayer(h, config.in_channels)
        self.gradient_checkpointing = False

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in the backward pass (training memory; no effect in eval mode)."""
        self.gradient_checkpointing = enabled

    def _run(self, fn, *args):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(
        self, img: Tensor, img_ids: Tensor, txt: Tensor, txt_ids: Tensor, timesteps: Tensor, y: Tensor, guidance: Tensor | None = None,
        joint: JointInputs | None = None, addons=None, attention: AttentionFn = sdpa_attention,
    ) -> Tensor:
        """Velocity prediction.

        Args:
            img: (B, L, in_channels) packed latent tokens (:func:`jointdit_core.latents.pack`).
            img_ids: (B, L, 3) positions; txt_ids: (B, T, 3) (zeros in the official release).
            txt: (B, T, context_in_dim) T5 token embeddings; y: (B, vec_in_dim) CLIP pooled vector.
            timesteps: (B,) t in [0, 1] (0 clean, 1 noise); embedded as 1000*t.
            guidance: (B,) distilled guidance (FLUX.1-dev: 3.5 at inference); required if guidance_embed.
            joint: JointDiT inputs (row layout, per-row timesteps, ASW strength); None runs plain Flux.
            addons: the :class:`~jointdit_core.addons.JointAddons`, needed with ``joint``.
            attention: the attention backend of every block (:data:`~jointdit_core.joint.AttentionFn`).
        Returns:
            (B, L, in_channels) velocity ``noise - x0`` prediction, dtype of the weights' compute.
        Raises:
            ValueError: guidance missing for a guidance-distilled model, wrong input ranks, or ``joint``
                without ``addons``.
        """
        if img.ndim != 3 or txt.ndim != 3:
            raise ValueError(f"img and txt must be (B, L, C); got {tuple(img.shape)} and {tuple(txt.shape)}")
        if joint is not None and addons is None:
            raise ValueError("a joint forward needs the JointDiT addons: pass addons= with joint=")
        addons = addons if joint is not None else None
        img = self.img_in(img)
        vec = self.time_in(timestep_embedding(timesteps, 256).to(img.dtype))
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("this Flux model is guidance-distilled: pass guidance (e.g. 3.5)")
            vec = vec + self.guidance_in(timestep_embedding(guidance, 256).to(img.dtype))
        vec = vec + joint_vector_in(self.vector_in, addons and addons.vector_in, y, joint)
        txt = joint_txt_in(self.txt_in, addons and addons.txt_in, txt, joint)
        pe = rope_embedding(torch.cat((txt_ids, img_ids), dim=1), self.config.axes_dim, self.config.theta)

        for i, block in enumerate(self.double_blocks):
            addon = addons.double_blocks[i] if addons is not None else None
            img, txt = self._run(block, img, txt, vec, pe, addon, joint, attention)
        x = torch.cat((txt, img), dim=1)
        for i, block in enumerate(self.single_blocks):
            addon = addons.single_blocks[i] if addons is not None else None
            x = self._run(block, x, vec, pe, addon, joint, attention)
        return self.final_layer(x[:, txt.shape[1] :], vec)
