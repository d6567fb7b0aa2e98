"""Properties of the joint math beyond the golden numbers: ASW, row layouts, where the LoRAs act."""

import pytest
import torch

from jointdit_core import BranchLayout, adaptive_weights


def test_adaptive_weights_official_formula_and_noisier_branch_listens_more():
    t_self, t_other = torch.tensor([0.9, 0.2, 0.5, 0.0]), torch.tensor([0.2, 0.9, 0.5, 0.6])
    w = adaptive_weights(t_self, t_other)
    expected = torch.sigmoid(3 * (t_self / (t_self + t_other) - 0.5))
    assert torch.allclose(w, expected)
    assert w[0] > 0.5 > w[1] and w[2] == pytest.approx(0.5)


def test_adaptive_weights_defined_at_both_clean():
    w = adaptive_weights(torch.zeros(3), torch.zeros(3))
    assert torch.isfinite(w).all() and torch.allclose(w, torch.full((3,), 0.5))
    assert torch.allclose(adaptive_weights(torch.rand(5), torch.rand(5), strength=0.0), torch.full((5,), 0.5))


def test_finite_output_at_both_timesteps_zero(golden_model, golden_inputs):
    g = golden_inputs
    with torch.no_grad():
        out = golden_model(g["x"], g["img_ids"], g["txt"], g["txt_ids"], torch.zeros(2), g["y"], g["guidance"])
    assert torch.isfinite(out).all()


def test_layout_validation():
    with pytest.raises(ValueError, match="cover rows"):
        BranchLayout(torch.tensor([0, 1]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="as many rgb rows"):
        BranchLayout(torch.tensor([0]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="odd batch"):
        from jointdit_core import JointDiT, FluxConfig

        JointDiT(FluxConfig(depth=0, depth_single_blocks=0, hidden_size=64, num_heads=1, axes_dim=(16, 24, 24), vec_in_dim=8, context_in_dim=8))(
            torch.zeros(3, 4, 64), torch.zeros(3, 4, 3), torch.zeros(3, 2, 8), torch.zeros(3, 2, 3), torch.zeros(3), torch.zeros(3, 8), torch.zeros(3)
        )


def _two_interleaved_pairs(g):
    """Rows [rgb0, depth0, rgb1, depth1] (pair0 = (x0, x1), pair1 = flipped tokens) with their timesteps, a
    row-repeater of the golden conditioning and the repeated (img_ids, txt, txt_ids)."""
    x = torch.cat([g["x"], g["x"].flip(1)])
    t = torch.tensor([0.3, 0.8, 0.6, 0.1])
    rep = lambda a: a[:1].expand(4, *a.shape[1:])  # noqa: E731
    return x, t, rep, (rep(g["img_ids"]), rep(g["txt"]), rep(g["txt_ids"]))


def test_interleaved_layout_equals_official_layout(golden_model, golden_inputs):
    """Two pairs stacked as [rgb0, depth0, rgb1, depth1] give the same velocities as the official order."""
    g = golden_inputs
    x, t, rep, args = _two_interleaved_pairs(g)
    x_official = x[[0, 2, 1, 3]]
    with torch.no_grad():
        official = golden_model(x_official, args[0], args[1], args[2], t[[0, 2, 1, 3]], rep(g["y"]), rep(g["guidance"]))
        interleaved = golden_model(
            x, args[0], args[1], args[2], t, rep(g["y"]), rep(g["guidance"]),
            layout=BranchLayout(torch.tensor([0, 2]), torch.tensor([1, 3])),
        )
    assert torch.allclose(interleaved[[0, 2, 1, 3]], official, atol=1e-5)


def test_addon_gradients_agree_between_official_and_interleaved_layouts(golden_model, golden_inputs):
    """The official layout's backward (splits, one concatenation) gives the gradients of the index path."""
    import copy

    g = golden_inputs
    model = copy.deepcopy(golden_model).train()
    model.freeze_base()
    x, t, rep, args = _two_interleaved_pairs(g)
    weights = torch.linspace(-1, 1, x.numel()).reshape(x.shape)

    def grads(order, layout):
        model.zero_grad(set_to_none=True)
        out = model(x[order], *args, t[order], rep(g["y"]), rep(g["guidance"]), layout=layout)
        (out * weights[order]).sum().backward()  # the same weight on each pair's row in either order
        return torch.cat([p.grad.flatten() for p in model.addons.parameters()])

    official = grads(torch.tensor([0, 2, 1, 3]), None)
    interleaved = grads(torch.tensor([0, 1, 2, 3]), BranchLayout(torch.tensor([0, 2]), torch.tensor([1, 3])))
    assert official.abs().sum() > 0
    assert torch.allclose(official, interleaved, atol=1e-6, rtol=1e-4)


def test_rgb_row_is_plain_flux_when_joint_layers_are_zero(golden_model, golden_inputs):
    """LoRAs act on depth rows only: with joint1/joint2 zeroed the rgb row is exactly plain Flux."""
    import copy

    g = golden_inputs
    model = copy.deepcopy(golden_model)
    for block in list(model.addons.double_blocks) + list(model.addons.single_blocks):
        joint = block.joint1 if hasattr(block, "joint1") else block.joint2
        torch.nn.init.zeros_(joint.weight)
        torch.nn.init.zeros_(joint.bias)
    t = torch.tensor([0.4, 0.7])
    with torch.no_grad():
        joint = model(g["x"], g["img_ids"], g["txt"], g["txt_ids"], t, g["y"], g["guidance"])
        plain = model.base(g["x"], g["img_ids"], g["txt"], g["txt_ids"], t, g["y"], g["guidance"])
    assert torch.allclose(joint[0], plain[0], atol=1e-5)
    assert (joint[1] - plain[1]).abs().max() > 1e-2  # the depth row has its LoRAs


def test_asw_strength_changes_output_and_swapping_timesteps_matters(golden_model, golden_inputs):
    g = golden_inputs
    t = torch.tensor([0.9, 0.2])
    call = lambda t, s=1.0: golden_model(g["x"], g["img_ids"], g["txt"], g["txt_ids"], t, g["y"], g["guidance"], asw_strength=s)  # noqa: E731
    with torch.no_grad():
        official, off, swapped = call(t), call(t, 0.0), call(t.flip(0))
    assert (official - off).abs().max() > 1e-3
    assert (official - swapped).abs().max() > 1e-2


def test_gradients_flow_only_into_addons(golden_model, golden_inputs):
    import copy

    g = golden_inputs
    model = copy.deepcopy(golden_model).train()
    model.freeze_base()
    model.set_gradient_checkpointing(True)
    out = model(g["x"], g["img_ids"], g["txt"], g["txt_ids"], torch.tensor([0.5, 0.3]), g["y"], g["guidance"])
    out.pow(2).mean().backward()
    assert all(p.grad is None for p in model.base.parameters())
    grads = [p.grad for p in model.addons.parameters()]
    assert all(gr is not None for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0


def test_every_attention_call_goes_through_the_given_backend(golden_model, golden_inputs):
    """A spy backend sees 3 attention calls per block in a joint forward (self + both joint directions), 1 in plain Flux."""
    from collections import Counter

    from jointdit_core.joint import sdpa_attention

    g = golden_inputs
    base = golden_model.base
    blocks = {block: f"double{i}" for i, block in enumerate(base.double_blocks)}
    blocks.update({block: f"single{i}" for i, block in enumerate(base.single_blocks)})
    current, calls = [None], Counter()
    hooks = [block.register_forward_pre_hook(lambda module, args: current.__setitem__(0, blocks[module])) for block in blocks]

    def spy(q, k, v):
        calls[current[0]] += 1
        return sdpa_attention(q, k, v)

    args = (g["x"], g["img_ids"], g["txt"], g["txt_ids"], torch.tensor([0.7, 0.2]), g["y"], g["guidance"])
    try:
        with torch.no_grad():
            default, spied = golden_model(*args), golden_model(*args, attention=spy)
            assert calls == Counter({name: 3 for name in blocks.values()}) and len(calls) == len(base.double_blocks) + len(base.single_blocks) > 0
            calls.clear()
            plain_default, plain_spied = base(*args), base(*args, attention=spy)
            assert calls == Counter({name: 1 for name in blocks.values()})
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(spied, default) and torch.equal(plain_spied, plain_default)
    # and the backend's result is what the blocks use: a different backend changes the output
    with torch.no_grad():
        scaled = golden_model(*args, attention=lambda q, k, v: 2 * sdpa_attention(q, k, v))
    assert (scaled - default).abs().max() > 1e-3


def test_addons_are_built_from_the_given_operations_and_cast_to_the_input():
    from jointdit_core import FluxConfig, JointAddons, LoraRanks
    from jointdit_core.addons import CastLinear

    built = []

    class Ops:
        class Linear(CastLinear):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                built.append(self)

    config = FluxConfig(hidden_size=64, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=(16, 24, 24), vec_in_dim=8, context_in_dim=8)
    addons = JointAddons(config, LoraRanks(4, 4, 4, 4), operations=Ops)
    linears = [m for m in addons.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(built) == 2 * (1 + 2 + 6 + 2) + 2 and all(isinstance(m, Ops.Linear) for m in linears)
    bf16 = JointAddons(config, LoraRanks(4, 4, 4, 4)).to(torch.bfloat16)
    torch.nn.init.normal_(bf16.txt_in.lora_B.weight)
    out = bf16.txt_in(torch.randn(2, 3, 8))  # float32 input, bf16 weights
    assert out.dtype == torch.float32 and out.shape == (2, 3, 64) and out.abs().max() > 0
