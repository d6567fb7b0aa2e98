"""Make a FLUX.1 MODEL run JointDiT through ComfyUI's extension points (:func:`apply_jointdit`).

Nothing of ComfyUI's Flux is copied or replaced in place. The patch is a set of ModelPatcher entries
on a clone of the input MODEL, so weight dtypes (bf16, fp8), LoRAs (before or after), lowvram
offloading and ControlNet residuals keep working:

* a keyed ``WrappersMP.DIFFUSION_MODEL`` wrapper that sets up each call (:mod:`.joint_call`);
* a ``post_input`` patch adding the depth rows' ``txt_in`` LoRA update to ComfyUI's ``txt_in`` output;
* ``patches_replace["dit"]`` replacements of every double/single block that run the same ComfyUI
  block modules through the joint block math, with ComfyUI's attention backend;
* an object patch of ``diffusion_model.vector_in`` by a module holding the *same* ``in_layer`` /
  ``out_layer`` (state-dict keys unchanged, so LoRA keys still match) that adds the depth-branch
  LoRAs, so every block and the final layer see the depth rows' own pooled-text vector;
* the addon weights, built from ComfyUI's op classes, as an additional model in the patcher ComfyUI
  uses for such weights (``CoreModelPatcher``: dynamic VRAM where ComfyUI enables it), so ComfyUI
  loads, offloads and casts them like the base.

The row layout comes from how ComfyUI batches: :mod:`.sampler` hands the model ``2P`` rows (P rgb
rows, then P depth rows) and ``comfy.samplers.calc_cond_batch`` concatenates one such copy per
cond/uncond chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.ldm.flux.model
import comfy.model_base
import comfy.model_patcher
import comfy.ops
import comfy.patcher_extension
import torch

from jointdit_core.addons import JointAddons
from jointdit_core.checkpoint import AddonCheckpoint
from jointdit_core.config import FluxConfig
from .compat import check_flux1, refuse_device_clones
from .joint_call import RUN_KEY, JointBlockPatch, JointDiffusionWrapper, JointRun, JointTxtIn, JointVectorIn

__all__ = ["KEY", "RUN_KEY", "JointRun", "JointDiTInfo", "apply_jointdit", "check_flux", "flux_config", "jointdit_info"]

KEY = "jointdit"  # wrapper / additional-model / attachment key
COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class JointDiTInfo:
    """Attachment on a patched MODEL: the addon file and its sidecar flags (read by the depth nodes)."""

    addon_name: str
    depth_transform: str
    config: FluxConfig


def flux_config(diffusion_model) -> FluxConfig:
    """The :class:`FluxConfig` of a ComfyUI ``comfy.ldm.flux.model.Flux`` (from its ``params``)."""
    p = diffusion_model.params
    return FluxConfig(
        in_channels=p.in_channels * p.patch_size * p.patch_size,
        vec_in_dim=p.vec_in_dim,
        context_in_dim=p.context_in_dim,
        hidden_size=p.hidden_size,
        mlp_ratio=p.mlp_ratio,
        num_heads=p.num_heads,
        depth=p.depth,
        depth_single_blocks=p.depth_single_blocks,
        axes_dim=tuple(p.axes_dim),
        theta=p.theta,
        qkv_bias=p.qkv_bias,
        guidance_embed=p.guidance_embed,
    )


def check_flux(model) -> comfy.ldm.flux.model.Flux:
    """ComfyUI's Flux module of a MODEL.

    Raises:
        ValueError: not FLUX.1 (or Fill-style extra input channels, or a text norm before ``txt_in``), already
            patched by LoadJointDiT, or its blocks replaced by another node.
    """
    if not isinstance(model.model, comfy.model_base.Flux):
        raise ValueError(
            f"LoadJointDiT needs a FLUX.1-dev MODEL (UNETLoader with flux1-dev.safetensors, or a Flux checkpoint); "
            f"got {type(model.model).__name__}"
        )
    dm = model.get_model_object("diffusion_model")
    if type(dm) is not comfy.ldm.flux.model.Flux or dm.params.in_channels != 16 or dm.params.out_channels != 16:
        raise ValueError(f"LoadJointDiT needs a plain FLUX.1 transformer (16 latent channels); got {type(dm).__name__}")
    if getattr(dm, "txt_norm", None) is not None:  # newer ComfyUI: a norm between the T5 tokens and txt_in (not FLUX.1)
        raise ValueError("LoadJointDiT needs FLUX.1-dev: this Flux-type model normalises its text tokens before txt_in, which FLUX.1 does not")
    check_flux1(model, dm)
    if isinstance(model.get_model_object("diffusion_model.vector_in"), JointVectorIn) or model.get_wrappers(
        comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY
    ):
        raise ValueError("this MODEL already runs JointDiT: apply LoadJointDiT once")
    if model.model_options["transformer_options"].get("patches_replace", {}).get("dit"):
        raise ValueError(
            "another node replaced FLUX blocks of this MODEL (patches_replace['dit']); JointDiT runs every block "
            "itself and cannot be combined with it: leave that node out"
        )
    return dm


def compute_dtype(model) -> torch.dtype:
    """The dtype the MODEL computes in (its manual-cast dtype, else its weight dtype; bf16 for fp8 weights)."""
    dtype = model.model.manual_cast_dtype or model.model.get_dtype()
    return dtype if dtype in COMPUTE_DTYPES else torch.bfloat16


WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}  # as UNETLoader's


def build_addons(model, checkpoint: AddonCheckpoint, config: FluxConfig, weight_dtype: torch.dtype | None = None) -> JointAddons:
    """The checkpoint's addons as ComfyUI op layers, the way ComfyUI builds a model of their dtype.

    The weights are stored in ``weight_dtype`` when given (fp8: half of bf16's memory, cast per layer to
    the compute dtype like UNETLoader's fp8 weight dtypes), else in the file's dtype (bf16 in the official
    file; an fp8 file stays fp8) when all tensors share one, else in the MODEL's compute dtype; the op classes come from ``comfy.ops.pick_operations(weight dtype, compute
    dtype)``, as ComfyUI picks them for a diffusion model (``manual_cast`` casts per layer to the compute
    dtype, ``disable_weight_init`` computes in the weight dtype; both cast and offload under lowvram and
    dynamic VRAM). Built on the meta device, the file's tensors are assigned without a copy.
    """
    compute = compute_dtype(model)
    stored = {t.dtype for t in checkpoint.state_dict.values()}
    if weight_dtype is None:
        weight_dtype = stored.pop() if len(stored) == 1 else compute
    operations = comfy.ops.pick_operations(
        weight_dtype, None if weight_dtype == compute else compute, load_device=model.load_device, disable_fast_fp8=True
    )
    with torch.device("meta"):
        addons = JointAddons(config, checkpoint.ranks, operations=operations)
    addons.load_state_dict({k: v.to(weight_dtype) for k, v in checkpoint.state_dict.items()}, strict=True, assign=True)
    return addons.eval().requires_grad_(False)


def addon_patcher(model, addons: JointAddons):
    """The patcher ComfyUI uses for such weights: ``CoreModelPatcher`` (``ModelPatcherDynamic`` under dynamic
    VRAM, ComfyUI v0.16+ on NVIDIA), plain ``ModelPatcher`` where ComfyUI has no other."""
    patcher = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    return patcher(addons, load_device=model.load_device, offload_device=model.offload_device)


def apply_jointdit(model, checkpoint: AddonCheckpoint, addon_name: str | None = None, weight_dtype: str = "default"):
    """A clone of ``model`` (ComfyUI ModelPatcher of FLUX.1) that runs JointDiT; ``model`` is unchanged.

    Args:
        model: ComfyUI MODEL (``comfy.model_patcher.ModelPatcher`` around ``comfy.model_base.Flux``).
        checkpoint: the addon file as :func:`~jointdit_core.checkpoint.load_addons` read and checked it
            (tensors, LoRA ranks, sidecar flags).
        addon_name: the name shown to users (default: the file name).
        weight_dtype: how the addon weights are stored: "default" (the file's dtype), "fp8_e4m3fn" or
            "fp8_e5m2" (see :func:`build_addons`).
    Returns:
        the patched clone.
    Raises:
        ValueError: not a plain Flux MODEL, already patched, or with another node's block replacements;
            an unknown ``weight_dtype``.
    """
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown addon weight_dtype {weight_dtype!r}; choose one of {list(WEIGHT_DTYPES)}")
    dm = check_flux(model)
    config = flux_config(dm)
    addons = build_addons(model, checkpoint, config, WEIGHT_DTYPES[weight_dtype])

    patched = model.clone()
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, JointDiffusionWrapper(addons))
    for i in range(config.depth):
        patched.set_model_patch_replace(JointBlockPatch("double_block", i), "dit", "double_block", i)
    for i in range(config.depth_single_blocks):
        patched.set_model_patch_replace(JointBlockPatch("single_block", i), "dit", "single_block", i)
    # first of the post_input patches, so the LoRA update is added to txt_in's own output
    patches = patched.model_options["transformer_options"].setdefault("patches", {})
    patches["post_input"] = [JointTxtIn()] + list(patches.get("post_input", []))
    patched.add_object_patch("diffusion_model.vector_in", JointVectorIn(model.get_model_object("diffusion_model.vector_in")))
    patched.set_additional_models(KEY, [refuse_device_clones(addon_patcher(model, addons))])
    name = addon_name if addon_name is not None else checkpoint.path.name
    patched.set_attachments(KEY, JointDiTInfo(name, checkpoint.depth_transform, config))
    return patched


def jointdit_info(model) -> JointDiTInfo | None:
    """The :class:`JointDiTInfo` of a MODEL patched by LoadJointDiT, else None."""
    return model.get_attachment(KEY) if model is not None else None
