"""The frozen base in less memory: float8 storage stays close to bf16, block swap is exact."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from jointdit_trainer.config import load_config
from jointdit_trainer.frozen_base import FrozenLinear, freeze_linear, place_frozen_base, to_fp8
from jointdit_trainer.train import train
from trainer_tiny import TINY_FLUX, make_cached_setup

FP8_LOSS_TOLERANCE = 0.005  # relative, per step, fp8 vs bf16 base under bf16 autocast (measured max 0.0017 over 12 steps)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("low_memory")
    return root, make_cached_setup(root, n=4)


def run(values: dict, out: Path, **changes) -> tuple[list[dict], dict]:
    merged = {**values, "output_dir": str(out), "learning_rate": 1e-3, "save_every_n_steps": 0, **changes}
    final = train(load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in merged.items()]))
    log = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    return log, load_file(str(final))


def test_fp8_weights_are_scaled_float8_and_the_backward_uses_them():
    torch.manual_seed(0)
    linear = nn.Linear(24, 40)
    weight, bias = linear.weight.detach().clone(), linear.bias.detach().clone()
    q, scale = to_fp8(weight)
    assert q.dtype == torch.float8_e4m3fn and q.abs().float().max() == 448.0
    frozen = freeze_linear(linear, fp8=True)
    assert isinstance(frozen, FrozenLinear) and frozen.weight.dtype == torch.float8_e4m3fn
    dequantised = frozen.weight.float() * frozen.weight_scale
    assert (dequantised - weight).abs().max() <= weight.abs().max() / 16  # e4m3: 3 mantissa bits
    x = torch.randn(3, 5, 24, requires_grad=True)
    out = frozen(x)
    out.square().sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    ref = torch.nn.functional.linear(x_ref, dequantised, bias)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, x_ref.grad)
    assert frozen.weight.grad is None


def test_fp8_base_losses_stay_within_tolerance_of_bf16(setup):
    root, values = setup
    common = dict(mixed_precision="bf16", max_train_steps=12, gradient_checkpointing=True)
    bf16, _ = run(values, root / "bf16", **common)
    fp8, _ = run(values, root / "fp8", fp8_base=True, **common)
    for a, b in zip(bf16, fp8):
        for key in ("loss", "loss_rgb", "loss_depth"):
            assert abs(a[key] - b[key]) <= FP8_LOSS_TOLERANCE * a[key], (a["step"], key, a[key], b[key])
    assert [a["loss"] for a in bf16] != [b["loss"] for b in fp8]  # the fp8 path did run


@pytest.mark.parametrize("checkpointing", [False, True])
def test_block_swap_gives_exactly_the_resident_losses_and_weights(setup, checkpointing):
    root, values = setup
    common = dict(mixed_precision="no", max_train_steps=6, gradient_checkpointing=checkpointing)
    resident, resident_w = run(values, root / f"resident{checkpointing}", **common)
    swapped, swapped_w = run(values, root / f"swap{checkpointing}", blocks_to_swap=1, **common)
    assert [r["loss"] for r in resident] == [s["loss"] for s in swapped]
    assert resident_w.keys() == swapped_w.keys()
    for key in resident_w:
        assert torch.equal(resident_w[key], swapped_w[key]), key


def test_place_frozen_base_keeps_the_last_blocks_linears_on_the_cpu():
    from jointdit_core import Flux, FluxConfig

    base = Flux(FluxConfig(**{**TINY_FLUX.to_dict(), "depth": 2, "depth_single_blocks": 2})).requires_grad_(False)
    place_frozen_base(base, "meta", fp8=True, blocks_to_swap=3)  # "meta" stands in for the accelerator
    linears = [m for m in base.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m, FrozenLinear) and m.weight.dtype == torch.float8_e4m3fn for m in linears)
    blocks = [*base.double_blocks, *base.single_blocks]
    for i, block in enumerate(blocks):
        for name, tensor in block.named_parameters():
            is_linear = isinstance(block.get_submodule(name.rsplit(".", 1)[0]), nn.Linear)
            assert tensor.device.type == ("cpu" if i >= 1 and is_linear else "meta"), (i, name)
    assert base.img_in.weight.device.type == "meta" and base.final_layer.linear.weight.device.type == "meta"
    with pytest.raises(ValueError, match=r"blocks_to_swap must be in 0..1 \(this base has 2 blocks\), got 2"):
        place_frozen_base(Flux(TINY_FLUX), "cpu", blocks_to_swap=2)


def test_fused_backward_pass_gives_exactly_the_unfused_losses_and_weights(setup):
    root, values = setup
    common = dict(mixed_precision="no", max_train_steps=6, gradient_checkpointing=True)
    plain, plain_w = run(values, root / "unfused", **common)
    fused, fused_w = run(values, root / "fused", fused_backward_pass=True, blocks_to_swap=1, **common)
    assert [r["loss"] for r in plain] == [f["loss"] for f in fused]
    for key in plain_w:
        assert torch.equal(plain_w[key], fused_w[key]), key
    with pytest.raises(ValueError, match="fused_backward_pass .* needs gradient_accumulation_steps = 1"):
        load_config(overrides=["fused_backward_pass=true", "gradient_accumulation_steps=2"])


def test_fused_step_updates_during_the_backward_and_frees_the_gradients():
    from transformers.optimization import Adafactor

    from jointdit_trainer.train import fuse_optimizer_step

    torch.manual_seed(0)
    layers = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 1))
    before = [p.detach().clone() for p in layers.parameters()]
    optimizer = Adafactor(list(layers.parameters()), lr=1e-2, scale_parameter=False, relative_step=False, warmup_init=False)
    fuse_optimizer_step(list(layers.parameters()), optimizer)
    layers(torch.randn(4, 8)).square().sum().backward()
    assert all(p.grad is None for p in layers.parameters())
    assert all(not torch.equal(b, p) for b, p in zip(before, layers.parameters()))
