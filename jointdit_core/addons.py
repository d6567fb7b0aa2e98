"""The JointDiT addon weights: depth-branch LoRAs and joint layers, in the official key layout.

``JointAddons(config).state_dict()`` has exactly the names and shapes of the official addon file
(``jointdit_addons.safetensors`` of the official release, kaist-ami/JointDiT; docs/method.md §3, §4, §8), e.g.
``double_blocks.0.img_attn.qkv.lora_A.weight`` (r, hidden), ``double_blocks.0.joint1.weight``
(2*hidden, 2*hidden), ``txt_in.lora_B.weight`` (hidden, 1024).

Every linear layer is built from an ``operations`` namespace (``operations.Linear``), as ComfyUI builds
its models from ``comfy.ops``; the core default :class:`CoreOperations` uses :class:`CastLinear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FluxConfig, LoraRanks


class CastLinear(nn.Linear):
    """``nn.Linear`` that uses its weight and bias in the input's dtype and device.

    So bf16 addons run on float32 inputs (and the reverse), and weights kept on another device follow
    the input, as ComfyUI's ``comfy.ops.manual_cast.Linear`` does.
    """

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(device=x.device, dtype=x.dtype)
        return F.linear(x, self.weight.to(device=x.device, dtype=x.dtype), bias)


class CoreOperations:
    """The op classes of the core (ComfyUI passes ``comfy.ops.manual_cast`` or ``pick_operations(...)``)."""

    Linear = CastLinear


class LoRA(nn.Module):
    """Low-rank update ``scale * B(A x)`` with ``scale = alpha / r = 0.5`` (official alpha = r / 2).

    Calling it gives the update only (not ``W x``): (..., in_features) -> (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, operations=CoreOperations):
        super().__init__()
        self.lora_A = operations.Linear(in_features, rank, bias=False)
        self.lora_B = operations.Linear(rank, out_features, bias=False)
        self.scale = 0.5

    def forward(self, x: Tensor) -> Tensor:
        return self.lora_B(self.lora_A(x)) * self.scale

    def reset_parameters_official(self) -> None:
        """Official initialisation: A xavier-uniform, B zero (so the update starts at zero)."""
        nn.init.xavier_uniform_(self.lora_A.weight)
        nn.init.zeros_(self.lora_B.weight)


class ModulationAddons(nn.Module):
    """LoRA of a block's modulation linear (``*_mod.lin`` / ``modulation.lin``)."""

    def __init__(self, hidden: int, chunks: int, rank: int, operations):
        super().__init__()
        self.lin = LoRA(hidden, chunks * hidden, rank, operations)


class AttentionAddons(nn.Module):
    """LoRAs of a double block's attention linears (``*_attn.qkv``, ``*_attn.proj``)."""

    def __init__(self, hidden: int, rank: int, operations):
        super().__init__()
        self.qkv = LoRA(hidden, 3 * hidden, rank, operations)
        self.proj = LoRA(hidden, hidden, rank, operations)


class VectorInAddons(nn.Module):
    """LoRAs of the pooled-text embedder ``vector_in`` (``in_layer``, ``out_layer``)."""

    def __init__(self, config: FluxConfig, ranks: LoraRanks, operations):
        super().__init__()
        h = config.hidden_size
        self.in_layer = LoRA(config.vec_in_dim, h, ranks.vector_in_in_layer, operations)
        self.out_layer = LoRA(h, h, ranks.vector_in_out_layer, operations)


class DoubleBlockAddons(nn.Module):
    """Addons of one double-stream block: LoRAs of its linears and the joint layer ``joint1``."""

    def __init__(self, hidden: int, rank: int, operations):
        super().__init__()
        self.img_mod = ModulationAddons(hidden, 6, rank, operations)
        self.img_attn = AttentionAddons(hidden, rank, operations)
        self.txt_mod = ModulationAddons(hidden, 6, rank, operations)
        self.txt_attn = AttentionAddons(hidden, rank, operations)
        self.joint1 = operations.Linear(2 * hidden, 2 * hidden, bias=True)


class SingleBlockAddons(nn.Module):
    """Addons of one single-stream block: LoRAs of ``linear1`` and ``modulation.lin``, the joint layer ``joint2``."""

    def __init__(self, hidden: int, mlp_hidden: int, rank: int, operations):
        super().__init__()
        self.linear1 = LoRA(hidden, 3 * hidden + mlp_hidden, rank, operations)
        self.modulation = ModulationAddons(hidden, 3, rank, operations)
        self.joint2 = operations.Linear(2 * hidden, 2 * hidden, bias=True)


class JointAddons(nn.Module):
    """All trainable JointDiT weights for a base of the given config.

    Args:
        config: the base Flux config (hidden size, block counts, input widths).
        ranks: LoRA ranks (official: txt_in 1024, vector_in 512/1024, blocks 64).
        operations: namespace whose ``Linear`` builds every linear (default :class:`CoreOperations`).
    """

    def __init__(self, config: FluxConfig = FluxConfig(), ranks: LoraRanks = LoraRanks(), operations=None):
        super().__init__()
        operations = operations or CoreOperations
        h, r = config.hidden_size, ranks.blocks
        self.config, self.ranks = config, ranks
        self.txt_in = LoRA(config.context_in_dim, h, ranks.txt_in, operations)
        self.vector_in = VectorInAddons(config, ranks, operations)
        self.double_blocks = nn.ModuleList(DoubleBlockAddons(h, r, operations) for _ in range(config.depth))
        self.single_blocks = nn.ModuleList(
            SingleBlockAddons(h, config.mlp_hidden_dim, r, operations) for _ in range(config.depth_single_blocks)
        )
        self.reset_parameters_official()

    @torch.no_grad()
    def reset_parameters_official(self) -> None:
        """Start as the official trainer does: joint layers zero, LoRA B zero, LoRA A xavier-uniform."""
        for module in self.modules():
            if isinstance(module, LoRA):
                module.reset_parameters_official()
        joints = [b.joint1 for b in self.double_blocks] + [b.joint2 for b in self.single_blocks]
        for joint in joints:
            nn.init.zeros_(joint.weight)
            nn.init.zeros_(joint.bias)
