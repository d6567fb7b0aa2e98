"""Write a contact sheet PNG of scenes: each tile is the rgb image above its depth map.

    python -m rgbd_world.figures.contact_sheet --out sheet.png --split train --count 16 --size 64

Depth is shown as per-image normalised disparity (near = bright). Captions go to stdout.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from jointdit_core.images import unit_to_uint8

from ..world.dataset import normalized_disparity
from ..world.scenes import scene, split_indices
from ..cli import command_prog


def contact_sheet(indices, size: int = 64, columns: int = 8) -> tuple[Image.Image, list[str]]:
    """Tiles (rgb over depth) for the given scene indices; returns (PIL image, captions)."""
    tiles, captions = [], []
    for i in indices:
        s = scene(i, size=size)
        depth_rgb = np.repeat(unit_to_uint8(normalized_disparity(s.depth)).numpy()[..., None], 3, axis=2)
        tiles.append(np.concatenate([s.rgb, depth_rgb], axis=0))
        captions.append(f"{i}: {s.caption}")
    rows = [tiles[k : k + columns] for k in range(0, len(tiles), columns)]
    blank = np.zeros_like(tiles[0])
    rows = [np.concatenate(r + [blank] * (columns - len(r)), axis=1) for r in rows]
    return Image.fromarray(np.concatenate(rows, axis=0)), captions


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--start", type=int, default=0, help="offset inside the split")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--zoom", type=int, default=2, help="nearest-neighbour upscale of the sheet")
    a = p.parse_args(argv)
    idx = split_indices(a.split)[a.start : a.start + a.count]
    img, captions = contact_sheet(idx, size=a.size)
    if a.zoom > 1:
        img = img.resize((img.width * a.zoom, img.height * a.zoom), Image.NEAREST)
    img.save(a.out)
    print("\n".join(captions))


if __name__ == "__main__":
    main()
