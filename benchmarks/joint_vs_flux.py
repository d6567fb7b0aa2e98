"""Benchmark: JointDiT forward vs plain Flux forward on the same weights and the same 2-row batch.

Prints time per step (one forward, no grad), peak transient memory, the measured joint/plain time
ratio and the FLOP floor (joint FLOPs / plain FLOPs, counted by torch.utils.flop_counter): cross
attention, the joint layers and the depth LoRAs are extra work the method needs, so a faithful
implementation cannot go below that floor.

    python benchmarks/joint_vs_flux.py                      # CPU, hidden 512, 4+8 blocks, 1024+128 tokens
    python benchmarks/joint_vs_flux.py --preset flux-dev --device cuda --dtype bfloat16  # 1024x1024 on a GPU

Timings alternate plain and joint runs and keep the best of each, so load from other processes
affects both alike. CPU peak memory is read from the process's VmHWM in a fresh subprocess per
variant (glibc mmap threshold pinned so freed tensors leave the RSS); CUDA uses max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from jointdit_core import FluxConfig, JointDiT
from jointdit_core.latents import image_ids, text_ids

PRESETS = {
    # hidden 512 (4 heads of 128), 4 double + 8 single blocks, 1024 image + 128 text tokens per row
    "cpu": dict(config=FluxConfig(hidden_size=512, num_heads=4, depth=4, depth_single_blocks=8), img_tokens=1024, txt_tokens=128),
    # FLUX.1-dev at 1024x1024: 4096 image + 512 text tokens per row
    "flux-dev": dict(config=FluxConfig(), img_tokens=4096, txt_tokens=512),
}


def build(preset: str, device: str, dtype: torch.dtype, seed: int = 0):
    spec = PRESETS[preset]
    config = spec["config"]
    torch.manual_seed(seed)
    with torch.device(device):
        model = JointDiT(config).to(dtype).eval()
        for p in model.addons.parameters():  # non-zero addons: the real ones are trained, not zero
            torch.nn.init.normal_(p, std=0.02)
    side = int(spec["img_tokens"] ** 0.5) * 2  # latent side; tokens are 2x2 patches
    rows = 2
    inputs = dict(
        img=torch.randn(rows, spec["img_tokens"], config.in_channels, device=device, dtype=dtype),
        img_ids=image_ids(rows, side, side, device=device, dtype=dtype),
        txt=torch.randn(rows, spec["txt_tokens"], config.context_in_dim, device=device, dtype=dtype),
        txt_ids=text_ids(rows, spec["txt_tokens"], device=device, dtype=dtype),
        timesteps=torch.tensor([0.7, 0.3], device=device, dtype=dtype),
        y=torch.randn(rows, config.vec_in_dim, device=device, dtype=dtype),
        guidance=torch.full((rows,), 3.5, device=device, dtype=dtype),
    )
    return model, inputs


def run(model, inputs, variant: str):
    with torch.no_grad():
        if variant == "joint":
            return model(**inputs)
        return model.base(**inputs)


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _sdpa_cpu_flops(query_shape, key_shape, *args, **kwargs) -> int:
    """Q K^T and A V of the CPU attention kernel, which FlopCounterMode does not count by itself."""
    b, h, lq, d = query_shape
    return 4 * b * h * lq * key_shape[2] * d


def count_flops(model, inputs, variant: str) -> int:
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={op: _sdpa_cpu_flops})
    with counter:
        run(model, inputs, variant)
    return counter.get_total_flops()


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(preset: str, variant: str, dtype: str) -> None:
    """Run in a subprocess: print the peak transient CPU memory of one forward (MiB) as JSON."""
    model, inputs = build(preset, "cpu", getattr(torch, dtype))
    run(model, inputs, variant)  # warm up allocator and kernels
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = vm_kib("VmRSS")
    run(model, inputs, variant)
    print(json.dumps({"peak_mib": (vm_kib("VmHWM") - before) / 1024, "resident_mib": before / 1024}))


def cpu_peak(preset: str, variant: str, dtype: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    cmd = [sys.executable, __file__, "--preset", preset, "--dtype", dtype, "--memory-child", variant]
    return json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-child", choices=["plain", "joint"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return peak_memory_child(args.preset, args.memory_child, args.dtype)

    dtype = getattr(torch, args.dtype)
    model, inputs = build(args.preset, args.device, dtype)
    spec = PRESETS[args.preset]
    print(f"preset {args.preset}: {spec['config']}")
    print(f"batch 2 rows x ({spec['img_tokens']} image + {spec['txt_tokens']} text tokens), {args.dtype} on {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    flops = {v: count_flops(model, inputs, v) for v in ("plain", "joint")}
    for variant in ("plain", "joint"):  # warm-up
        run(model, inputs, variant)
    sync(args.device)
    best = {"plain": float("inf"), "joint": float("inf")}
    for _ in range(args.repeats):
        for variant in ("plain", "joint"):
            sync(args.device)
            start = time.perf_counter()
            run(model, inputs, variant)
            sync(args.device)
            best[variant] = min(best[variant], time.perf_counter() - start)
    if args.device.startswith("cuda"):
        memory = {}
        for variant in ("plain", "joint"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            run(model, inputs, variant)
            sync(args.device)
            memory[variant] = {"peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20, "resident_mib": base / 2**20}
    else:
        del model, inputs
        memory = {v: cpu_peak(args.preset, v, args.dtype) for v in ("plain", "joint")}
    for variant in ("plain", "joint"):
        print(f"{variant:>5}: {best[variant] * 1000:9.1f} ms/step  {flops[variant] / 1e9:9.1f} GFLOP  "
              f"{flops[variant] / best[variant] / 1e9:7.1f} GFLOP/s  peak +{memory[variant]['peak_mib']:.0f} MiB "
              f"over {memory[variant]['resident_mib']:.0f} MiB resident")
    ratio, floor = best["joint"] / best["plain"], flops["joint"] / flops["plain"]
    print(f"joint / plain time: {ratio:.3f}x   FLOP floor: {floor:.3f}x   measured / floor: {ratio / floor:.3f}")


if __name__ == "__main__":
    main()
