"""JointDiT core: pure PyTorch implementation of the joint RGB-depth Flux transformer (no ComfyUI import)."""

from .addons import DoubleBlockAddons, JointAddons, LoRA, SingleBlockAddons
from .config import AutoEncoderConfig, FluxConfig, LoraRanks
from .flux import Flux
from .joint import AttentionFn, BranchLayout, JointInputs, adaptive_weights, joint_double_block, joint_single_block, sdpa_attention
from .model import JointDiT
from .sampler import SCHEDULES, BranchLevels, SamplingPlan, plan_sampling

__all__ = [
    "AttentionFn",
    "AutoEncoderConfig",
    "BranchLayout",
    "BranchLevels",
    "DoubleBlockAddons",
    "Flux",
    "FluxConfig",
    "JointAddons",
    "JointDiT",
    "JointInputs",
    "LoRA",
    "LoraRanks",
    "SCHEDULES",
    "SamplingPlan",
    "SingleBlockAddons",
    "adaptive_weights",
    "joint_double_block",
    "joint_single_block",
    "plan_sampling",
    "sdpa_attention",
]
