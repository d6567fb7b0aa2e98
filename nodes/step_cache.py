"""JointDiT Cache: the joint-aware step cache (:mod:`jointdit_core.step_cache`) on a JointDiT MODEL.

Built on ComfyUI's wrapper mechanism, as ComfyUI's EasyCache is (``comfy_extras/nodes_easycache.py``);
nothing of Flux's forward is replaced, so LoRAs, fp8 / GGUF bases, lowvram and TorchCompileModel keep
working:

* an ``OUTER_SAMPLE`` wrapper gives every sampling run a fresh :class:`JointStepCache` (on a copy of the
  guider's model options) for the branches the run denoises, logs what it saved, and drops the state when
  the run ends, also when it is interrupted or fails;
* a ``DIFFUSION_MODEL`` wrapper, inside LoadJointDiT's, answers a model call from the cache or computes
  it. The chunks of a call are ComfyUI's cond / uncond conditionings (``transformer_options["uuids"]``),
  each ``[P rgb rows, P depth rows]`` (:func:`~.joint_call.chunk_layout`).
"""

from __future__ import annotations

import logging

import comfy.model_patcher
import comfy.patcher_extension
from comfy_api.latest import io

from jointdit_core.step_cache import CacheSettings, Chunk, JointStepCache
from .joint_call import RUN_KEY, chunk_layout
from .model_patch import jointdit_info

log = logging.getLogger("ComfyUI-JointDiT")

KEY = "jointdit_cache"  # wrapper key, and transformer_options entry of the settings
STATE_KEY = "jointdit_cache_state"  # transformer_options entry of one run's JointStepCache
DEFAULT_THRESHOLD = 0.05  # chosen on the demo world: README, "JointDiT Cache measured"


def call_chunks(rows: int, pairs: int, uuids) -> list[Chunk]:
    """The chunks of a model batch of ``rows`` rows: one per conditioning, keyed by its uuid (else its index)."""
    layout = chunk_layout(rows, pairs)
    count = rows // (2 * pairs)
    keys = list(uuids) if uuids is not None and len(uuids) == count else list(range(count))
    rgb, depth = layout.rgb_rows.view(count, pairs), layout.depth_rows.view(count, pairs)
    return [Chunk(key, {"rgb": rgb[c], "depth": depth[c]}) for c, key in enumerate(keys)]


def cache_diffusion_wrapper(executor, x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs):
    """``DIFFUSION_MODEL`` wrapper: the model output from the run's cache, or computed (and remembered)."""
    cache = transformer_options.get(STATE_KEY)
    run = transformer_options.get(RUN_KEY)
    compute = lambda: executor(x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs)  # noqa: E731
    if cache is None or run is None:  # not under JointSampler: LoadJointDiT's wrapper says what to do
        return compute()
    chunks = call_chunks(x.shape[0], run.pairs, transformer_options.get("uuids"))
    return cache(compute, x, timestep.float(), chunks)


def cache_sample_wrapper(executor, *args, **kwargs):
    """``OUTER_SAMPLE`` wrapper: one fresh cache per sampling run, dropped when the run ends (also on an error)."""
    guider = executor.class_obj
    original = guider.model_options
    guider.model_options = comfy.model_patcher.create_model_options_clone(original)
    options = guider.model_options["transformer_options"]
    run = options.get(RUN_KEY)
    if run is not None and run.windowed:  # successive calls of one step hold different windows: nothing to compare
        raise ValueError(
            "JointDiT Cache does not work with the JointDiT Window Sampler yet: take the cache node out of this MODEL's "
            "path for panoramas, or sample with JointDiT Sampler"
        )
    cache = JointStepCache(options[KEY], run.denoising if run is not None else ("rgb", "depth"))
    options[STATE_KEY] = cache
    try:
        return executor(*args, **kwargs)
    finally:
        total = cache.computed + cache.reused
        if total:
            log.info(
                "JointDiT Cache: %d of %d model calls answered from the cache (%.2fx fewer evaluations; deciding branches: %s)",
                cache.reused, total, total / max(cache.computed, 1), ", ".join(cache.denoising) or "none",
            )
        cache.reset()
        guider.model_options = original


def apply_cache(model, settings: CacheSettings):
    """A clone of a JointDiT MODEL that runs with the step cache. Raises ValueError for a MODEL without JointDiT."""
    if jointdit_info(model) is None:
        raise ValueError("JointDiT Cache needs a MODEL from Load JointDiT (for plain Flux use ComfyUI's EasyCache)")
    patched = model.clone()
    patched.model_options["transformer_options"][KEY] = settings
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, cache_sample_wrapper)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, cache_diffusion_wrapper)
    return patched


class JointDiTCache(io.ComfyNode):
    """MODEL (from Load JointDiT) -> the same MODEL with the joint-aware step cache."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTCache",
            display_name="JointDiT Cache",
            category="JointDiT",
            description=(
                "Skips model evaluations whose output can be predicted from the last computed one (EasyCache's rule, "
                "per branch). Only the branches being denoised decide: depth in depth estimation, rgb in depth-to-image, "
                "both in joint generation. Threshold 0 gives the uncached result exactly."
            ),
            inputs=[
                io.Model.Input("model", tooltip="A MODEL from Load JointDiT (LoRAs, fp8/GGUF bases and TorchCompileModel may be applied too)."),
                io.Float.Input(
                    "threshold", default=DEFAULT_THRESHOLD, min=0.0, max=3.0, step=0.01,
                    tooltip="Skip while every denoising branch's predicted relative output change since its last computed step is "
                    "below this. Higher = faster, less exact; 0 = off.",
                ),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="Caching starts when a branch's sigma has fallen to 1 - start_percent."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Caching stops when a branch's sigma has fallen to 1 - end_percent."),
            ],
            outputs=[io.Model.Output(tooltip="The JointDiT MODEL with the step cache; sample it with JointSampler.")],
        )

    @classmethod
    def execute(cls, model, threshold: float, start_percent: float, end_percent: float) -> io.NodeOutput:
        return io.NodeOutput(apply_cache(model, CacheSettings(threshold, start_percent, end_percent)))
