"""Benchmark: JointDiT inside ComfyUI's model management against plain Flux, with each speed / memory option.

One command, one Markdown table: per variant the time per sampling step, the time of one 20-step image,
the model evaluations run, the peak and resident memory. Every variant samples through ComfyUI itself
(``CFGGuider`` loads the models with ``load_models_gpu``, runs wrappers and patches), with random weights:

* ``flux``: plain FLUX.1 (one image row, ComfyUI's Euler sampler);
* ``joint``: JointDiT joint generation (one rgb + one depth row, JointSampler's loop);
* ``joint+cache``: the same with the JointDiT Cache node at its default threshold;
* ``joint+compile``: TorchCompileModel on the JointDiT MODEL (``--compile-backend``, inductor by default);
* ``joint fp8 base``: the base in fp8_e4m3fn (computed in bf16), as UNETLoader's weight_dtype;
* ``joint fp8 addons``: Load JointDiT's weight_dtype fp8_e4m3fn.

    python benchmarks/comfyui_speed.py --comfyui /path/to/ComfyUI --preset flux-dev     # 1024x1024, a CUDA GPU
    python benchmarks/comfyui_speed.py --comfyui /path/to/ComfyUI --preset cpu          # small, seconds on a CPU

Run it with the Python that runs ComfyUI. Times are the best of ``--repeats`` runs after a warm-up run
(model loading, compilation and the cache's first decisions excluded from the best); peak memory is
CUDA's ``max_memory_allocated`` during a run (not measured on the CPU: "-").
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui_jointdit_benchmark"
VARIANTS = ("flux", "joint", "joint+cache", "joint+compile", "joint fp8 base", "joint fp8 addons")
PRESETS = {
    # FLUX.1-dev at 1024x1024: 128x128 latent (4096 image tokens), 512 T5 tokens
    "flux-dev": dict(flux=dict(hidden_size=3072, num_heads=24, depth=19, depth_single_blocks=38), latent=128, txt_tokens=512, steps=20),
    # FLUX.1-dev width (hidden 3072, 24 heads) with 1 + 1 blocks, 32x32 latent, 32 T5 tokens, 6 steps: per-step costs on a CPU
    "cpu-flux-width": dict(flux=dict(hidden_size=3072, num_heads=24, depth=1, depth_single_blocks=1), latent=32, txt_tokens=32, steps=6),
    # small: hidden 256 (2 heads of 128), 2 + 2 blocks, 16x16 latent, 16 T5 tokens, 3 steps
    "cpu": dict(flux=dict(hidden_size=256, num_heads=2, depth=2, depth_single_blocks=2), latent=16, txt_tokens=16, steps=3),
}


def load_comfyui(path: Path):
    """ComfyUI importable in this process (CPU mode without CUDA) and this pack imported as a custom node."""
    sys.path[:0] = [str(path), str(REPO)]
    import torch
    from comfy.cli_args import args

    if not torch.cuda.is_available():
        args.cpu = True
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = pack
        spec.loader.exec_module(pack)
    return lambda name: importlib.import_module(f"{PACK_NAME}.{name}")  # noqa: E731


def flux_patcher(flux: dict, weight_dtype, compute_dtype, seed: int = 0):
    """A ComfyUI ModelPatcher of a FLUX.1-structured model with random weights (normal, std 0.02)."""
    import dataclasses

    import comfy.ldm.flux.model
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    config = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, "vec_in_dim": 768, "context_in_dim": 4096,
              "mlp_ratio": 4.0, "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True, "guidance_embed": True, **flux}
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}:
        config["txt_ids_dims"] = []  # FLUX.1's value of a field newer ComfyUI requires
    model_config = comfy.supported_models.Flux(config)
    model_config.set_inference_dtype(weight_dtype, None if weight_dtype == compute_dtype else compute_dtype)
    device = mm.get_torch_device()
    model = model_config.get_model({}, "", device=device)
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, device=device, dtype=compute_dtype) * 0.02)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())


def random_addons(flux: dict, seed: int = 1):
    """An :class:`AddonCheckpoint` of random addons (normal, std 0.02; the official LoRA ranks) in bf16."""
    import torch

    from jointdit_core.addons import JointAddons
    from jointdit_core.checkpoint import OFFICIAL_SIDECAR, AddonCheckpoint
    from jointdit_core.config import FluxConfig, LoraRanks

    torch.manual_seed(seed)
    addons = JointAddons(FluxConfig(**flux), LoraRanks())
    state = {k: (torch.randn_like(v) * 0.02).to(torch.bfloat16) for k, v in addons.state_dict().items()}
    return AddonCheckpoint(state, dict(OFFICIAL_SIDECAR), LoraRanks(), Path("random_addons.safetensors"), None)


def conditioning(txt_tokens: int, seed: int = 2):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, txt_tokens, 4096, generator=g), {"pooled_output": torch.randn(1, 768, generator=g), "guidance": 3.5}]]


def sample_flux(model, positive, sigmas, latent: int):
    """Plain Flux through ComfyUI's CFGGuider and Euler sampler (what KSampler runs)."""
    import comfy.samplers
    import torch

    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive})
    guider.set_cfg(1.0)
    noise = torch.randn(1, 16, latent, latent, generator=torch.Generator().manual_seed(0))
    guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), torch.tensor(sigmas), disable_pbar=True, seed=0)


def sample_joint(load, model, positive, sigmas, latent: int):
    """JointDiT joint generation through JointSampler's ComfyUI path."""
    import torch

    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(1, 16, latent, latent, generator=g) for _ in range(2)]
    load("nodes.sampler").sample_joint(model, positive, sigmas, sigmas, *noise)


class Evaluations:
    """An innermost ``DIFFUSION_MODEL`` wrapper counting the model evaluations actually computed."""

    def __init__(self):
        self.count = 0

    def __call__(self, executor, *args, **kwargs):
        self.count += 1
        return executor(*args, **kwargs)


def build_variant(load, variant: str, preset: dict, compile_backend: str):
    import torch

    import comfy.model_management as mm

    bf16 = torch.bfloat16 if mm.get_torch_device().type == "cuda" else torch.float32
    base = flux_patcher(preset["flux"], torch.float8_e4m3fn if variant == "joint fp8 base" else bf16, bf16)
    if variant == "flux":
        return base
    model = load("nodes.model_patch").apply_jointdit(base, random_addons(preset["flux"]), "random", "fp8_e4m3fn" if variant == "joint fp8 addons" else "default")
    if variant == "joint+cache":
        import comfy.patcher_extension

        cache = load("nodes.step_cache")
        model = cache.apply_cache(model, importlib.import_module("jointdit_core.step_cache").CacheSettings(cache.DEFAULT_THRESHOLD))
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "benchmark", Evaluations())
    if variant == "joint+compile":
        import comfy_api.torch_helpers.torch_compile as torch_compile

        model = model.clone()
        torch_compile.set_torch_compile_wrapper(model=model, backend=compile_backend)
    return model


def measure(load, variant: str, preset: dict, repeats: int, compile_backend: str) -> dict:
    """Time (best of ``repeats`` after a warm-up) and peak memory of one sampling run of ``variant``."""
    import comfy.model_management as mm
    import comfy.patcher_extension
    import torch

    from jointdit_core.schedules import flux_shifted_schedule

    latent, steps = preset["latent"], preset["steps"]
    sigmas = flux_shifted_schedule(steps, (latent // 2) ** 2)
    positive = conditioning(preset["txt_tokens"])
    model = build_variant(load, variant, preset, compile_backend)
    run = (lambda: sample_flux(model, positive, sigmas, latent)) if variant == "flux" else (lambda: sample_joint(load, model, positive, sigmas, latent))
    counters = model.get_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "benchmark")
    cuda = mm.get_torch_device().type == "cuda"
    run()  # warm-up: loading, compilation
    best, peak, evaluations = float("inf"), None, steps
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for counter in counters:
            counter.count = 0
        start = time.perf_counter()
        run()
        evaluations = counters[0].count if counters else steps
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
        best = min(best, time.perf_counter() - start)
    resident = sum(m.model_loaded_memory() for m in mm.current_loaded_models) / 2**30 if cuda else None
    del model
    mm.unload_all_models()
    gc.collect()
    mm.soft_empty_cache()
    return {"variant": variant, "ms_per_step": 1000 * best / steps, "steps": steps, "evaluations": evaluations, "peak_gib": peak, "resident_gib": resident}


def table(rows: list[dict]) -> str:
    """The Markdown table of :func:`measure` results (20-step image time scaled from the measured steps)."""
    def gib(v):
        return "-" if v is None else f"{v:.1f}"

    lines = ["| variant | ms / step | s / 20-step image | model evaluations | peak GiB | resident GiB |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ms_per_step']:.1f} | {r['ms_per_step'] * 20 / 1000:.2f} | {r['evaluations']}/{r['steps']} | {gib(r['peak_gib'])} | {gib(r['resident_gib'])} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (default: $COMFYUI_PATH)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="flux-dev")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile-backend", default="inductor", help="TorchCompileModel's backend (inductor; eager = Dynamo only)")
    args = parser.parse_args(argv)
    if not args.comfyui:
        parser.error("give --comfyui /path/to/ComfyUI (or set COMFYUI_PATH)")
    load = load_comfyui(Path(args.comfyui).expanduser().resolve())
    import comfy.model_management as mm
    import torch

    preset = PRESETS[args.preset]
    print(f"preset {args.preset}: {preset}, device {mm.get_torch_device()}, torch {torch.__version__}")
    rows = [measure(load, v, preset, args.repeats, args.compile_backend) for v in args.variants]
    out = table(rows)
    print(out)
    return out


if __name__ == "__main__":
    main()
