"""Model configurations: the Flux transformer, the JointDiT LoRA ranks and the Flux autoencoder.

Defaults are FLUX.1-dev and the official JointDiT release (kaist-ami/JointDiT; docs/method.md §1, §3).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Mapping


def _shape(value) -> tuple[int, ...]:
    """Shape of a tensor, a safetensors slice, or a plain list/tuple of ints."""
    if hasattr(value, "shape"):
        return tuple(value.shape)
    if hasattr(value, "get_shape"):
        return tuple(value.get_shape())
    return tuple(value)


def _count_blocks(keys, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


@dataclass(frozen=True)
class FluxConfig:
    """Hyper-parameters of a Flux-structured transformer (BFL ``FluxParams``); defaults are FLUX.1-dev.

    ``axes_dim`` must sum to ``hidden_size // num_heads`` (the RoPE head dimension).
    """

    in_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = True

    def __post_init__(self):
        object.__setattr__(self, "axes_dim", tuple(int(a) for a in self.axes_dim))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.axes_dim) != self.head_dim:
            raise ValueError(f"axes_dim {self.axes_dim} must sum to the head dimension {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["axes_dim"] = list(self.axes_dim)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "FluxConfig":
        """Build from a mapping; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FluxConfig fields: {sorted(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_state_dict(cls, state: Mapping, num_heads: int | None = None, axes_dim=None) -> "FluxConfig":
        """Infer the config from BFL-layout Flux weights.

        Args:
            state: name -> tensor (or safetensors slice, or shape) in the ``flux1-dev.safetensors`` layout.
            num_heads: the weights do not store the head count; by default it is taken from the QK-norm
                scale width (head_dim), which gives ``hidden_size // head_dim``.
            axes_dim: RoPE split of the head dimension; by default FLUX.1-dev's proportions
                (16, 56, 56) for head_dim 128, else ``(h - 2*(3h//8), 3h//8, 3h//8)`` rounded to even.

        Raises:
            ValueError: when a tensor that every Flux model has is missing (not a Flux file).
        """
        required = ["img_in.weight", "txt_in.weight", "vector_in.in_layer.weight", "final_layer.linear.weight"]
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"not a BFL-layout Flux state dict: missing {missing}")
        hidden, in_channels = _shape(state["img_in.weight"])
        head_dim = None
        for key in ("double_blocks.0.img_attn.norm.query_norm.scale", "single_blocks.0.norm.query_norm.scale"):
            if key in state:
                head_dim = _shape(state[key])[0]
                break
        if num_heads is None:
            num_heads = hidden // head_dim if head_dim else max(1, hidden // 128)
        head_dim = hidden // num_heads
        if axes_dim is None:
            if head_dim == 128:
                axes_dim = (16, 56, 56)
            else:
                side = (3 * head_dim // 8) // 2 * 2
                axes_dim = (head_dim - 2 * side, side, side)
        mlp_key = "double_blocks.0.img_mlp.0.weight"
        if mlp_key in state:
            mlp_ratio = _shape(state[mlp_key])[0] / hidden
        elif "single_blocks.0.linear1.weight" in state:
            mlp_ratio = (_shape(state["single_blocks.0.linear1.weight"])[0] - 3 * hidden) / hidden
        else:
            mlp_ratio = 4.0
        return cls(
            in_channels=in_channels,
            vec_in_dim=_shape(state["vector_in.in_layer.weight"])[1],
            context_in_dim=_shape(state["txt_in.weight"])[1],
            hidden_size=hidden,
            mlp_ratio=mlp_ratio,
            num_heads=num_heads,
            depth=_count_blocks(state.keys(), "double_blocks"),
            depth_single_blocks=_count_blocks(state.keys(), "single_blocks"),
            axes_dim=tuple(axes_dim),
            qkv_bias="double_blocks.0.img_attn.qkv.bias" in state or _count_blocks(state.keys(), "double_blocks") == 0,
            guidance_embed="guidance_in.in_layer.weight" in state,
        )


@dataclass(frozen=True)
class LoraRanks:
    """Depth-branch LoRA ranks of the official release (method §3); alpha = rank / 2 (scale 0.5)."""

    txt_in: int = 1024
    vector_in_in_layer: int = 512
    vector_in_out_layer: int = 1024
    blocks: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AutoEncoderConfig:
    """Flux autoencoder (``ae.safetensors``) hyper-parameters; defaults are FLUX.1's (16 latent channels, /8)."""

    resolution: int = 256
    in_channels: int = 3
    ch: int = 128
    out_ch: int = 3
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "ch_mult", tuple(int(c) for c in self.ch_mult))

    @property
    def downscale(self) -> int:
        """Spatial reduction from pixels to latent (8 for FLUX.1)."""
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["ch_mult"] = list(self.ch_mult)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "AutoEncoderConfig":
        return cls(**{k: v for k, v in d.items() if k != "extra"})

    @classmethod
    def from_state_dict(cls, state: Mapping, scale_factor: float = 0.3611, shift_factor: float = 0.1159) -> "AutoEncoderConfig":
        """Infer the architecture from ``ae.safetensors``-layout weights (scale/shift are not stored in the file).

        Raises:
            ValueError: when the encoder/decoder tensors of a Flux autoencoder are missing.
        """
        if "encoder.conv_in.weight" not in state or "decoder.conv_out.weight" not in state:
            raise ValueError("not a Flux autoencoder state dict: encoder.conv_in / decoder.conv_out missing")
        ch, in_channels = _shape(state["encoder.conv_in.weight"])[:2]
        levels = _count_blocks(state.keys(), "encoder.down")
        ch_mult = [_shape(state[f"encoder.down.{i}.block.0.conv1.weight"])[0] // ch for i in range(levels)]
        num_res_blocks = _count_blocks(state.keys(), "encoder.down.0.block")
        return cls(
            in_channels=in_channels,
            ch=ch,
            out_ch=_shape(state["decoder.conv_out.weight"])[0],
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            z_channels=_shape(state["decoder.conv_in.weight"])[1],
            scale_factor=scale_factor,
            shift_factor=shift_factor,
        )
