"""One JointDiT call of ComfyUI's Flux: the per-call state and the patches that read it.

Per-call state travels one way. The ``WrappersMP.DIFFUSION_MODEL`` wrapper (:class:`JointDiffusionWrapper`)
builds a :class:`JointCall` for each call of ComfyUI's ``Flux._forward`` and sets it in a ContextVar for
the duration of that call; every JointDiT piece that runs inside reads it through :func:`current_call`:

* :class:`JointBlockPatch` (``patches_replace["dit"]``) runs ComfyUI's block modules through
  :func:`~jointdit_core.joint.joint_double_block` / :func:`~jointdit_core.joint.joint_single_block`,
  with ComfyUI's ``optimized_attention`` as the attention (:func:`comfy_attention`);
* :class:`JointTxtIn` (a ``post_input`` patch) adds the depth rows' ``txt_in`` LoRA update to the
  output of ComfyUI's own ``txt_in``;
* :class:`JointVectorIn` (object patch of ``diffusion_model.vector_in``) adds the depth rows'
  ``vector_in`` LoRA updates. ``vector_in`` is called with the pooled text alone, so a ContextVar is
  the only channel that reaches it; the other pieces use the same one.

What the sampler tells the model (:class:`JointRun`: pairs per chunk, ASW strength) stays in
``transformer_options`` (it belongs to a sampling run, not to one call).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

import comfy.ldm.flux.math
import torch

from jointdit_core.addons import JointAddons
from jointdit_core.joint import AttentionFn, BranchLayout, JointInputs, add_lora, joint_double_block, joint_single_block, joint_vector_in

from .compat import check_transformer_options

RUN_KEY = "jointdit_run"  # transformer_options entry set by JointSampler: a JointRun
_CALL: contextvars.ContextVar = contextvars.ContextVar("jointdit_call", default=None)


@dataclass(frozen=True)
class JointRun:
    """What a sampler tells the patched model: ``pairs`` rgb/depth pairs per chunk, ASW strength, the
    branches being denoised in this run (a held branch is left out; read by the JointDiT Cache), and whether
    the calls hold windows of a larger latent (the Window Sampler)."""

    pairs: int
    asw_strength: float = 1.0
    denoising: tuple[str, ...] = ("rgb", "depth")
    windowed: bool = False

    def __deepcopy__(self, memo):  # model_options are deep-copied by ModelPatcher.clone()
        return self


@dataclass(frozen=True)
class JointCall:
    """One diffusion-model call.

    Attributes:
        flux: ComfyUI's Flux module (``comfy.ldm.flux.model.Flux``) being called.
        addons: the JointDiT addons (ComfyUI op layers, loaded by ComfyUI's memory management).
        joint: row layout, per-row timesteps and ASW weights of the batch.
        context: (B, T, context_in_dim) the raw T5 tokens of the call (input of ``txt_in``).
    """

    flux: torch.nn.Module
    addons: JointAddons
    joint: JointInputs
    context: torch.Tensor


def current_call() -> JointCall | None:
    """The :class:`JointCall` of the diffusion-model call running now, or None outside a JointDiT call."""
    return _CALL.get()


def comfy_attention(transformer_options: dict | None) -> AttentionFn:
    """ComfyUI's ``optimized_attention`` as the core's attention callable, called as ComfyUI's Flux calls it.

    ``optimized_attention`` (``comfy.ldm.modules.attention``) is the backend ComfyUI chose at startup
    (``--use-sage-attention``, ``--use-split-cross-attention``, xformers, PyTorch SDPA ...); it is taken
    from ``comfy.ldm.flux.math`` at each call, the binding ComfyUI's own Flux blocks use, so whatever
    makes native Flux blocks use a backend applies to JointDiT's blocks too. ``transformer_options`` carries
    per-run choices (``optimized_attention_override``, read by ComfyUI's ``wrap_attn`` in every supported
    release), passed as ComfyUI's Flux attention passes them.

    Returns:
        ``attend(q, k, v)``: q, k, v (B, H, L, D) -> (B, L, H*D).
    """
    options = transformer_options if transformer_options is not None else {}

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return comfy.ldm.flux.math.optimized_attention(q, k, v, q.shape[1], skip_reshape=True, transformer_options=options)

    return attend


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
        call = current_call()
        if call is None:
            return joint_vector_in(self, None, y, None)
        return joint_vector_in(self, call.addons.vector_in, y, call.joint)


class JointTxtIn:
    """``post_input`` patch: adds the depth rows' ``txt_in`` LoRA update to ComfyUI's ``txt_in`` output.

    ComfyUI's ``txt_in`` has already run on every row; only ``0.5 * B(A context)`` is added to the depth
    rows (the LoRA reads the raw T5 tokens of the call, :attr:`JointCall.context`). Outside a JointDiT
    call it returns its input unchanged.

    Raises:
        RuntimeError: the text tokens no longer match the context (another ``post_input`` patch ran first and
            added or removed tokens).
    """

    def __call__(self, args: dict) -> dict:
        call = current_call()
        if call is None:
            return args
        txt = args["txt"]
        if txt.shape[:2] != call.context.shape[:2]:
            raise RuntimeError(
                f"the text tokens ({tuple(txt.shape[:2])}) do not match the conditioning ({tuple(call.context.shape[:2])}): "
                "another post_input patch changed them before JointDiT's txt_in LoRA; JointDiT cannot be combined with it"
            )
        out = dict(args)
        out["txt"] = add_lora(txt, call.addons.txt_in, call.context.to(txt.dtype), call.joint)
        return out


class JointBlockPatch:
    """``patches_replace["dit"]`` entry running ComfyUI's block ``index`` through the joint block math."""

    def __init__(self, kind: str, index: int):
        self.kind, self.index = kind, index

    def __call__(self, args: dict, extra: dict) -> dict:
        call = current_call()
        if call is None:
            return extra["original_block"](args)
        attention = comfy_attention(args.get("transformer_options"))
        if self.kind == "double_block":
            img, txt = joint_double_block(
                call.flux.double_blocks[self.index],
                call.addons.double_blocks[self.index],
                args["img"],
                args["txt"],
                args["vec"],
                args["pe"],
                call.joint,
                attention=attention,
            )
            return {"img": img, "txt": txt}
        x = joint_single_block(
            call.flux.single_blocks[self.index],
            call.addons.single_blocks[self.index],
            args["img"],
            args["vec"],
            args["pe"],
            call.joint,
            attention=attention,
        )
        return {"img": x}


def check_patches(flux: torch.nn.Module, transformer_options: dict) -> None:
    """Raise RuntimeError if the blocks, ``txt_in`` patch or ``vector_in`` no longer carry JointDiT's patches."""
    replace = transformer_options.get("patches_replace", {}).get("dit", {})
    wanted = [("double_block", i) for i in range(len(flux.double_blocks))] + [("single_block", i) for i in range(len(flux.single_blocks))]
    foreign = [k for k in wanted if not isinstance(replace.get(k), JointBlockPatch)]
    if foreign:
        raise RuntimeError(
            f"the Flux blocks {foreign[:4]} are no longer JointDiT's: a node applied after LoadJointDiT replaced "
            "them (patches_replace['dit']); JointDiT cannot be combined with such nodes"
        )
    if not any(isinstance(p, JointTxtIn) for p in transformer_options.get("patches", {}).get("post_input", [])):
        raise RuntimeError("the model lost JointDiT's txt_in patch (post_input): reload the model with LoadJointDiT")
    if not isinstance(flux.vector_in, JointVectorIn):
        raise RuntimeError("the model's vector_in is not JointDiT's (its object patch was not applied): reload the model")


class JointDiffusionWrapper:
    """``WrappersMP.DIFFUSION_MODEL`` wrapper: sets up one joint call of ComfyUI's ``Flux._forward``.

    Reads the sampler's :class:`JointRun` from ``transformer_options[RUN_KEY]``, builds the
    :class:`JointCall` (row layout of the cond/uncond chunks, per-row timesteps), keeps ControlNet
    residuals on the rgb rows, and runs ComfyUI's forward with the call set for :func:`current_call`.

    Raises:
        RuntimeError: no JointRun (a plain sampler), or JointDiT's patches were replaced.
        ValueError: reference latents (Kontext) or a T5 attention mask, which JointDiT does not take.
    """

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
        check_patches(flux, transformer_options)
        check_transformer_options(transformer_options)
        layout = chunk_layout(x.shape[0], run.pairs)
        call = JointCall(flux, self.addons, JointInputs(layout, timestep.float(), run.asw_strength), context)
        token = _CALL.set(call)
        try:
            return executor(x, timestep, context, y, guidance, ref_latents, rgb_only_control(control, layout), transformer_options, **kwargs)
        finally:
            _CALL.reset(token)
