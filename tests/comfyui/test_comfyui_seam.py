"""How a JointDiT MODEL lives in ComfyUI: its attention backend, its addon weights in ComfyUI's memory
management, and the one-way per-call state.

* every attention call of every joint block goes through ComfyUI's ``optimized_attention`` (the backend
  a user picks: sage, xformers, split ...) and its per-run ``optimized_attention_override``;
* the addons are ComfyUI op layers in ComfyUI's ``CoreModelPatcher``; loaded in lowvram mode (a 1-byte
  budget: every op layer left on the offload device and cast per call) they give the resident result;
* the ``txt_in`` LoRA adds its update to ComfyUI's own ``txt_in`` output (``txt_in`` runs once per call).

Fixtures and helpers are the golden tests' (same tiny model, same reference).
"""

from __future__ import annotations

import pytest
import torch
from test_comfyui_golden import TOL, addon_checkpoint, pack, raw_forward, tiny  # noqa: F401  (fixtures)


def _forward_case(pack, golden):  # noqa: F811
    tensors, meta = golden
    case = next(c for c in meta["cases"] if c["kind"] == "forward")
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    return x, torch.tensor([case["t_rgb"], case["t_depth"]]), tensors[f"case.{case['output']}"]


def _blocks(meta) -> int:
    return meta["config"]["depth"] + meta["config"]["depth_single_blocks"]


def test_every_joint_attention_call_goes_through_comfys_backend(pack, golden, tiny, monkeypatch):  # noqa: F811
    """The backend ComfyUI's Flux uses (here swapped for split attention, with a spy) runs all 3 calls of every block."""
    import comfy.ldm.flux.math
    import comfy.ldm.modules.attention as attention

    tensors, meta = golden
    _, patched, _ = tiny
    x, t, ref = _forward_case(pack, golden)
    calls = []

    def spy(q, k, v, heads, **kwargs):
        calls.append((q.shape[0], k.shape[0], heads, "transformer_options" in kwargs))
        return attention.attention_split(q, k, v, heads, **kwargs)

    monkeypatch.setattr(comfy.ldm.flux.math, "optimized_attention", spy)
    out = raw_forward(pack, patched, x, t, tensors, meta)
    blocks = _blocks(meta)
    heads = meta["config"]["num_heads"]
    # per block: self attention over both rows, then rgb -> depth and depth -> rgb over one row each
    assert calls == [(2, 2, heads, True), (1, 1, heads, True), (1, 1, heads, True)] * blocks
    assert (pack.core.latents.pack(out) - ref).abs().max().item() < TOL


def test_attention_override_of_the_run_reaches_every_joint_block(pack, golden, tiny):  # noqa: F811
    """ComfyUI's per-run hook (``transformer_options["optimized_attention_override"]``) sees every joint call."""
    tensors, meta = golden
    _, patched, _ = tiny
    x, t, ref = _forward_case(pack, golden)
    seen = []

    def override(func, q, k, v, heads, **kwargs):
        seen.append((q.shape[0], kwargs["transformer_options"].get("block_type")))
        return func(q, k, v, heads, **kwargs)

    spied = patched.clone()
    spied.model_options["transformer_options"]["optimized_attention_override"] = override
    out = raw_forward(pack, spied, x, t, tensors, meta)
    assert [rows for rows, _ in seen] == [2, 1, 1] * _blocks(meta)
    if seen[0][1] is not None:  # newer ComfyUI tells the block type: double blocks first, then single blocks
        depth = meta["config"]["depth"]
        assert [kind for _, kind in seen] == ["double"] * (3 * depth) + ["single"] * (3 * (_blocks(meta) - depth))
    assert (pack.core.latents.pack(out) - ref).abs().max().item() < TOL


def _addon_patcher(patched):
    """The addon weights' patcher: LoadJointDiT's only additional model."""
    ((key, (patcher,)),) = patched.additional_models.items()
    return patcher


def _op_linears(addons) -> list[torch.nn.Module]:
    return [m for m in addons.modules() if isinstance(m, torch.nn.Linear)]


def test_addons_are_comfy_op_layers_in_comfys_patcher(pack, tiny, addon_checkpoint, monkeypatch):  # noqa: F811
    import comfy.model_patcher
    import comfy.ops

    plain, patched, _ = tiny
    patcher = _addon_patcher(patched)
    linears = _op_linears(patcher.model)
    assert len(linears) > 10 and all(isinstance(m, comfy.ops.CastWeightBiasOp) for m in linears)
    # the patcher class is ComfyUI's choice at the time of loading (main.py sets CoreModelPatcher for dynamic VRAM)
    core = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)

    class Chosen(comfy.model_patcher.ModelPatcher):
        pass

    monkeypatch.setattr(comfy.model_patcher, "CoreModelPatcher", Chosen, raising=False)
    assert type(_addon_patcher(pack.model_patch.apply_jointdit(plain, addon_checkpoint()))) is Chosen
    assert isinstance(patcher, core)


def _load_lowvram(patcher) -> None:
    """Load like ComfyUI's lowvram mode with a 1-byte budget: no op layer fits, all stay on the offload device."""
    patcher.patch_model(device_to=patcher.load_device, lowvram_model_memory=1)


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
def test_lowvram_addons_stay_offloaded_and_match_the_resident_run(pack, golden, tiny, stored, tmp_path):  # noqa: F811
    """Base and addons loaded in lowvram mode (addons cast per call from the offload device) = fully loaded run."""
    import comfy.model_management as mm

    tensors, meta = golden
    plain, _, _ = tiny
    addon = {k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")}
    path = tmp_path / "addon.safetensors"
    pack.core.checkpoint.save_addons(path, addon, dtype=stored)
    patched = pack.model_patch.apply_jointdit(plain, pack.core.checkpoint.load_addons(path))
    x, t, ref = _forward_case(pack, golden)
    resident = raw_forward(pack, patched, x, t, tensors, meta)
    if stored == torch.float32:
        assert (pack.core.latents.pack(resident) - ref).abs().max().item() < TOL

    mm.unload_all_models()
    addon_patcher = _addon_patcher(patched)
    linears = _op_linears(addon_patcher.model)
    _load_lowvram(patched)
    _load_lowvram(addon_patcher)
    try:
        assert addon_patcher.model.model_lowvram
        assert all(m.comfy_cast_weights for m in linears)  # ComfyUI casts (and moves) them per call
        assert all(m.weight.device == torch.device(addon_patcher.offload_device) for m in linears)
        assert all(m.weight.dtype == stored for m in linears)  # kept as stored, cast to the compute dtype per call
        lowvram = raw_forward(pack, patched, x, t, tensors, meta, load=False)
    finally:
        addon_patcher.unpatch_model(addon_patcher.offload_device)
        patched.unpatch_model(patched.offload_device)
    assert (lowvram - resident).abs().max().item() < 1e-4


def test_txt_in_runs_once_and_the_lora_update_is_added_to_its_output(pack, golden, tiny):  # noqa: F811
    """ComfyUI's txt_in runs once per call (no recompute of its output); the LoRA update is added to the depth rows."""
    tensors, meta = golden
    _, patched, _ = tiny
    x, t, ref = _forward_case(pack, golden)
    txt_in = patched.get_model_object("diffusion_model.txt_in")
    calls = []
    handle = txt_in.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    try:
        out = raw_forward(pack, patched, x, t, tensors, meta)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert (pack.core.latents.pack(out) - ref).abs().max().item() < TOL


def test_a_flux_type_model_with_a_text_norm_is_refused(pack, tiny, addon_checkpoint):  # noqa: F811
    """Newer ComfyUI Flux-type models may normalise the T5 tokens before txt_in: the txt_in LoRA would read other inputs."""
    import dataclasses

    import comfy.ldm.flux.model
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    if "txt_norm" not in {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}:
        pytest.skip("this ComfyUI's Flux has no txt_norm")
    plain, _, _ = tiny
    model_config = comfy.supported_models.Flux(dict(plain.model.model_config.unet_config, txt_norm=True))
    model_config.set_inference_dtype(torch.float32, None)
    model = comfy.model_patcher.ModelPatcher(model_config.get_model({}, ""), load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    with pytest.raises(ValueError, match="normalises its text tokens"):
        pack.model_patch.apply_jointdit(model, addon_checkpoint())


def test_under_dynamic_vram_patcher_choice_the_run_matches_the_reference(pack, golden, tiny, addon_checkpoint, monkeypatch):  # noqa: F811
    """CoreModelPatcher = ModelPatcherDynamic, as ComfyUI's main.py sets it when dynamic VRAM is on (v0.16+).

    Dynamic VRAM streams weights on NVIDIA GPUs only: for a CPU load device ModelPatcherDynamic hands back a
    plain ModelPatcher, which is what this checks on a machine without a GPU (with one, the addons stream).
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    dynamic = getattr(comfy.model_patcher, "ModelPatcherDynamic", None)
    if dynamic is None:
        pytest.skip("this ComfyUI has no dynamic VRAM (ModelPatcherDynamic, v0.16+)")
    tensors, meta = golden
    plain, _, _ = tiny
    monkeypatch.setattr(comfy.model_patcher, "CoreModelPatcher", dynamic)
    patched = pack.model_patch.apply_jointdit(plain, addon_checkpoint())
    patcher = _addon_patcher(patched)
    assert isinstance(patcher, dynamic if not mm.is_device_cpu(patched.load_device) else comfy.model_patcher.ModelPatcher)
    x, t, ref = _forward_case(pack, golden)
    out = raw_forward(pack, patched, x, t, tensors, meta)
    assert (pack.core.latents.pack(out) - ref).abs().max().item() < TOL
