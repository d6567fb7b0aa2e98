"""JointDiT Cache (nodes.step_cache) through JointSampler: exact at threshold 0, per-branch decisions, and
composing with a LoRA, fp8 weights, lowvram loading and TorchCompileModel."""

from __future__ import annotations

import importlib

import pytest
import torch
from comfyui_harness import PACK_NAME
from test_comfyui_compat import compile_eagerly, sample, tiny_patcher
from test_comfyui_golden import addon_checkpoint, conditioning, kohya_lora  # noqa: F401  (addon_checkpoint: a fixture)

from test_comfyui_compat import pack, tiny  # noqa: F401,E402  (fixtures)

STEPS = [1.0 - i / 6 for i in range(6)] + [0.0]
HELD = [0.0] * 7


@pytest.fixture(scope="module")
def cache_module(pack):  # noqa: F811
    return importlib.import_module(f"{PACK_NAME}.nodes.step_cache")


def _clean(golden):
    _, meta = golden
    h, w = meta["latent_hw"]
    return torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(1))


def _decisions(monkeypatch):
    """Spy on the decision inputs: a list of (keys of the deciding (chunk, branch) pairs, decision)."""
    core = importlib.import_module("jointdit_core.step_cache")
    real, seen = core.reuse_decision, []

    def spy(changes, threshold):
        seen.append(({branch for _, branch in changes}, {chunk for chunk, _ in changes}, real(changes, threshold)))
        return seen[-1][2]

    monkeypatch.setattr(core, "reuse_decision", spy)
    return seen


def _cached(cache_module, model, threshold):
    (out,) = cache_module.JointDiTCache.execute(model, threshold, 0.0, 1.0).result
    return out


@pytest.mark.parametrize("task", ["joint", "depth_estimation", "depth_to_image", "joint_cfg"])
def test_threshold_zero_is_the_uncached_output_bit_for_bit(pack, golden, tiny, cache_module, task):  # noqa: F811
    tensors, meta = golden
    _, patched = tiny
    kwargs = {
        "joint": {},
        "depth_estimation": {"rgb_sigmas": HELD, "clean_rgb": _clean(golden)},
        "depth_to_image": {"depth_sigmas": HELD, "clean_depth": _clean(golden)},
        "joint_cfg": {"negative": conditioning(tensors, meta, txt=torch.zeros_like(tensors["case.txt"])), "cfg": 2.0},
    }[task]
    kwargs = {"rgb_sigmas": STEPS, "depth_sigmas": STEPS} | kwargs
    plain = sample(pack, golden, patched, **kwargs)
    cached = sample(pack, golden, _cached(cache_module, patched, 0.0), **kwargs)
    assert torch.equal(plain, cached)


def test_a_held_branch_never_decides(pack, golden, tiny, cache_module, monkeypatch):  # noqa: F811
    """Depth estimation (rgb held) and depth-to-image (depth held), with CFG's cond and uncond chunks."""
    tensors, meta = golden
    _, patched = tiny
    negative = conditioning(tensors, meta, txt=torch.zeros_like(tensors["case.txt"]))
    model = _cached(cache_module, patched, 5.0)
    for held, deciding in (({"rgb_sigmas": HELD, "clean_rgb": _clean(golden)}, {"depth"}), ({"depth_sigmas": HELD, "clean_depth": _clean(golden)}, {"rgb"})):
        seen = _decisions(monkeypatch)
        sample(pack, golden, model, **({"rgb_sigmas": STEPS, "depth_sigmas": STEPS} | held), negative=negative, cfg=2.0)
        assert len(seen) >= 6 and all(branches == deciding for branches, _, _ in seen)
        assert all(len(chunks) == 2 for _, chunks, _ in seen)  # cond and uncond, each its own state
        assert any(reused for _, _, reused in seen)  # the cache engages although the held branch never changes


def _with_lora(pack, golden, tiny, addon_checkpoint):  # noqa: F811
    import comfy.sd

    _, meta = golden
    hidden = meta["config"]["hidden_size"]
    lora = kohya_lora("double_blocks.0.img_attn.qkv", 3 * hidden, hidden) | kohya_lora("vector_in.in_layer", hidden, meta["config"]["vec_in_dim"], seed=1)
    model, _ = comfy.sd.load_lora_for_models(tiny[1], None, lora, 0.8, 0)
    return model


def _fp8(pack, golden, tiny, addon_checkpoint):  # noqa: F811
    return pack.model_patch.apply_jointdit(tiny_patcher(golden, torch.float8_e4m3fn, torch.float32), addon_checkpoint())


@pytest.mark.parametrize("variant", ["lora", "fp8", "lowvram"])
def test_cache_composes_with_lora_fp8_and_lowvram(pack, golden, tiny, addon_checkpoint, cache_module, monkeypatch, variant):  # noqa: F811
    """The cache on top of each: threshold 0 gives that model's own output exactly; a threshold skips steps and stays close."""
    import comfy.model_management as mm

    model = {"lora": _with_lora, "fp8": _fp8, "lowvram": lambda *a: tiny[1]}[variant](pack, golden, tiny, addon_checkpoint)
    if variant == "lowvram":  # a 1-byte weight budget, as ComfyUI's lowvram mode on a small card: every layer cast per call
        mm.unload_all_models()
        model_load = mm.LoadedModel.model_load
        monkeypatch.setattr(mm.LoadedModel, "model_load", lambda self, lowvram_model_memory=0, **kw: model_load(self, 1, **kw))
    kwargs = {"rgb_sigmas": STEPS, "depth_sigmas": STEPS}
    try:
        plain = sample(pack, golden, model, **kwargs)
        if variant == "lowvram":
            assert model.model.model_lowvram
        assert torch.equal(plain, sample(pack, golden, _cached(cache_module, model, 0.0), **kwargs))
        seen = _decisions(monkeypatch)
        cached = sample(pack, golden, _cached(cache_module, model, 0.3), **kwargs)
    finally:
        mm.unload_all_models()
    assert any(reused for _, _, reused in seen)
    assert 0 < (cached - plain).abs().mean() < 0.2 * plain.abs().mean()
    if variant != "lowvram":
        assert not torch.equal(plain, sample(pack, golden, tiny[1], **kwargs))  # the LoRA / fp8 weights are in use


def test_cache_composes_with_torch_compile_model(pack, golden, tiny, cache_module, monkeypatch):  # noqa: F811
    """TorchCompileModel (Dynamo with the "eager" backend, as in test_comfyui_compat) before the cache node."""
    _, patched = tiny
    compiled = compile_eagerly(patched, monkeypatch)
    kwargs = {"rgb_sigmas": STEPS[::2], "depth_sigmas": STEPS[::2]}  # 3 steps: each compiled call costs a Dynamo trace
    try:
        torch._dynamo.reset()
        for threshold in (0.0, 5.0):
            eager = sample(pack, golden, _cached(cache_module, patched, threshold), **kwargs)
            seen = _decisions(monkeypatch)
            out = sample(pack, golden, _cached(cache_module, compiled, threshold), **kwargs)
            assert (out - eager).abs().max().item() < 1e-5
            assert any(reused for _, _, reused in seen) == (threshold > 0)
        from torch._dynamo.utils import counters

        assert counters["stats"]["unique_graphs"] > 0
    finally:
        torch._dynamo.reset()


def test_cache_node_needs_a_jointdit_model(pack, tiny, cache_module):  # noqa: F811
    plain, _ = tiny
    with pytest.raises(ValueError, match="Load JointDiT"):
        cache_module.JointDiTCache.execute(plain, 0.1, 0.0, 1.0)


def test_an_interrupted_run_leaves_no_state_behind(pack, golden, tiny, cache_module):  # noqa: F811
    """A run stopped mid-way (ComfyUI's cancel raises inside the sampler) does not leak into the next run."""
    _, patched = tiny
    model = _cached(cache_module, patched, 5.0)
    kwargs = {"rgb_sigmas": STEPS, "depth_sigmas": STEPS}
    fresh = sample(pack, golden, _cached(cache_module, patched, 5.0), **kwargs)

    def cancel(step, *args):
        if step == 3:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        sample(pack, golden, model, callback=cancel, **kwargs)
    assert cache_module.STATE_KEY not in model.model_options["transformer_options"]
    assert torch.equal(sample(pack, golden, model, **kwargs), fresh)
