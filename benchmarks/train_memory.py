"""Benchmark: training-step memory of JointDiT at FLUX.1-dev size, planned and (on a GPU) measured.

    python benchmarks/train_memory.py --table                    # the planner's table for FLUX.1-dev (CPU, seconds)
    python benchmarks/train_memory.py --measure --pairs 4 --resolution 512 --fp8-base --fused-backward --blocks-to-swap 40
                                                                 # on a CUDA GPU: random FLUX.1-dev-sized weights

``--measure`` runs ``--steps`` trainer steps (the trainer's loss, Adafactor, gradient checkpointing) on
random weights and prints seconds per step (median of the steps after the first) and
``torch.cuda.max_memory_allocated`` next to the planner's expected peak. ``--preset tiny`` runs the same
on the CPU with the tests' tiny model (timing only), to check the script.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jointdit_core import FluxConfig, JointDiT  # noqa: E402
from jointdit_core.config import LoraRanks  # noqa: E402
from jointdit_trainer.plan import CONTEXT_GIB, GIB, Settings, base_weight_placement, fitting_settings, memory_parts  # noqa: E402

TINY = (FluxConfig(in_channels=64, vec_in_dim=16, context_in_dim=32, hidden_size=64, num_heads=2, depth=1,
                   depth_single_blocks=1, axes_dim=(8, 12, 12)), LoraRanks(8, 8, 8, 8))


def table(budget_gib: float = 24.0) -> None:
    """Planner rows for FLUX.1-dev: 512/1024, batch 1/4, bf16/fp8 base, optimizer step after / fused into the
    backward, 0 and N swapped blocks (N: the fewest that fit the budget, else the most there can be)."""
    c, ranks = FluxConfig(), LoraRanks()
    found = fitting_settings(c, ranks, budget_gib * GIB, batches=(1, 4))
    fits = {(s.resolution, s.pairs, s.fp8_base, s.fused_backward): s.blocks_to_swap for s, _ in found}
    print(f"| resolution | pairs | base | fused backward | swapped blocks | base on GPU | addons + grads + Adafactor | activations (est.) | peak | fits 16 / {budget_gib:g} GiB | copied per step |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for resolution, pairs, fp8, fused in itertools.product((512, 1024), (1, 4), (False, True), (False, True)):
        for swap in sorted({0, fits.get((resolution, pairs, fp8, fused), c.depth + c.depth_single_blocks - 1)}):
            parts = memory_parts(c, ranks, Settings(resolution, pairs, fp8, swap, fused_backward=fused))
            base = sum(n for name, n in parts if name.startswith("base"))
            train = sum(n for name, n in parts if name.startswith(("addon", "Adafactor")))
            act = sum(n for name, n in parts if name.startswith("activations"))
            peak = base + train + act
            need = peak / GIB + CONTEXT_GIB
            copied = 3 * sum(base_weight_placement(c, torch.bfloat16, fp8, swap).cpu.values())  # forward, recomputation, backward
            print(f"| {resolution} | {pairs} | {'fp8' if fp8 else 'bf16'} | {'yes' if fused else 'no'} | {swap} | {base / GIB:.1f} | {train / GIB:.1f} | "
                  f"{act / GIB:.1f} | {peak / GIB:.1f} | {'yes' if need <= 16 else 'no'} / {'yes' if need <= budget_gib else 'no'} | {copied / 1e9:.1f} GB |")
    print("\n(copied per step: swapped weights moved CPU -> GPU in the forward, the recomputation and the backward; "
          "at ~25 GB/s, PCIe 4.0 x16, each 10 GB costs ~0.4 s when not hidden behind compute)")
    print(f"(fits: peak + {CONTEXT_GIB} GiB assumed for the CUDA context and workspaces within 16 / {budget_gib:g} GiB)")
    off = base_weight_placement(c, torch.bfloat16, True, 56)
    print(f"\n(fp8 base with 56 blocks swapped keeps {sum(off.cpu.values()) / GIB:.1f} GiB of base weights in CPU memory)")


def measure(args) -> None:
    """Trainer steps on random weights; prints s/step and peak memory next to the planner's figure."""
    from transformers.optimization import Adafactor

    from jointdit_trainer.config import TrainConfig
    from jointdit_trainer.frozen_base import place_frozen_base
    from jointdit_trainer.train import flow_matching_loss, fuse_optimizer_step

    c, ranks = TINY if args.preset == "tiny" else (FluxConfig(), LoraRanks())
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = JointDiT(c, ranks)  # random weights, float32 on the CPU
    model.base.to(torch.bfloat16)
    model.freeze_base()
    place_frozen_base(model.base, device, args.fp8_base, args.blocks_to_swap)
    model.addons.to(device)
    model.set_gradient_checkpointing(True)
    model.train()
    optimizer = Adafactor(list(model.addons.parameters()), lr=1e-5, scale_parameter=False, relative_step=False, warmup_init=False)
    if args.fused_backward:
        fuse_optimizer_step(list(model.addons.parameters()), optimizer)
    side, tokens = args.resolution // 8, args.t5_tokens
    batch = {"image_latent": torch.randn(args.pairs, c.in_channels // 4, side, side), "depth_latent": torch.randn(args.pairs, c.in_channels // 4, side, side),
             "t5": torch.randn(args.pairs, tokens, c.context_in_dim), "clip_pooled": torch.randn(args.pairs, c.vec_in_dim)}
    empty = {"t5": torch.zeros(tokens, c.context_in_dim), "clip_pooled": torch.zeros(c.vec_in_dim)}
    cfg, generator = TrainConfig(), torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16):
            loss, _, _ = flow_matching_loss(model, batch, empty, cfg, generator, device, c.guidance_embed)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    planned = sum(n for _, n in memory_parts(c, ranks, Settings(args.resolution, args.pairs, args.fp8_base, args.blocks_to_swap, fused_backward=args.fused_backward), t5_tokens=tokens))
    step = statistics.median(times[1:]) if len(times) > 1 else times[0]
    peak = f"{torch.cuda.max_memory_allocated(device) / GIB:.2f} GiB" if device.type == "cuda" else "n/a on CPU"
    print(f"{args.preset} {args.pairs} pair(s) {args.resolution}px fp8_base={args.fp8_base} fused={args.fused_backward} blocks_to_swap={args.blocks_to_swap} "
          f"on {device}: {step:.3f} s/step (median of {max(1, len(times) - 1)}), peak {peak}, planner {planned / GIB:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--preset", choices=("flux-dev", "tiny"), default="flux-dev")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--t5-tokens", type=int, default=512)
    parser.add_argument("--fp8-base", action="store_true")
    parser.add_argument("--blocks-to-swap", type=int, default=0)
    parser.add_argument("--fused-backward", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    if args.table:
        table(args.budget_gib)
    if args.measure:
        measure(args)


if __name__ == "__main__":
    main()
