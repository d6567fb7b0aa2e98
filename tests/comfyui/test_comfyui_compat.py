"""ComfyUI's own speed / guidance / device nodes on a JointDiT MODEL: each works (shown) or is refused clearly.

Works: TorchCompileModel (compiled result equals the eager one), the fp8 ``--fast`` path (the joint blocks'
base layers run ComfyUI's fp8 matrix product). Refused with an error naming the node: attention patches
(``attn1_patch`` / ``attn1_output_patch``, e.g. NAG), EasyCache / LazyCache, multi-GPU clones (MultiGPU CFG
Split, Select Model Device after LoadJointDiT), and Flux-family models that are not FLUX.1 (LongCat-Image).
Nodes missing from the running ComfyUI release are skipped with the reason.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from comfyui_harness import PACK_NAME, flux_unet_config, load_pack
from test_comfyui_golden import addon_checkpoint, conditioning, raw_forward  # noqa: F401  (addon_checkpoint: a fixture)


@pytest.fixture(scope="module")
def pack():
    """ComfyUI in this process and the pack's modules, ``compat`` included (skips without COMFYUI_PATH)."""
    loaded = load_pack()
    loaded.compat = importlib.import_module(f"{PACK_NAME}.nodes.compat")
    return loaded


def tiny_patcher(golden, weight_dtype=torch.float32, manual_cast=None, fp8_fast=False, model_class="Flux", **changes):
    """A ModelPatcher of the golden_tiny base weights (as UNETLoader builds one), with a reload factory."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    tensors, meta = golden

    def build(*args, **kwargs):
        c = meta["config"]
        names = ("vec_in_dim", "context_in_dim", "hidden_size", "mlp_ratio", "num_heads", "depth", "depth_single_blocks", "axes_dim", "theta", "qkv_bias", "guidance_embed")
        model_config = getattr(comfy.supported_models, model_class)(flux_unet_config(**({name: c[name] for name in names} | changes)))
        model_config.set_inference_dtype(weight_dtype, manual_cast)
        if fp8_fast:
            model_config.optimizations["fp8"] = True  # what UNETLoader's fp8_e4m3fn_fast / --fast fp8_matrix_mult select
        model = model_config.get_model({}, "")
        base = {k[len("base.") :]: v for k, v in tensors.items() if k.startswith("base.")}
        model.load_model_weights(base, "")
        return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())

    patcher = build()
    patcher.cached_patcher_init = (build, ())  # as comfy.sd.load_diffusion_model registers it (ComfyUI 0.23+)
    return patcher


@pytest.fixture(scope="module")
def tiny(pack, golden, addon_checkpoint):
    """(plain ModelPatcher, JointDiT-patched clone) of the golden_tiny model."""
    plain = tiny_patcher(golden)
    return plain, pack.model_patch.apply_jointdit(plain, addon_checkpoint())


def comfy_node(module: str, name: str):
    """A node class of ComfyUI's comfy_extras, or skip naming the release that lacks it."""
    import comfyui_version

    try:
        return getattr(importlib.import_module(f"comfy_extras.{module}"), name)
    except (ImportError, AttributeError):
        pytest.skip(f"ComfyUI {comfyui_version.__version__} has no {name} (comfy_extras/{module}.py)")


def compile_eagerly(model, monkeypatch):
    """``model`` through the TorchCompileModel node, with Dynamo's "eager" backend instead of inductor (no C++ build)."""
    import comfy_api.torch_helpers.torch_compile as torch_compile

    node = comfy_node("nodes_torch_compile", "TorchCompileModel")
    node_module = importlib.import_module(node.__module__)
    set_wrapper = torch_compile.set_torch_compile_wrapper
    monkeypatch.setattr(node_module, "set_torch_compile_wrapper", lambda model, backend, **kw: set_wrapper(model=model, backend="eager", **kw))
    (compiled,) = node.execute(model, "inductor").result
    return compiled


def sample(pack, golden, model, rgb_sigmas=(1.0, 0.5, 0.0), depth_sigmas=(1.0, 0.5, 0.0), clean_rgb=None, **kwargs):
    tensors, meta = golden
    h, w = meta["latent_hw"]
    g = torch.Generator().manual_seed(0)
    noise_rgb, noise_depth = torch.randn(1, 16, h, w, generator=g), torch.randn(1, 16, h, w, generator=g)
    return torch.cat(pack.sampler.sample_joint(model, conditioning(tensors, meta), list(rgb_sigmas), list(depth_sigmas), noise_rgb, noise_depth, clean_rgb, **kwargs))


# ----------------------------------------------------------------------------- works


def test_torch_compile_model_matches_eager(pack, golden, tiny, monkeypatch):
    """TorchCompileModel as the node sets it up (the clone, the APPLY_MODEL wrapper, v0.4+'s guard filter).

    The node offers inductor / cudagraphs; the test compiles with the "eager" backend, which runs Dynamo's
    graph capture and guards (where a joint call could be baked in wrongly) without C++ code generation.
    A second run with another ASW strength and a held rgb branch must not reuse the first graph's values.
    """
    _, patched = tiny
    compiled = compile_eagerly(patched, monkeypatch)
    tensors, meta = golden
    h, w = meta["latent_hw"]
    clean = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(1))
    try:
        torch._dynamo.reset()
        one_step = {"rgb_sigmas": (1.0, 0.0), "depth_sigmas": (1.0, 0.0)}  # each model call costs a Dynamo trace
        for kwargs in (one_step | {"asw_strength": 1.0}, one_step | {"asw_strength": 0.3, "rgb_sigmas": (0.0, 0.0), "clean_rgb": clean}):
            eager = sample(pack, golden, patched, **kwargs)
            out = sample(pack, golden, compiled, **kwargs)
            assert (out - eager).abs().max().item() < 1e-5
        from torch._dynamo.utils import counters

        assert counters["stats"]["unique_graphs"] > 0  # Dynamo did compile the diffusion model
    finally:
        torch._dynamo.reset()


def test_fp8_fast_path_runs_the_joint_blocks_in_fp8(pack, golden, tiny, addon_checkpoint, monkeypatch):
    """fp8 weights with fp8 matrix products (``--fast fp8_matrix_mult`` / UNETLoader's ``fp8_e4m3fn_fast``).

    The joint blocks call ComfyUI's own fp8 Linear layers, so every base layer that runs ``fp8_linear`` in
    ComfyUI's plain Flux forward runs it in the JointDiT forward too (ComfyUI 0.3.64 takes that path only
    for modules in eval mode, which its Flux is not: there neither forward uses it); the result follows fp32.
    """
    import comfy.model_management as mm
    import comfy.ops

    monkeypatch.setattr(mm, "SUPPORT_FP8_OPS", True)  # as --supports-fp8-compute: lets the CPU take the fp8 path
    base = tiny_patcher(golden, torch.float8_e4m3fn, torch.float32, fp8_fast=True)
    dm = base.model.diffusion_model
    assert isinstance(dm.double_blocks[0].img_attn.qkv, comfy.ops.fp8_ops.Linear)
    fp8 = pack.model_patch.apply_jointdit(base, addon_checkpoint())
    ran_fp8 = set()
    fp8_linear = comfy.ops.fp8_linear

    def spy(layer, x):
        out = fp8_linear(layer, x)
        if out is not None:
            ran_fp8.add(id(layer))
        return out

    monkeypatch.setattr(comfy.ops, "fp8_linear", spy)
    tensors, meta = golden
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    t = torch.tensor([0.7, 0.4])
    block_layers = [b.img_attn.qkv for b in dm.double_blocks] + [b.txt_attn.proj for b in dm.double_blocks]
    block_layers = {id(layer) for layer in block_layers + [b.linear1 for b in dm.single_blocks] + [b.linear2 for b in dm.single_blocks]}
    mm.load_models_gpu([base])
    with torch.no_grad():
        base.model.diffusion_model(x, t, tensors["case.txt"].repeat(2, 1, 1), y=tensors["case.vec"].repeat(2, 1), guidance=torch.full((2,), meta["guidance"]))
    plain_fp8, ran_fp8 = ran_fp8 & block_layers, set()
    if comfy_version() >= (0, 4):
        assert plain_fp8 == block_layers  # newer ComfyUI: plain Flux runs its block layers in fp8
    _, patched = tiny
    ref = raw_forward(pack, patched, x, t, tensors, meta)
    out = raw_forward(pack, fp8, x, t, tensors, meta)
    assert plain_fp8 <= ran_fp8  # the joint blocks' base layers take the same fp8 path
    assert torch.isfinite(out).all()
    assert ((out - ref).norm() / ref.norm()).item() < 0.15
    mm.unload_all_models()


def comfy_version() -> tuple[int, ...]:
    import comfyui_version

    return tuple(int(p) for p in comfyui_version.__version__.split(".")[:2])


# ----------------------------------------------------------------------------- refused


@pytest.mark.parametrize("kind", ["attn1_patch", "attn1_output_patch"])
def test_attention_patches_are_refused(pack, golden, tiny, kind):
    _, patched = tiny
    model = patched.clone()
    if kind == "attn1_patch":
        model.set_model_attn1_patch(lambda q, k, v, pe=None, attn_mask=None, extra_options=None: {"q": q})
    else:
        model.set_model_attn1_output_patch(lambda out, extra_options: out)
    with pytest.raises(pack.compat.JointDiTCompatError, match=kind):
        sample(pack, golden, model)


def test_normalized_attention_guidance_is_refused(pack, golden, tiny):
    nag = comfy_node("nodes_nag", "NAGuidance")
    _, patched = tiny
    (model,) = nag.execute(patched, 5.0, 0.5, 1.5).result
    tensors, meta = golden
    with pytest.raises(pack.compat.JointDiTCompatError, match="Normalized Attention Guidance"):
        sample(pack, golden, model, negative=conditioning(tensors, meta), cfg=2.0)


@pytest.mark.parametrize("name", ["EasyCacheNode", "LazyCacheNode"])
def test_step_caches_are_refused(pack, golden, tiny, name):
    node = comfy_node("nodes_easycache", name)
    _, patched = tiny
    (model,) = node.execute(patched, 0.2, 0.0, 1.0, False).result
    with pytest.raises(pack.compat.JointDiTCompatError, match="EasyCache / LazyCache .* use the JointDiT Cache node"):
        sample(pack, golden, model)


def test_multigpu_clones_are_refused(pack, tiny, addon_checkpoint, monkeypatch):
    """ComfyUI's per-device deep-clone (MultiGPU CFG Split, Select Model Device) of a JointDiT MODEL.

    Without the guard ComfyUI raises that the addons' loader "does not support multigpu" and tells the user
    to use a core loader; on CPU two "devices" (cpu, cpu:1) stand in for two GPUs.
    """
    import comfy.model_management as mm

    plain, patched = tiny
    if not hasattr(patched, "deepclone_multigpu"):
        pytest.skip("this ComfyUI has no multi-GPU clones (ModelPatcher.deepclone_multigpu, ComfyUI 0.23+)")
    error = pack.compat.JointDiTCompatError
    with pytest.raises(error, match="cannot run on several devices"):
        patched.deepclone_multigpu(new_load_device=torch.device("cpu", 1))
    split = comfy_node("nodes_multigpu", "MultiGPUCFGSplitNode")
    monkeypatch.setattr(mm, "get_all_torch_devices", lambda exclude_current=False: [torch.device("cpu"), torch.device("cpu", 1)])
    with pytest.raises(error, match="MultiGPU CFG Split"):
        split.execute(patched, 2)
    # MultiGPU CFG Split before LoadJointDiT: refused when the addons are added
    (split_first,) = split.execute(plain, 2).result
    assert split_first.get_additional_models_with_key("multigpu")
    with pytest.raises(error, match="several devices"):
        pack.model_patch.apply_jointdit(split_first, addon_checkpoint())
    mm.unload_all_models()


def test_flux_family_models_that_are_not_flux1_are_refused(pack, golden, addon_checkpoint):
    import comfy.supported_models

    if not hasattr(comfy.supported_models, "LongCatImage"):
        pytest.skip("this ComfyUI has no LongCat-Image (comfy.supported_models.LongCatImage)")
    longcat = tiny_patcher(golden, model_class="LongCatImage", vec_in_dim=None, guidance_embed=False, txt_ids_dims=[1, 2])
    assert longcat.model.diffusion_model.params.in_channels == 16  # passes the FLUX.1 type and channel checks
    with pytest.raises(pack.compat.JointDiTCompatError, match=r"LongCatImage.*not FLUX.1.*vector_in"):
        pack.model_patch.apply_jointdit(longcat, addon_checkpoint())
