"""JointDiT core: pure PyTorch implementation of the joint RGB-depth Flux transformer (no ComfyUI import)."""

from .addons import JointAddons, LoRA
from .config import AutoEncoderConfig, FluxConfig, LoraRanks
from .flux import Flux
from .joint import BranchLayout, JointInputs, adaptive_weights, joint_double_block, joint_single_block
from .model import JointDiT

__all__ = [
    "AutoEncoderConfig",
    "BranchLayout",
    "Flux",
    "FluxConfig",
    "JointAddons",
    "JointDiT",
    "JointInputs",
    "LoRA",
    "LoraRanks",
    "adaptive_weights",
    "joint_double_block",
    "joint_single_block",
]
