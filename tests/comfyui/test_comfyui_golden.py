"""ComfyUI's own Flux module + LoadJointDiT's patch reproduce the official golden_tiny reference.

The golden base weights are loaded into ``comfy.ldm.flux.model.Flux`` built with the tiny config (the
way ``comfy.sd.load_diffusion_model_state_dict`` builds a model, with an explicit unet_config since
ComfyUI's detection assumes FLUX.1 widths), the addon weights go through ``apply_jointdit`` (what
LoadJointDiT does after reading the file), and the forward passes and sampling runs are compared
with the stored reference outputs within 1e-4.
"""

from __future__ import annotations

import pytest
import torch
from comfyui_harness import flux_unet_config, load_pack

TOL = 1e-4


@pytest.fixture(scope="module")
def pack():
    """ComfyUI in this process and the pack's modules (skips without COMFYUI_PATH)."""
    return load_pack()


@pytest.fixture(scope="module")
def tiny(pack, golden, addon_checkpoint):
    """(plain ModelPatcher, JointDiT-patched clone, meta) of the golden_tiny model in ComfyUI."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    tensors, meta = golden
    c = meta["config"]
    names = ("vec_in_dim", "context_in_dim", "hidden_size", "mlp_ratio", "num_heads", "depth", "depth_single_blocks", "axes_dim", "theta", "qkv_bias", "guidance_embed")
    unet_config = flux_unet_config(**{name: c[name] for name in names})
    model_config = comfy.supported_models.Flux(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, "")
    base = {k[len("base.") :]: v for k, v in tensors.items() if k.startswith("base.")}
    model.load_model_weights(dict(base), "")
    plain = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    patched = pack.model_patch.apply_jointdit(plain, addon_checkpoint("none"), "golden_tiny")
    return plain, patched, meta


@pytest.fixture(scope="module")
def addon_checkpoint(pack, golden, tmp_path_factory):
    """``addon_checkpoint(depth_transform)``: the golden addon written as an addon file + sidecar and read back
    with ``load_addons`` (what LoadJointDiT hands ``apply_jointdit``)."""
    tensors, _ = golden
    addon = {k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")}
    folder = tmp_path_factory.mktemp("addons")

    def load(depth_transform: str = "none"):
        path = folder / depth_transform / "golden_tiny.safetensors"
        if not path.exists():
            pack.core.checkpoint.save_addons(path, addon, {"depth_transform": depth_transform}, dtype=torch.float32)
        return pack.core.checkpoint.load_addons(path)

    return load


def conditioning(tensors, meta, txt=None, vec=None):
    txt = tensors["case.txt"] if txt is None else txt
    vec = tensors["case.vec"] if vec is None else vec
    return [[txt, {"pooled_output": vec, "guidance": meta["guidance"]}]]


def raw_forward(pack, patcher, x, t, tensors, meta, control=None, pairs=1, load=True):
    """The patched ComfyUI diffusion model's raw output (velocity), wrappers and patches as in sampling.

    ``load=False``: the caller has loaded the model (and its additional models) itself.
    """
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sampler_helpers

    if load:
        mm.load_models_gpu([patcher])  # applies the object patch like any sampler does
    options = comfy.model_patcher.create_model_options_clone(patcher.model_options)
    comfy.sampler_helpers.prepare_model_patcher(patcher, {}, options)  # merges the keyed wrappers
    transformer_options = options["transformer_options"]
    transformer_options[pack.model_patch.RUN_KEY] = pack.model_patch.JointRun(pairs)
    rows = x.shape[0]
    dtype = patcher.model.manual_cast_dtype or patcher.model.get_dtype()  # as BaseModel._apply_model casts
    with torch.no_grad():
        return patcher.model.diffusion_model(
            x.to(dtype),
            t.float(),
            tensors["case.txt"].repeat(rows, 1, 1).to(dtype),
            y=tensors["case.vec"].repeat(rows, 1).to(dtype),
            guidance=torch.full((rows,), meta["guidance"], dtype=dtype),
            control=control,
            transformer_options=transformer_options,
        ).float()


def _case(meta, name):
    return next(c for c in meta["cases"] if c["name"] == name)


@pytest.mark.parametrize("index", range(5))
def test_forward_through_comfy_flux_matches_reference(pack, golden, tiny, index):
    tensors, meta = golden
    _, patched, _ = tiny
    case = [c for c in meta["cases"] if c["kind"] == "forward"][index]
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    out = raw_forward(pack, patched, x, torch.tensor([case["t_rgb"], case["t_depth"]]), tensors, meta)
    pred = pack.core.latents.pack(out)
    assert (pred - tensors[f"case.{case['output']}"]).abs().max().item() < TOL


@pytest.mark.parametrize("name", ["joint", "depth_estimation", "depth_to_image"])
def test_sampling_through_joint_sampler_matches_reference(pack, golden, tiny, name):
    tensors, meta = golden
    plain, patched, _ = tiny
    case = _case(meta, name)
    h, w = meta["latent_hw"]
    unpack = lambda z: pack.core.latents.unpack(z, h, w)  # noqa: E731
    noise = unpack(tensors["case.noise"])
    cond = unpack(tensors["case.cond"])
    schedule = case["schedule"]
    held = [0.0] * len(schedule)
    rgb_sigmas, depth_sigmas = {"joint": (schedule, schedule), "depth_estimation": (held, schedule), "depth_to_image": (schedule, held)}[name]
    # JointSampler takes ComfyUI LATENTs in VAE space: the golden condition is in model space.
    clean = plain.model.process_latent_out(cond.clone())
    clean_rgb = clean if name == "depth_estimation" else None
    clean_depth = clean if name == "depth_to_image" else None
    seen = []
    rgb, depth = pack.sampler.sample_joint(
        patched, conditioning(tensors, meta), rgb_sigmas, depth_sigmas, noise[:1], noise[1:], clean_rgb, clean_depth,
        callback=lambda step, x0, x, total: seen.append((step, total)),
    )
    out = pack.core.latents.pack(plain.model.process_latent_in(torch.cat([rgb, depth])))
    ref = tensors[f"case.{case['output']}"]
    generated = [0, 1] if name == "joint" else [1 - case["condition_row"]]
    for row in generated:
        assert (out[row] - ref[row]).abs().max().item() < TOL
    if name != "joint":  # the held condition comes back as given (the official loop's last nudge is not applied)
        row = case["condition_row"]
        assert (out[row] - tensors["case.cond"][0]).abs().max().item() < 1e-5
    assert seen == [(i, 4) for i in range(4)]


def test_cfg_and_per_pair_prompts_pair_rows_like_the_core(pack, golden, tiny):
    """cond/uncond chunks and two pairs with their own prompts: same result as the core model with CFG."""
    tensors, meta = golden
    plain, patched, _ = tiny
    h, w = meta["latent_hw"]
    g = torch.Generator().manual_seed(3)
    txt = torch.randn(2, 7, meta["config"]["context_in_dim"], generator=g)
    vec = torch.randn(2, meta["config"]["vec_in_dim"], generator=g)
    neg_txt, neg_vec = torch.randn(1, 7, txt.shape[-1], generator=g), torch.randn(1, vec.shape[-1], generator=g)
    noise_rgb, noise_depth = torch.randn(2, 16, h, w, generator=g), torch.randn(2, 16, h, w, generator=g)
    schedule = pack.core.schedules.flux_shifted_schedule(3, (h // 2) * (w // 2))
    cfg, asw = 2.5, 0.7
    rgb, depth = pack.sampler.sample_joint(
        patched, conditioning(tensors, meta, txt, vec), schedule, schedule, noise_rgb, noise_depth,
        negative=conditioning(tensors, meta, neg_txt, neg_vec), cfg=cfg, asw_strength=asw,
    )
    core = core_model(pack, tensors, meta)
    ids = pack.core.latents.image_ids(2, h, w)
    guidance = torch.full((2,), meta["guidance"])

    def velocity(x_rgb, x_depth, t_rgb, t_depth):
        to_tokens = pack.core.latents.pack
        args = (to_tokens(x_rgb), to_tokens(x_depth), t_rgb, t_depth, ids)
        v_c = core.velocity(*args, txt, vec, guidance, asw_strength=asw)
        v_u = core.velocity(*args, neg_txt.repeat(2, 1, 1), neg_vec.repeat(2, 1), guidance, asw_strength=asw)
        return tuple(pack.core.latents.unpack(u + cfg * (c - u), h, w) for c, u in zip(v_c, v_u, strict=True))

    with torch.no_grad():
        ref_rgb, ref_depth = pack.core.sampler.sample(velocity, schedule, schedule, noise_rgb, noise_depth)
    out = plain.model.process_latent_in(torch.cat([rgb, depth]))
    assert (out - torch.cat([ref_rgb, ref_depth])).abs().max().item() < TOL


def core_model(pack, tensors, meta):
    """The golden model in jointdit_core (reference for cases the golden file does not store)."""
    model = pack.core.model.JointDiT(pack.core.model.FluxConfig.from_dict(meta["config"]))
    model.base.load_state_dict({k[len("base.") :]: v for k, v in tensors.items() if k.startswith("base.")})
    model.addons.load_state_dict({k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")})
    return model.eval()


def test_controlnet_residuals_reach_only_the_rgb_rows(pack, golden, tiny):
    tensors, meta = golden
    _, patched, _ = tiny
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    t = torch.tensor([0.6, 0.6])
    hidden, tokens = meta["config"]["hidden_size"], (h // 2) * (w // 2)
    g = torch.Generator().manual_seed(1)
    residual = {"input": [torch.randn(2, tokens, hidden, generator=g)], "output": [torch.randn(2, tokens, hidden, generator=g)]}
    rgb_only = {k: [r.clone() for r in v] for k, v in residual.items()}
    for v in rgb_only.values():
        v[0][1] = 0
    with_control = raw_forward(pack, patched, x, t, tensors, meta, control=residual)
    with_rgb_control = raw_forward(pack, patched, x, t, tensors, meta, control=rgb_only)
    without = raw_forward(pack, patched, x, t, tensors, meta)
    assert torch.equal(with_control, with_rgb_control)
    assert (with_control[0] - without[0]).abs().max() > 1e-2  # the rgb row is steered


def test_input_model_is_unchanged_and_plain_flux_still_runs(pack, golden, tiny):
    import comfy.model_management as mm
    import comfy.patcher_extension

    tensors, meta = golden
    plain, patched, _ = tiny
    assert not plain.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL)
    assert "patches_replace" not in plain.model_options["transformer_options"]
    assert not plain.object_patches and not plain.get_additional_models()
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    raw_forward(pack, patched, x, torch.tensor([0.5, 0.5]), tensors, meta)  # leaves the patched clone loaded
    mm.load_models_gpu([plain])
    assert type(plain.model.diffusion_model.vector_in).__name__ == "MLPEmbedder"  # object patch undone
    with torch.no_grad():
        out = plain.model.diffusion_model(x, torch.tensor([0.5, 0.5]), tensors["case.txt"].repeat(2, 1, 1), y=tensors["case.vec"].repeat(2, 1), guidance=torch.full((2,), meta["guidance"]))
    core = core_model(pack, tensors, meta)
    to_tokens = pack.core.latents.pack
    with torch.no_grad():
        ref = core.base(to_tokens(x), pack.core.latents.image_ids(2, h, w), tensors["case.txt"].repeat(2, 1, 1), torch.zeros(2, 7, 3), torch.tensor([0.5, 0.5]), tensors["case.vec"].repeat(2, 1), torch.full((2,), meta["guidance"]))
    assert (to_tokens(out) - ref).abs().max().item() < TOL


def kohya_lora(key: str, out_features: int, in_features: int, rank: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    name = "lora_unet_" + key.replace(".", "_")
    return {
        f"{name}.lora_down.weight": torch.randn(rank, in_features, generator=g) * 0.3,
        f"{name}.lora_up.weight": torch.randn(out_features, rank, generator=g) * 0.3,
        f"{name}.alpha": torch.tensor(float(rank)),
    }


def test_lora_before_or_after_load_jointdit_matches_merged_weights(pack, golden, tiny, addon_checkpoint):
    """LoraLoaderModelOnly's path (comfy.sd.load_lora_for_models) before and after the patch, and in lowvram mode."""
    import comfy.model_management as mm
    import comfy.sd

    tensors, meta = golden
    plain, patched, _ = tiny
    hidden = meta["config"]["hidden_size"]
    lora = kohya_lora("double_blocks.0.img_attn.qkv", 3 * hidden, hidden) | kohya_lora("vector_in.in_layer", hidden, meta["config"]["vec_in_dim"], seed=1)
    after, _ = comfy.sd.load_lora_for_models(patched, None, lora, 0.8, 0)
    before_base, _ = comfy.sd.load_lora_for_models(plain, None, lora, 0.8, 0)
    before = pack.model_patch.apply_jointdit(before_base, addon_checkpoint())
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    t = torch.tensor([0.3, 0.8])
    out_after = raw_forward(pack, after, x, t, tensors, meta)
    out_before = raw_forward(pack, before, x, t, tensors, meta)
    # reference: the core model with the LoRA merged into the base weights
    core = core_model(pack, tensors, meta)
    with torch.no_grad():
        for key, module in (("double_blocks.0.img_attn.qkv", core.base.double_blocks[0].img_attn.qkv), ("vector_in.in_layer", core.base.vector_in.in_layer)):
            name = "lora_unet_" + key.replace(".", "_")
            module.weight += 0.8 * (lora[f"{name}.lora_up.weight"] @ lora[f"{name}.lora_down.weight"])
        to_tokens = pack.core.latents.pack
        ref = core(to_tokens(x), pack.core.latents.image_ids(2, h, w), tensors["case.txt"].repeat(2, 1, 1), torch.zeros(2, 7, 3), t, tensors["case.vec"].repeat(2, 1), torch.full((2,), meta["guidance"]))
    assert (to_tokens(out_after) - ref).abs().max().item() < TOL
    assert (to_tokens(out_before) - ref).abs().max().item() < TOL
    without = raw_forward(pack, patched, x, t, tensors, meta)
    assert (out_after - without).abs().max().item() > 1e-2
    # lowvram: weights cast per layer and the LoRA applied on the fly (ComfyUI's LowVramPatch)
    mm.unload_all_models()
    after.patch_model(device_to=after.load_device, lowvram_model_memory=1)
    try:
        assert after.model.model_lowvram
        import comfy.model_patcher
        import comfy.sampler_helpers

        options = comfy.model_patcher.create_model_options_clone(after.model_options)
        comfy.sampler_helpers.prepare_model_patcher(after, {}, options)
        options["transformer_options"][pack.model_patch.RUN_KEY] = pack.model_patch.JointRun(1)
        with torch.no_grad():
            lowvram = after.model.diffusion_model(x, t, tensors["case.txt"].repeat(2, 1, 1), y=tensors["case.vec"].repeat(2, 1), guidance=torch.full((2,), meta["guidance"]), transformer_options=options["transformer_options"])
    finally:
        after.unpatch_model(after.offload_device)
    assert (to_tokens(lowvram) - ref).abs().max().item() < TOL


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 0.05), (torch.float8_e4m3fn, 0.1)])
def test_low_precision_weights_follow_the_fp32_result(pack, golden, tiny, addon_checkpoint, dtype, tol):
    """bf16 weights, and fp8 weights computed in fp32 (manual cast, as UNETLoader's fp8 options): close to fp32."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    tensors, meta = golden
    plain, patched, _ = tiny
    model_config = comfy.supported_models.Flux(dict(plain.model.model_config.unet_config))
    model_config.set_inference_dtype(dtype, None if dtype == torch.bfloat16 else torch.float32)
    model = model_config.get_model({}, "")
    model.load_model_weights({k[len("base.") :]: v for k, v in tensors.items() if k.startswith("base.")}, "")
    low = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    low = pack.model_patch.apply_jointdit(low, addon_checkpoint())
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    t = torch.tensor([0.7, 0.7])
    ref = raw_forward(pack, patched, x, t, tensors, meta)
    out = raw_forward(pack, low, x, t, tensors, meta).float()
    assert torch.isfinite(out).all()
    assert ((out - ref).norm() / ref.norm()).item() < tol


def test_sampling_errors_are_clear(pack, golden, tiny):
    import comfy.model_management as mm

    tensors, meta = golden
    plain, patched, _ = tiny
    JointSampler = pack.sampler.JointSamplerAdvanced
    pos = conditioning(tensors, meta)
    kwargs = dict(seed=0, steps=2, schedule="flux_shifted", cfg=1.0, asw_strength=1.0, rgb_start=1.0, rgb_end=0.0, depth_start=1.0, depth_end=0.0)
    with pytest.raises(ValueError, match="multiples of 16"):
        JointSampler.execute(patched, pos, "depth_estimation", image={"samples": torch.zeros(1, 16, 9, 8)}, **kwargs)
    with pytest.raises(ValueError, match="resize the depth map"):
        JointSampler.execute(patched, pos, "custom", image={"samples": torch.zeros(1, 16, 8, 8)}, depth={"samples": torch.zeros(1, 16, 8, 12)}, **kwargs)
    with pytest.raises(ValueError, match="batch 2 and depth batch 3"):
        JointSampler.execute(patched, pos, "custom", image={"samples": torch.zeros(2, 16, 8, 8)}, depth={"samples": torch.zeros(3, 16, 8, 8)}, **kwargs)
    with pytest.raises(ValueError, match="connect an image LATENT"):
        JointSampler.execute(patched, pos, "depth_estimation", **kwargs)
    with pytest.raises(ValueError, match="needs a negative"):
        JointSampler.execute(patched, pos, "joint_generation", image={"samples": torch.zeros(1, 16, 8, 8)}, **(kwargs | {"cfg": 3.0}))
    with pytest.raises(ValueError, match="16 channels|FLUX latents"):
        JointSampler.execute(patched, pos, "depth_estimation", image={"samples": torch.zeros(1, 4, 8, 8)}, **kwargs)
    with pytest.raises(ValueError, match="already runs JointDiT"):
        pack.model_patch.apply_jointdit(patched, None)
    foreign = lambda args, extra: extra["original_block"](args)  # noqa: E731  (another node's block replacement)
    before = plain.clone()
    before.set_model_patch_replace(foreign, "dit", "double_block", 0)
    with pytest.raises(ValueError, match="cannot be combined"):
        pack.model_patch.apply_jointdit(before, None)
    after = patched.clone()
    after.set_model_patch_replace(foreign, "dit", "single_block", 1)
    h, w = meta["latent_hw"]
    with pytest.raises(RuntimeError, match="cannot be combined"):
        pack.sampler.sample_joint(after, pos, [1.0, 0.0], [1.0, 0.0], torch.randn(1, 16, h, w), torch.randn(1, 16, h, w))
    # a JointDiT MODEL in a plain sampler: a clear error instead of a crash in the blocks
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(patched)
    guider.set_conds(pos, pos)
    with pytest.raises(RuntimeError, match="JointSampler"):
        guider.sample(torch.randn(1, 16, h, w), torch.zeros(1, 16, h, w), comfy.samplers.ksampler("euler"), torch.tensor([1.0, 0.0]))
    mm.unload_all_models()


def test_batch_of_one_latent_is_repeated_and_output_shapes(pack, golden, tiny):
    tensors, meta = golden
    _, patched, _ = tiny
    z = torch.randn(1, 16, 8, 8)
    out = pack.sampler.JointSamplerAdvanced.execute(
        patched, conditioning(tensors, meta), "custom", seed=5, steps=1, schedule="linear", cfg=1.0, asw_strength=1.0,
        rgb_start=0.0, rgb_end=0.0, depth_start=1.0, depth_end=0.0, image={"samples": z}, depth={"samples": torch.zeros(3, 16, 8, 8)},
    )
    rgb, depth = out.result
    assert rgb["samples"].shape == depth["samples"].shape == (3, 16, 8, 8)
    assert torch.allclose(rgb["samples"], z.repeat(3, 1, 1, 1), atol=1e-5)  # the held image comes back


class IdentityVAE:
    """Stands in for ComfyUI's VAE: 'encodes' (B, H, W, 3) pixels to (B, 3, H, W) and back (exact)."""

    def encode(self, pixels):
        return pixels.permute(0, 3, 1, 2).clone()

    def decode(self, latent):
        return latent.permute(0, 2, 3, 1).clone()


def test_depth_nodes_read_the_addon_depth_transform(pack, golden, tiny, addon_checkpoint):
    plain, patched, _ = tiny
    tensors, _ = golden
    inverse_model = pack.model_patch.apply_jointdit(plain, addon_checkpoint("inverse"))
    depth = torch.rand(2, 8, 6)
    image = depth[..., None].expand(2, 8, 6, 3)
    vae = IdentityVAE()
    encode, decode = pack.depth.EncodeDepth.execute, pack.depth.DecodeDepth.execute
    (plain_latent,) = encode(vae, "auto", True, False, depth=image, model=patched).result
    (inverse_latent,) = encode(vae, "auto", True, False, depth_mask=depth, model=inverse_model).result
    assert torch.allclose(plain_latent["samples"][:, 0], depth, atol=1e-6)  # near = bright, as given
    assert torch.allclose(inverse_latent["samples"][:, 0], 1 - depth, atol=1e-6)  # the checkpoint's "inverse"
    for latent, model in ((plain_latent, patched), (inverse_latent, inverse_model)):
        out_image, out_mask, colour = decode(vae, latent, "auto", "turbo", model=model).result
        assert out_image.shape == (2, 8, 6, 3) and out_mask.shape == (2, 8, 6) and colour.shape == (2, 8, 6, 3)
        assert torch.allclose(out_mask, depth, atol=1e-6)  # back to near = bright
        assert torch.equal(out_image[..., 0], out_mask)
    with pytest.raises(ValueError, match="not a JointDiT model"):
        encode(vae, "auto", True, True, depth=image, model=plain)
    with pytest.raises(ValueError, match="needs a depth map"):
        encode(vae, "none", True, True)


def test_schedules_from_task_levels_and_sigmas_inputs(pack):
    def plan(steps, schedule, tokens, task, **sigmas):  # what JointSampler plans: the core's plan_sampling
        p = pack.core.sampler.plan_sampling(task, steps=steps, schedule=schedule, token_count=tokens, **sigmas)
        return list(p.rgb_sigmas), list(p.depth_sigmas)

    rgb, depth = plan(4, "flux_shifted", 48, "depth_estimation")
    assert rgb == [0.0] * 5 and depth == pytest.approx(pack.core.schedules.flux_shifted_schedule(4, 48))
    given = torch.tensor([1.0, 0.7, 0.2, 0.0])  # a SIGMAS input for the depth branch: 3 steps for both branches
    rgb, depth = plan(20, "linear", 48, "depth_to_image", depth_sigmas=given)
    assert depth == pytest.approx(given.tolist()) and rgb == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="different lengths"):
        plan(4, "linear", 48, "joint_generation", rgb_sigmas=given, depth_sigmas=given[1:])
    with pytest.raises(ValueError, match="must not increase"):
        plan(4, "linear", 48, "joint_generation", rgb_sigmas=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="unknown schedule"):
        plan(4, "karras", 48, "joint_generation")
