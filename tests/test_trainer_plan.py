"""The memory planner's weight, gradient and optimizer bytes equal the bytes of real and meta-device models."""

import io
import math

import pytest
import torch
from torch import nn
from transformers.optimization import Adafactor

from jointdit_core import Flux, FluxConfig, JointDiT
from jointdit_core.config import LoraRanks
from jointdit_trainer.config import load_config
from jointdit_trainer.frozen_base import FrozenLinear, base_blocks, place_frozen_base
from jointdit_trainer.plan import Settings, adafactor_state_bytes, addon_shapes, base_weight_placement, memory_parts, print_plan
from trainer_tiny import TINY_FLUX, TINY_RANKS

TINY_FOUR_BLOCKS = FluxConfig(**{**TINY_FLUX.to_dict(), "depth": 2, "depth_single_blocks": 2})


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def module_tensors(module: nn.Module):
    return [*module.parameters(), *module.buffers()]


@pytest.mark.parametrize("fp8,swap", [(False, 0), (True, 0), (False, 3), (True, 2)])
def test_base_bytes_by_placement_equal_the_placed_tiny_model(fp8, swap):
    base = Flux(TINY_FOUR_BLOCKS).to(torch.bfloat16).requires_grad_(False)
    place_frozen_base(base, "meta", fp8=fp8, blocks_to_swap=swap)  # "meta" stands in for the accelerator
    plan = base_weight_placement(TINY_FOUR_BLOCKS, torch.bfloat16, fp8, swap)
    tensors = module_tensors(base)
    assert sum(plan.resident.values()) == tensor_bytes(t for t in tensors if t.device.type == "meta")
    assert sum(plan.cpu.values()) == tensor_bytes(t for t in tensors if t.device.type == "cpu")
    if swap:  # the block copied ahead: the largest swapped block's linears (weights, biases, scales)
        swapped = base_blocks(base)[-swap:]
        ahead = max(tensor_bytes(t for m in b.modules() if isinstance(m, FrozenLinear) for t in module_tensors(m)) for b in swapped)
        largest = max(m.weight.numel() for m in base.modules() if isinstance(m, nn.Linear))
        assert plan.swap_buffers == ahead + (2 if fp8 else 1) * largest * 2


def test_flux_dev_sized_bytes_equal_the_meta_model():
    with torch.device("meta"):
        model = JointDiT(FluxConfig())
    base = model.base.to(torch.bfloat16).requires_grad_(False)
    bf16 = base_weight_placement(FluxConfig(), torch.bfloat16)
    assert sum(bf16.resident.values()) == tensor_bytes(base.parameters())
    assert round(tensor_bytes(base.parameters()) / 2**30, 2) == 22.17
    swap = 20
    fp8 = base_weight_placement(FluxConfig(), torch.bfloat16, fp8=True, blocks_to_swap=swap)
    linears = [m for m in base.modules() if type(m) is nn.Linear]
    fp8_bytes = sum(m.weight.numel() + 4 for m in linears)  # 1 byte per weight + a float32 scale
    other = tensor_bytes(p for n, p in base.named_parameters() if not (n.endswith(".weight") and type(base.get_submodule(n[:-7])) is nn.Linear))
    assert sum(fp8.resident.values()) + sum(fp8.cpu.values()) == fp8_bytes + other
    swapped = [m for b in base_blocks(base)[-swap:] for m in b.modules() if type(m) is nn.Linear]
    assert sum(fp8.cpu.values()) == sum(m.weight.numel() + m.bias.numel() * 2 for m in swapped)

    addons = list(model.addons.parameters())
    assert [tuple(p.shape) for p in addons] == addon_shapes(FluxConfig(), LoraRanks())
    parts = dict(memory_parts(FluxConfig(), LoraRanks(), Settings(512, 1, False, 0)))
    assert parts["addon weights (float32)"] == parts["addon gradients (float32)"] == tensor_bytes(addons)
    fused = dict(memory_parts(FluxConfig(), LoraRanks(), Settings(512, 1, False, 0, fused_backward=True)))
    assert fused["addon gradients (float32, one at a time + 2 Adafactor temporaries: fused backward pass)"] == 3 * max(tensor_bytes([p]) for p in addons)
    for p in addons:
        p.grad = torch.empty_like(p)
    optimizer = Adafactor(addons, lr=1e-5, scale_parameter=False, relative_step=False, warmup_init=False)
    optimizer.step()  # runs on the meta device: allocates the state, computes nothing
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    assert parts["Adafactor state (float32)"] == tensor_bytes(state)


def test_tiny_training_step_gradients_and_optimizer_state_are_counted_exactly():
    ranks = LoraRanks(**TINY_RANKS)
    model = JointDiT(TINY_FLUX, ranks)
    model.freeze_base()
    optimizer = Adafactor(list(model.addons.parameters()), lr=1e-3, scale_parameter=False, relative_step=False, warmup_init=False)
    from jointdit_core.latents import image_ids, text_ids

    pred = model(torch.randn(2, 16, 64), image_ids(2, 8, 8), torch.randn(2, 4, 32), text_ids(2, 4), torch.rand(2),
                 torch.randn(2, 16), torch.ones(2))
    pred.square().mean().backward()
    grads = [p.grad for p in model.addons.parameters()]
    optimizer.step()
    parts = dict(memory_parts(TINY_FLUX, ranks, Settings(32, 1, False, 0), t5_tokens=4))
    assert all(g is not None for g in grads) and parts["addon gradients (float32)"] == tensor_bytes(grads)
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    assert parts["Adafactor state (float32)"] == tensor_bytes(state) == adafactor_state_bytes(addon_shapes(TINY_FLUX, ranks))


def test_activation_estimate_grows_with_pairs_and_resolution_and_shrinks_with_checkpointing():
    ranks = LoraRanks(**TINY_RANKS)

    def act(resolution, pairs, ckpt):
        parts = memory_parts(TINY_FLUX, ranks, Settings(resolution, pairs, False, 0, ckpt), t5_tokens=4)
        return next(n for name, n in parts if name.startswith("activations"))

    assert act(32, 2, True) == 2 * act(32, 1, True)
    assert act(64, 1, True) > act(32, 1, True)
    assert act(64, 1, False) > act(64, 1, True)


def test_plan_command_prints_parts_and_fitting_settings(tmp_path):
    cfg = load_config(overrides=["train_batch_size=1", "fp8_base=true", "blocks_to_swap=40"])
    out = io.StringIO()
    code = print_plan(cfg, 24, out)
    text = out.getvalue()
    assert "FLUX.1-dev sizes" in text and "float8_e4m3fn linear weights" in text and "in CPU memory" in text
    assert ("fits in 24 GiB" in text) == (code == 0)
    assert "512x512 batch 1: fp8_base = true, fused_backward_pass = true, blocks_to_swap =" in text


def test_plan_subcommand_exit_status_says_whether_it_fits(capsys):
    from jointdit_trainer.__main__ import main

    assert main(["plan", "--set", "train_batch_size=1", "--budget-gb", "80"]) == 0
    assert "fits in 80 GiB" in capsys.readouterr().out
    assert main(["plan", "--set", "train_batch_size=1", "--budget-gb", "16"]) == 1
    assert "does NOT fit in 16 GiB" in capsys.readouterr().out
