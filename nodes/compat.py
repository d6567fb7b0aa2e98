"""What a JointDiT MODEL can be combined with in ComfyUI: the refusals, each with what to do instead.

LoadJointDiT runs every Flux block itself (:mod:`.model_patch`), so a ComfyUI feature that works by
reaching *inside* ComfyUI's own Flux blocks, or by treating the model batch as one image per row, would
be silently skipped or silently wrong on a JointDiT MODEL. Such features are refused here with an error
naming the node; the rest works unchanged (README, "How it runs inside ComfyUI"):

* works: TorchCompileModel (the compiled ``diffusion_model`` runs the same wrapper, block replacements and
  ``vector_in`` object patch; tests compare it with the eager result), the fp8 ``--fast`` path (the
  joint blocks call ComfyUI's own block layers, so ``comfy.ops.fp8_ops`` runs their matrix products in
  fp8; the depth-branch LoRAs add their delta in the compute dtype). Select Model Device placed
  *before* LoadJointDiT moves the base before the addons are built for its device.
* refused at sampling (:func:`check_transformer_options`, called by the diffusion-model wrapper on
  every call): ``attn1_patch`` / ``attn1_output_patch`` (e.g. Normalized Attention Guidance,
  FluxKVCache), which newer ComfyUI's Flux blocks run around their attention and the joint blocks do
  not; EasyCache and LazyCache, which decide from the first row's sigma (the rgb branch: never engages
  while the rgb branch is held, and decides for both branches from the rgb schedule otherwise); the
  message names the JointDiT Cache node (:mod:`.step_cache`), which decides per branch.
* refused at deep-clone (:func:`refuse_device_clones`): multi-GPU nodes (MultiGPU CFG Split, Select
  Model Device choosing another GPU after LoadJointDiT), which rebuild the model per device from the loader's factory; the
  addons and the ``vector_in`` object patch are bound to the model they were loaded for.
* refused at LoadJointDiT (:func:`check_flux1`): Flux-family models that are not FLUX.1 (LongCat-Image,
  Flux.2, Ovis: no pooled-text ``vector_in``, extra text-position axes, shared modulation, other MLPs),
  and a MODEL that already carries multi-GPU clones.
"""

from __future__ import annotations

BLOCK_PATCHES = {  # transformer_options["patches"] entries newer ComfyUI runs inside its Flux blocks (0.3.64 does not)
    "attn1_patch": "an attention-input patch (attn1_patch)",
    "attn1_output_patch": "an attention-output patch (attn1_output_patch, e.g. Normalized Attention Guidance)",
}
STEP_CACHES = ("easycache", "lazycache")  # keys of EasyCache / LazyCache (transformer_options, wrappers)
MULTIGPU_KEY = "multigpu"  # additional-models key of ComfyUI's multi-GPU clones


class JointDiTCompatError(ValueError):
    """A ComfyUI node that JointDiT cannot be combined with (a ValueError: ComfyUI's Select Model Device
    turns RuntimeErrors of a loader into a silent pass-through, this one must reach the user)."""


def check_transformer_options(transformer_options: dict) -> None:
    """Raise if a node applied to the MODEL would be skipped or wrong inside JointDiT's joint blocks.

    Called by the ``DIFFUSION_MODEL`` wrapper on every call, with the call's ``transformer_options``
    (patches and wrappers of every node between LoadJointDiT and the sampler, in any order).

    Raises:
        JointDiTCompatError: an ``attn1_patch`` / ``attn1_output_patch`` is set, or EasyCache / LazyCache.
    """
    patches = transformer_options.get("patches") or {}
    for name, what in BLOCK_PATCHES.items():
        if patches.get(name):
            raise JointDiTCompatError(
                f"a node applied to this JointDiT MODEL adds {what}: ComfyUI runs it inside its own Flux blocks, "
                "and JointDiT replaces those blocks with its joint blocks, so it would be silently skipped. "
                "Remove that node (e.g. Normalized Attention Guidance, FluxKVCache, HyperTile, ToMe) from the JointDiT model's path"
            )
    wrappers = transformer_options.get("wrappers") or {}
    cache_keys = {key for per_type in wrappers.values() for key in per_type} & set(STEP_CACHES)
    if "easycache" in transformer_options or cache_keys:
        raise JointDiTCompatError(
            "EasyCache / LazyCache cannot speed up a JointDiT MODEL: they decide which steps to skip from the first "
            "row's sigma, which in a JointDiT batch is the rgb branch (held at 0 in depth estimation, so the cache "
            "never engages; elsewhere it decides for the depth branch from the rgb schedule). Remove the "
            "EasyCache / LazyCache node and use the JointDiT Cache node instead (per-branch decisions: only the branches "
            "being denoised decide); fewer JointSampler steps and TorchCompileModel also speed it up"
        )


def _refuse_device_clone(*args, **kwargs):
    raise JointDiTCompatError(
        "JointDiT cannot run on several devices: ComfyUI's multi-GPU nodes (MultiGPU CFG Split, Select Model "
        "Device choosing another GPU after LoadJointDiT) rebuild the model per device, and the JointDiT addons and "
        "its vector_in patch belong to the model they were loaded for. Remove MultiGPU CFG Split; to run on another "
        "GPU put Select Model Device before LoadJointDiT (or start ComfyUI with --cuda-device)"
    )


def refuse_device_clones(addon_patcher):
    """Make ComfyUI's per-device rebuild of the addon patcher fail with a clear error.

    ``ModelPatcher.deepclone_multigpu`` (ComfyUI 0.23+) rebuilds the model and every additional model
    through their ``cached_patcher_init`` factory; without one it raises a message telling the user to
    use a core loader. The factory set here raises :class:`JointDiTCompatError` instead (on releases
    without multi-GPU support the attribute is never read). Returns ``addon_patcher``.
    """
    addon_patcher.cached_patcher_init = (_refuse_device_clone, ())
    return addon_patcher


def _non_flux1_features(params) -> list[str]:
    """The FLUX.1-incompatible settings of a ``comfy.ldm.flux.model.FluxParams`` (empty for FLUX.1)."""
    found = []
    if params.vec_in_dim is None:
        found.append("no pooled-text vector_in (vec_in_dim None)")
    if getattr(params, "txt_ids_dims", None):
        found.append(f"text position axes {list(params.txt_ids_dims)}")
    others = (("global_modulation", "shared modulation"), ("txt_norm", "a text norm"), ("yak_mlp", "a gated MLP"), ("mlp_silu_act", "a SiLU-gated MLP"))
    for name, what in others:
        if getattr(params, name, False):
            found.append(what)
    if getattr(params, "ops_bias", True) is False:
        found.append("bias-free layers")
    return found


def check_flux1(model, diffusion_model) -> None:
    """Raise unless ``diffusion_model`` (ComfyUI's ``Flux`` of ``model``) is FLUX.1 and single-device.

    ComfyUI builds several non-FLUX.1 models (LongCat-Image, Flux.2, Ovis) from the same
    ``comfy.model_base.Flux`` / ``comfy.ldm.flux.model.Flux`` classes, with 16 latent channels; the
    JointDiT addons are trained on FLUX.1-dev and need its ``vector_in`` and block layout.

    Raises:
        JointDiTCompatError: a non-FLUX.1 setting, or a MODEL with multi-GPU clones (MultiGPU CFG Split
            before LoadJointDiT).
    """
    found = _non_flux1_features(diffusion_model.params)
    if found or getattr(diffusion_model, "vector_in", None) is None:
        found = found or ["no vector_in"]
        raise JointDiTCompatError(
            f"LoadJointDiT needs FLUX.1-dev; this MODEL ({type(model.model).__name__}) is a Flux-family model that is "
            f"not FLUX.1: {', '.join(found)}. Load flux1-dev.safetensors with UNETLoader (the JointDiT addons are "
            "trained on it)"
        )
    if model.additional_models.get(MULTIGPU_KEY):
        _refuse_device_clone()
