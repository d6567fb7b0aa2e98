"""Resident weight memory of FLUX.1-dev + JointDiT addons at full size, and whether it fits 12 / 16 / 24 GiB cards.

Weights are counted from the official tensor names and shapes (``tests/data/official_keys.json``: the
BFL flux1-dev layout and the official addon file), per storage format:

* bf16: 2 bytes per value; fp8 (UNETLoader's / Load JointDiT's fp8_e4m3fn or e5m2): 1 byte;
* GGUF Q8_0 / Q4_0 as ComfyUI-GGUF's ``tools/convert.py`` writes them: 1-D tensors and tensors of at most
  1024 values in F32, every other tensor in 32-value blocks of 34 bytes (Q8_0) or 18 bytes (Q4_0).

The activation peak is the most live tensor memory during one joint forward at 1024x1024 (one rgb + one
depth row, 4096 image + 512 text tokens each, bf16, no grad), traced with the real model code on
FakeTensors (``torch.distributed._tools.mem_tracker.MemTracker`` under ``FakeTensorMode``: every
allocation at the true shapes, no arithmetic). A card fits a combination when weights + activations +
``--reserve`` (CUDA context and ComfyUI's inference reserve) are at most its memory; otherwise ComfyUI
still runs it in lowvram mode, streaming weights per layer (slower).

    python benchmarks/memory_table.py                 # weights + the traced activation peak (about a minute)
    python benchmarks/memory_table.py --activations 0  # weights only, with a given activation peak in GiB
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

KEYS = Path(__file__).resolve().parents[1] / "tests" / "data" / "official_keys.json"
GGUF_BLOCK = {"Q8_0": 34, "Q4_0": 18}  # bytes per block of 32 values
BASE_FORMATS = ("bf16", "fp8", "Q8_0", "Q4_0")
ADDON_FORMATS = ("bf16", "fp8")
CARDS_GIB = (12, 16, 24)


def tensor_bytes(shape: list[int], fmt: str) -> int:
    """Bytes of one tensor of ``shape`` stored as ``fmt`` (bf16, fp8, or GGUF Q8_0 / Q4_0 as ComfyUI-GGUF converts)."""
    n = math.prod(shape)
    if fmt == "bf16":
        return 2 * n
    if fmt == "fp8":
        return n
    if len(shape) == 1 or n <= 1024:
        return 4 * n
    return math.ceil(n / 32) * GGUF_BLOCK[fmt]


def weight_gib(shapes: dict[str, list[int]], fmt: str) -> float:
    return sum(tensor_bytes(s, fmt) for s in shapes.values()) / 2**30


def traced_activation_gib(rows: int = 2, img_tokens: int = 4096, txt_tokens: int = 512) -> float:
    """Peak live activation memory (GiB) of one bf16 joint forward of FLUX.1-dev size, traced on FakeTensors."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    from jointdit_core import FluxConfig, JointDiT, joint
    from jointdit_core.latents import image_ids, text_ids

    official = joint.BranchLayout.official.__func__

    def real_layout(cls, pairs):  # the layout's index checks compare values, which FakeTensors do not hold
        with unset_fake_temporarily():
            return official(cls, pairs)

    side = int(img_tokens**0.5) * 2
    joint.BranchLayout.official = classmethod(real_layout)
    default = torch.get_default_dtype()
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            torch.set_default_dtype(torch.bfloat16)
            model = JointDiT(FluxConfig()).eval()
            torch.set_default_dtype(default)
            dt = torch.bfloat16
            inputs = dict(
                img=torch.randn(rows, img_tokens, 64, dtype=dt), img_ids=image_ids(rows, side, side, dtype=dt),
                txt=torch.randn(rows, txt_tokens, 4096, dtype=dt), txt_ids=text_ids(rows, txt_tokens, dtype=dt),
                timesteps=torch.full((rows,), 0.5, dtype=dt), y=torch.randn(rows, 768, dtype=dt), guidance=torch.full((rows,), 3.5, dtype=dt),
            )
            tracker = MemTracker()
            tracker.track_external(model, *inputs.values())
            with tracker, torch.no_grad():
                model(**inputs)
            peak = tracker.get_tracker_snapshot("peak")
    finally:
        joint.BranchLayout.official = classmethod(official)
        torch.set_default_dtype(default)
    return sum(d[_MemRefType.ACT] + d[_MemRefType.TEMP] for d in peak.values()) / 2**30


def table(activation_gib: float, reserve_gib: float) -> str:
    """The Markdown table: per base x addon format the resident weights and the cards it fits."""
    official = json.loads(KEYS.read_text())
    base, addons = official["flux_dev_base"], official["jointdit_addons"]
    lines = [
        f"| base | addons | weights GiB (base + addons) | + activations {activation_gib:.2f} + reserve {reserve_gib:.1f} GiB | "
        + " | ".join(f"{c} GiB card" for c in CARDS_GIB) + " |",
        "|---|---|---:|---:|" + "---|" * len(CARDS_GIB),
    ]
    for b in BASE_FORMATS:
        for a in ADDON_FORMATS:
            wb, wa = weight_gib(base, b), weight_gib(addons, a)
            need = wb + wa + activation_gib + reserve_gib
            fits = " | ".join("fits" if need <= c else "lowvram" for c in CARDS_GIB)
            lines.append(f"| {b} | {a} | {wb + wa:.2f} ({wb:.2f} + {wa:.2f}) | {need:.2f} | {fits} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activations", type=float, help="activation peak in GiB (default: trace it, about a minute)")
    parser.add_argument("--reserve", type=float, default=1.0, help="GiB kept for the CUDA context and ComfyUI's inference reserve")
    args = parser.parse_args(argv)
    activation = traced_activation_gib() if args.activations is None else args.activations
    out = table(activation, args.reserve)
    print(out)
    return out


if __name__ == "__main__":
    main()
