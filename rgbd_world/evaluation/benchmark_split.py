"""The demo world's held-out test scenes written as a benchmark in DIODE's layout, so the benchmark command
scores the demo model exactly as it scores the real datasets:

    python -m rgbd_world.evaluation.benchmark_split --count 200 --out build/rgbd_world_test
    python -m jointdit_trainer evaluate --dataset rgbd_world --data-dir build/rgbd_world_test \\
        --model-dir rgbd_world/model --processing-resolution 0 --batch-size 50

Files per scene ``k`` (position in ``split_indices("test")``, zero-padded so sorted order is split order):
``test/<k>.png`` (the photo, 8-bit RGB), ``test/<k>_depth.npy`` (z-depth in metres, float32 (H, W, 1), as DIODE
stores it) and ``test/<k>_depth_mask.npy`` (float32 (H, W), 1 = valid: ``rgbd_world.evaluation.metrics.valid_mask``, the
sky excluded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ..cli import command_prog, int_at_least
from .metrics import valid_mask
from ..stack import held_out_scenes


def write_split(out: str | Path, count: int = 200, start: int = 0, size: int = 64) -> Path:
    """Write test scenes ``split_indices("test")[start:start+count]`` at ``size`` pixels to ``out/test/``.

    Returns the folder. Raises ValueError for a range outside the split."""
    folder = Path(out) / "test"
    folder.mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(held_out_scenes(count, start, size), start=start):
        Image.fromarray(s.rgb).save(folder / f"{k:05d}.png")
        np.save(folder / f"{k:05d}_depth.npy", s.depth.astype(np.float32)[..., None])
        np.save(folder / f"{k:05d}_depth_mask.npy", valid_mask(s.depth).astype(np.float32))
    return Path(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--count", type=int_at_least(1), default=200, help="test scenes (the split has 1000)")
    p.add_argument("--start", type=int_at_least(0), default=0)
    p.add_argument("--size", type=int_at_least(16), default=64, help="pixels per side (the shipped model: 64)")
    a = p.parse_args(argv)
    print(f"wrote {a.count} scenes to {write_split(a.out, a.count, a.start, a.size)}")


if __name__ == "__main__":
    main()
