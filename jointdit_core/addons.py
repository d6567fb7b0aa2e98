"""The JointDiT addon weights: depth-branch LoRAs and joint layers, in the official key layout.

``JointAddons(config).state_dict()`` has exactly the names and shapes of the official addon file
(``jointdit_addons.safetensors``, spec sections 3-4 and ``official_keys.json``), e.g.
``double_blocks.0.img_attn.qkv.lora_A.weight`` (r, hidden), ``double_blocks.0.joint1.weight``
(2*hidden, 2*hidden), ``txt_in.lora_B.weight`` (hidden, 1024).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import FluxConfig, LoraRanks


class LoRA(nn.Module):
    """Low-rank update ``scale * B(A x)`` with ``scale = alpha / r = 0.5`` (official alpha = r / 2)."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.lora_A = nn.Linear(in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, out_features, bias=False)
        self.scale = 0.5

    def reset_parameters_official(self) -> None:
        """Official initialisation: A xavier-uniform, B zero (so the update starts at zero)."""
        nn.init.xavier_uniform_(self.lora_A.weight)
        nn.init.zeros_(self.lora_B.weight)


def _node(**children: nn.Module) -> nn.Module:
    node = nn.Module()
    for name, child in children.items():
        node.add_module(name, child)
    return node


def _joint_linear(hidden: int) -> nn.Linear:
    return nn.Linear(2 * hidden, 2 * hidden, bias=True)


class JointAddons(nn.Module):
    """All trainable JointDiT weights for a base of the given config.

    Args:
        config: the base Flux config (hidden size, block counts, input widths).
        ranks: LoRA ranks (official: txt_in 1024, vector_in 512/1024, blocks 64).
    """

    def __init__(self, config: FluxConfig = FluxConfig(), ranks: LoraRanks = LoraRanks()):
        super().__init__()
        h, r = config.hidden_size, ranks.blocks
        self.config, self.ranks = config, ranks
        self.txt_in = LoRA(config.context_in_dim, h, ranks.txt_in)
        self.vector_in = _node(
            in_layer=LoRA(config.vec_in_dim, h, ranks.vector_in_in_layer),
            out_layer=LoRA(h, h, ranks.vector_in_out_layer),
        )
        self.double_blocks = nn.ModuleList(
            _node(
                img_mod=_node(lin=LoRA(h, 6 * h, r)),
                img_attn=_node(qkv=LoRA(h, 3 * h, r), proj=LoRA(h, h, r)),
                txt_mod=_node(lin=LoRA(h, 6 * h, r)),
                txt_attn=_node(qkv=LoRA(h, 3 * h, r), proj=LoRA(h, h, r)),
                joint1=_joint_linear(h),
            )
            for _ in range(config.depth)
        )
        self.single_blocks = nn.ModuleList(
            _node(
                linear1=LoRA(h, 3 * h + config.mlp_hidden_dim, r),
                modulation=_node(lin=LoRA(h, 3 * h, r)),
                joint2=_joint_linear(h),
            )
            for _ in range(config.depth_single_blocks)
        )
        self.reset_parameters_official()

    @torch.no_grad()
    def reset_parameters_official(self) -> None:
        """Start as the official trainer does: joint layers zero, LoRA B zero, LoRA A xavier-uniform."""
        for module in self.modules():
            if isinstance(module, LoRA):
                module.reset_parameters_official()
        for block in list(self.double_blocks) + list(self.single_blocks):
            joint = block.joint1 if hasattr(block, "joint1") else block.joint2
            nn.init.zeros_(joint.weight)
            nn.init.zeros_(joint.bias)
