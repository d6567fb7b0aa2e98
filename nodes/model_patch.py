"""LoadJointDiT: run JointDiT on ComfyUI's own Flux module through ComfyUI's extension points.

Nothing of ComfyUI's Flux is copied or replaced in place. The patch is a set of ModelPatcher entries
on a clone of the input MODEL, so weight dtypes (bf16, fp8), LoRAs (before or after), lowvram
offloading and ControlNet residuals keep working:

* a keyed ``WrappersMP.DIFFUSION_MODEL`` wrapper that, per call, builds the row layout and the per-row
  timesteps (:class:`~jointdit_core.joint.JointInputs`), keeps ControlNet residuals on the rgb rows,
  and hands the rest to ComfyUI's ``forward_orig``;
* a ``post_input`` patch (added per call) giving the depth rows the ``txt_in`` LoRA;
* ``patches_replace["dit"]`` replacements of every double/single block that run the same ComfyUI
  block modules through :func:`~jointdit_core.joint.joint_double_block` /
  :func:`~jointdit_core.joint.joint_single_block`;
* an object patch of ``diffusion_model.vector_in`` by a module holding the *same* ``in_layer`` /
  ``out_layer`` (state-dict keys unchanged, so LoRA keys still match) that adds the depth-branch
  LoRAs, so every block and the final layer see the depth rows' own pooled-text vector;
* the addon weights as an additional ModelPatcher, loaded and offloaded by ComfyUI's memory
  management together with the model.

The row layout comes from how ComfyUI batches: :mod:`.sampler` hands the model ``2P`` rows (P rgb
rows, then P depth rows) and ``comfy.samplers.calc_cond_batch`` concatenates one such copy per
cond/uncond chunk.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass

import comfy.ldm.flux.model
import comfy.model_base
import comfy.model_patcher
import comfy.patcher_extension
import torch
from comfy_api.latest import io

from jointdit_core.addons import JointAddons
from jointdit_core.checkpoint import load_addons
from jointdit_core.config import FluxConfig
from jointdit_core.joint import (
    BranchLayout,
    JointInputs,
    joint_double_block,
    joint_single_block,
    joint_txt_in,
    joint_vector_in,
)
from .folders import addon_files, addon_path

KEY = "jointdit"  # wrapper / additional-model / attachment key
RUN_KEY = "jointdit_run"  # transformer_options entry set by JointSampler: a JointRun
CALL_KEY = "jointdit_call"  # transformer_options entry for one diffusion-model call: a JointCall
_CALL: contextvars.ContextVar = contextvars.ContextVar("jointdit_call", default=None)

log = logging.getLogger("ComfyUI-JointDiT")


@dataclass(frozen=True)
class JointRun:
    """What a sampler tells the patched model: ``pairs`` rgb/depth pairs per chunk, ASW strength."""

    pairs: int
    asw_strength: float = 1.0

    def __deepcopy__(self, memo):  # model_options are deep-copied by ModelPatcher.clone()
        return self


@dataclass(frozen=True)
class JointDiTInfo:
    """Attachment on a patched MODEL: the addon file and its sidecar flags (read by the depth nodes)."""

    addon_name: str
    depth_transform: str
    config: FluxConfig


@dataclass
class JointCall:
    """One diffusion-model call: ComfyUI's Flux module, the addons, the joint inputs, the raw context."""

    flux: torch.nn.Module
    addons: JointAddons
    joint: JointInputs
    context: torch.Tensor


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


def chunk_layout(rows: int, pairs: int) -> BranchLayout:
    """Row layout of a ComfyUI model batch: ``rows // (2 * pairs)`` stacked copies of [P rgb, P depth].

    ``comfy.samplers.calc_cond_batch`` concatenates the sampler's whole batch once per cond/uncond
    chunk, so chunk ``c`` holds rgb rows ``c*2P + [0, P)`` and depth rows ``c*2P + [P, 2P)``.

    Raises:
        RuntimeError: ``rows`` is not a multiple of ``2 * pairs`` (someone split the batch).
    """
    per = 2 * pairs
    if pairs < 1 or rows % per:
        raise RuntimeError(
            f"JointDiT got a batch of {rows} rows, not a multiple of {per} (rgb + depth rows of {pairs} pairs): "
            "a node between JointSampler and the model changed the batch"
        )
    start = torch.arange(0, rows, per)[:, None]
    offsets = torch.arange(pairs)[None, :]
    return BranchLayout((start + offsets).flatten(), (start + pairs + offsets).flatten())


def rgb_only_control(control: dict | None, layout: BranchLayout) -> dict | None:
    """ControlNet residuals restricted to the rgb rows (depth rows get zero): the ControlNet steers the image.

    Args:
        control: ComfyUI's control dict, ``{"input": [(B, L, hidden) or None, ...], "output": [...]}``, or None.
        layout: the batch's rows.
    Returns:
        a new dict with new tensors (the ControlNet's own outputs are not modified).
    """
    if control is None:
        return None
    keep = torch.zeros(layout.rows)
    keep[layout.rgb_rows] = 1.0
    out = dict(control)
    for name in ("input", "output", "middle"):
        residuals = control.get(name)
        if residuals:
            out[name] = [None if r is None else r * keep.to(r)[(...,) + (None,) * (r.ndim - 1)] for r in residuals]
    return out


class JointVectorIn(torch.nn.Module):
    """Object patch for ``diffusion_model.vector_in``: same sub-modules, plus the depth rows' LoRAs.

    Holds ComfyUI's own ``in_layer`` / ``out_layer`` (so weight patches, LoRAs and lowvram casting act on
    them as before, and the state-dict keys do not change). During a JointDiT call it computes
    :func:`~jointdit_core.joint.joint_vector_in`; otherwise plain Flux ``out(silu(in(y)))``.
    """

    def __init__(self, vector_in: torch.nn.Module):
        super().__init__()
        self.in_layer = vector_in.in_layer
        self.silu = torch.nn.SiLU()
        self.out_layer = vector_in.out_layer

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        call = _CALL.get()
        if call is None:
            return joint_vector_in(self, None, y, None)
        return joint_vector_in(self, call.addons.vector_in, y, call.joint)


class JointTxtIn:
    """``post_input`` patch for one call: the text tokens of the depth rows get the ``txt_in`` LoRA."""

    def __init__(self, call: JointCall):
        self.call = call

    def __call__(self, args: dict) -> dict:
        c = self.call
        if args["txt"].shape[1] != c.context.shape[1]:
            raise RuntimeError("another post_input patch changed the text tokens before JointDiT's txt_in LoRA")
        out = dict(args)
        out["txt"] = joint_txt_in(c.flux.txt_in, c.addons.txt_in, c.context, c.joint).to(args["txt"].dtype)
        return out


class JointBlockPatch:
    """``patches_replace["dit"]`` entry running ComfyUI's block ``index`` through the joint block math."""

    def __init__(self, kind: str, index: int):
        self.kind, self.index = kind, index

    def __call__(self, args: dict, extra: dict) -> dict:
        call = (args.get("transformer_options") or {}).get(CALL_KEY)
        if call is None:
            return extra["original_block"](args)
        if self.kind == "double_block":
            img, txt = joint_double_block(
                call.flux.double_blocks[self.index],
                call.addons.double_blocks[self.index],
                args["img"],
                args["txt"],
                args["vec"],
                args["pe"],
                call.joint,
            )
            return {"img": img, "txt": txt}
        x = joint_single_block(
            call.flux.single_blocks[self.index], call.addons.single_blocks[self.index], args["img"], args["vec"], args["pe"], call.joint
        )
        return {"img": x}


def _check_patches(flux, transformer_options: dict) -> None:
    """Raise if the blocks or ``vector_in`` no longer carry JointDiT's patches (another node replaced them)."""
    replace = transformer_options.get("patches_replace", {}).get("dit", {})
    wanted = [("double_block", i) for i in range(len(flux.double_blocks))] + [("single_block", i) for i in range(len(flux.single_blocks))]
    foreign = [k for k in wanted if not isinstance(replace.get(k), JointBlockPatch)]
    if foreign:
        raise RuntimeError(
            f"the Flux blocks {foreign[:4]} are no longer JointDiT's: a node applied after LoadJointDiT replaced "
            "them (patches_replace['dit']); JointDiT cannot be combined with such nodes"
        )
    if not isinstance(flux.vector_in, JointVectorIn):
        raise RuntimeError("the model's vector_in is not JointDiT's (its object patch was not applied): reload the model")


class JointDiffusionWrapper:
    """``WrappersMP.DIFFUSION_MODEL`` wrapper: sets up one joint call of ComfyUI's ``Flux._forward``."""

    def __init__(self, addons: JointAddons):
        self.addons = addons

    def __call__(self, executor, x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs):
        run = transformer_options.get(RUN_KEY)
        if run is None:
            raise RuntimeError(
                "this MODEL runs JointDiT (LoadJointDiT): sample it with the JointSampler node, which batches "
                "rgb and depth rows with their own timesteps; KSampler / SamplerCustom cannot"
            )
        if ref_latents is not None:
            raise ValueError("JointDiT does not take reference latents (Flux Kontext); remove ReferenceLatent")
        if kwargs.get("attention_mask") is not None:
            raise ValueError("JointDiT runs without a T5 attention mask (as the official release); remove it from the conditioning")
        flux = executor.class_obj
        _check_patches(flux, transformer_options)
        layout = chunk_layout(x.shape[0], run.pairs)
        call = JointCall(flux, self.addons, JointInputs(layout, timestep.float(), run.asw_strength), context)
        options = dict(transformer_options)
        options[CALL_KEY] = call
        patches = dict(options.get("patches", {}))
        patches["post_input"] = [JointTxtIn(call)] + list(patches.get("post_input", []))
        options["patches"] = patches
        token = _CALL.set(call)
        try:
            return executor(x, timestep, context, y, guidance, ref_latents, rgb_only_control(control, layout), options, **kwargs)
        finally:
            _CALL.reset(token)


def _compute_dtype(model) -> torch.dtype:
    dtype = model.model.manual_cast_dtype or model.model.get_dtype()
    return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.bfloat16


def check_flux(model) -> comfy.ldm.flux.model.Flux:
    """ComfyUI's Flux module of a MODEL.

    Raises:
        ValueError: not FLUX.1 (or Fill-style extra input channels), already patched by LoadJointDiT, or its
            blocks replaced by another node.
    """
    if not isinstance(model.model, comfy.model_base.Flux):
        raise ValueError(
            f"LoadJointDiT needs a FLUX.1-dev MODEL (UNETLoader with flux1-dev.safetensors, or a Flux checkpoint); "
            f"got {type(model.model).__name__}"
        )
    dm = model.get_model_object("diffusion_model")
    if type(dm) is not comfy.ldm.flux.model.Flux or dm.params.in_channels != 16 or dm.params.out_channels != 16:
        raise ValueError(f"LoadJointDiT needs a plain FLUX.1 transformer (16 latent channels); got {type(dm).__name__}")
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


def apply_jointdit(model, addon_state: dict, ranks, depth_transform: str = "none", addon_name: str = "addons"):
    """A clone of ``model`` (ComfyUI ModelPatcher of FLUX.1) that runs JointDiT; ``model`` is unchanged.

    Args:
        model: ComfyUI MODEL (``comfy.model_patcher.ModelPatcher`` around ``comfy.model_base.Flux``).
        addon_state: official addon tensors (names as in ``jointdit_addons.safetensors``), checked by
            :func:`~jointdit_core.checkpoint.load_addons`.
        ranks: the file's LoRA ranks (``AddonCheckpoint.ranks``).
        depth_transform: the sidecar's ``depth_transform`` (recorded for the depth nodes).
    Returns:
        the patched clone.
    Raises:
        ValueError: not a plain Flux MODEL, already patched, or with another node's block replacements.
    """
    dm = check_flux(model)
    config = flux_config(dm)
    with torch.device("meta"):
        addons = JointAddons(config, ranks)
    addons.load_state_dict(addon_state, strict=True, assign=True)
    addons = addons.to(dtype=_compute_dtype(model)).eval().requires_grad_(False)
    addon_patcher = comfy.model_patcher.ModelPatcher(addons, load_device=model.load_device, offload_device=model.offload_device)

    patched = model.clone()
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, JointDiffusionWrapper(addons))
    for i in range(config.depth):
        patched.set_model_patch_replace(JointBlockPatch("double_block", i), "dit", "double_block", i)
    for i in range(config.depth_single_blocks):
        patched.set_model_patch_replace(JointBlockPatch("single_block", i), "dit", "single_block", i)
    patched.add_object_patch("diffusion_model.vector_in", JointVectorIn(model.get_model_object("diffusion_model.vector_in")))
    patched.set_additional_models(KEY, [addon_patcher])
    patched.set_attachments(KEY, JointDiTInfo(addon_name, depth_transform, config))
    return patched


def jointdit_info(model) -> JointDiTInfo | None:
    """The :class:`JointDiTInfo` of a MODEL patched by LoadJointDiT, else None."""
    return model.get_attachment(KEY) if model is not None else None


class LoadJointDiT(io.ComfyNode):
    """MODEL (FLUX.1-dev) + JointDiT addon file -> MODEL that runs JointDiT (input MODEL unchanged)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LoadJointDiT",
            display_name="Load JointDiT",
            category="JointDiT",
            description=(
                "Adds the JointDiT addons (depth-branch LoRAs and joint attention layers) to a FLUX.1-dev MODEL. "
                "Sample the result with JointSampler."
            ),
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1-dev from UNETLoader (flux1-dev.safetensors) or a Flux checkpoint loader."),
                io.Combo.Input(
                    "addon_name",
                    options=addon_files(),
                    tooltip="JointDiT addon file in models/jointdit (official: jointdit_addons.safetensors + .json).",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The FLUX.1 model running JointDiT.")],
        )

    @classmethod
    def execute(cls, model, addon_name: str) -> io.NodeOutput:
        dm = check_flux(model)
        checkpoint = load_addons(addon_path(addon_name), flux_config(dm))
        log.info("JointDiT: %s (depth_transform=%s)", addon_name, checkpoint.depth_transform)
        return io.NodeOutput(apply_jointdit(model, checkpoint.state_dict, checkpoint.ranks, checkpoint.depth_transform, addon_name))
