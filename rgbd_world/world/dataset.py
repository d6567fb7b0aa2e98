"""Write RGB-D world scenes as a trainer dataset folder (layout of jointdit_trainer/data.py)::

    <out>/images/<stem>.png          rgb, uint8
    <out>/depth/<stem>.npy           disparity normalised per image to [0, 1] (near = 1), float32
                                     (or <stem>.png, 16-bit grayscale of the same, --depth-format png16)
    <out>/captions/<stem>.txt        caption
    <out>/depth_metric/<stem>.npy    exact metric z-depth, float32 (for evaluation; the trainer ignores it)
    <out>/world.json                 {"split", "size", "world_seed", "stems": {stem: scene index}}

Stems are ``<split>_<index:07d>``. Command::

    python -m rgbd_world.world.make_dataset --out DIR --split train --count N --size 64 [--start K]

takes scenes ``split_indices(split)[start : start + count]``. The trainer reads it with
``dataset_dir=DIR`` and ``depth_kind="disparity"`` (the default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .scenes import WORLD_SEED, scene, split_indices
from ..cli import command_prog

DEPTH_FORMATS = ("npy", "png16")


def normalized_disparity(depth: np.ndarray) -> np.ndarray:
    """Metric z-depth (H, W) > 0 -> disparity 1/depth min-max normalised to [0, 1] (near = 1),
    float32, via jointdit_core.depth (the convention the model trains on, method §6)."""
    from jointdit_core.depth import depth_to_disparity, normalize_disparity

    return normalize_disparity(depth_to_disparity(torch.from_numpy(depth))).numpy()


def write_dataset(
    out: str | Path, split: str, count: int, size: int = 64, start: int = 0, depth_format: str = "npy", progress: bool = True
) -> list[str]:
    """Render scenes ``split_indices(split)[start:start+count]`` into ``out`` (layout above).

    Returns the stems written. Raises ValueError for a bad split, depth_format, a range
    outside the split, or an ``out`` that already holds another split or size. Existing files with the same stems are overwritten.
    """
    if depth_format not in DEPTH_FORMATS:
        raise ValueError(f"depth_format must be one of {DEPTH_FORMATS}, got {depth_format!r}")
    indices = split_indices(split)
    if count < 1 or start < 0 or start + count > len(indices):
        raise ValueError(f"split {split!r} has {len(indices)} scenes; start={start}, count={count} is outside it")
    out = Path(out)
    meta_path = out / "world.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta and (meta.get("size") != size or meta.get("split") != split):
        raise ValueError(f"{out} already holds split {meta.get('split')!r} at size {meta.get('size')}; use another folder")
    for sub in ("images", "depth", "captions", "depth_metric"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    stems = {}
    for index in tqdm(indices[start : start + count], desc=f"{split} scenes", disable=not progress):
        s = scene(index, size=size)
        stem = f"{split}_{index:07d}"
        Image.fromarray(s.rgb).save(out / "images" / f"{stem}.png")
        d01 = normalized_disparity(s.depth)
        if depth_format == "npy":
            np.save(out / "depth" / f"{stem}.npy", d01)
        else:
            Image.fromarray(np.round(d01 * 65535).astype(np.uint16)).save(out / "depth" / f"{stem}.png")
        np.save(out / "depth_metric" / f"{stem}.npy", s.depth)
        (out / "captions" / f"{stem}.txt").write_text(s.caption + "\n", encoding="utf-8")
        stems[stem] = index
    meta = {"split": split, "size": size, "world_seed": WORLD_SEED, "stems": {**meta.get("stems", {}), **stems}}
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return list(stems)


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--count", type=int, required=True, help="number of scenes")
    p.add_argument("--start", type=int, default=0, help="first scene, as an offset inside the split")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--depth-format", default="npy", choices=DEPTH_FORMATS)
    a = p.parse_args(argv)
    try:
        stems = write_dataset(a.out, a.split, a.count, a.size, a.start, a.depth_format)
    except ValueError as exc:  # a range outside the split, a folder of another split or size
        p.error(str(exc))
    print(f"wrote {len(stems)} {a.split} scenes ({a.size}x{a.size}) to {a.out}")


if __name__ == "__main__":
    main()
