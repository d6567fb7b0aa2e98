"""Samples of each benchmark in its distributed layout (the paths Marigold's file lists name):

* nyuv2: ``test/<scene>/rgb_<id>.png`` + ``depth_<id>.png`` (uint16, millimetres);
* kitti: ``<date>/<drive>/image_02/data/<frame>.png`` + ``<drive>/proj_depth/groundtruth/image_02/<frame>.png``
  (uint16, depth x 256, 0 = no LiDAR point; frames without a ground-truth file are not in the benchmark);
* eth3d: ``rgb/<scene>/images/dslr_images/<name>.JPG`` + ``depth/<scene>_dslr_depth/<scene>/ground_truth_depth/
  dslr_images/<name>.JPG`` (raw float32, 4032 x 6048, inf = missing);
* scannet: ``<scene>/color/<id>.jpg`` + ``<scene>/depth/<id>.png`` (uint16, millimetres);
* diode: ``<name>.png`` + ``<name>_depth.npy`` (metres) + ``<name>_depth_mask.npy`` (validity).

Decoding follows Marigold's dataset classes (commit b1dffaaa3f7a2fe406b3bb9dd3c358b30da66060).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .archive import Archive, locate
from .datasets import BenchmarkSpec, eval_crop_mask, kitti_benchmark_crop

ETH3D_SHAPE = (4032, 6048)


@dataclass(frozen=True)
class Entry:
    """File names of one sample inside the archive (``mask``: DIODE's validity mask, else None)."""

    rgb: str
    depth: str
    mask: str | None = None


@dataclass
class Sample:
    """One evaluation image: ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres (0 = missing),
    ``valid`` (H, W) bool (valid range and evaluation crop applied), ``name`` the rgb file name."""

    name: str
    rgb: np.ndarray
    depth: np.ndarray
    valid: np.ndarray


def _pairs(names: list[str], pattern: str, depth_of) -> list[tuple[str, str]]:
    rx = re.compile(pattern)
    return [(n, depth_of(m)) for n in names if (m := rx.fullmatch(n))]


def find_entries(layout: str, names: list[str]) -> list[Entry]:
    """The samples a layout's files hold, in sorted rgb-name order.

    Raises:
        FileNotFoundError: a photo whose depth (or mask) file is missing (KITTI: photos without ground truth
        are skipped, as in the benchmark).
    """
    have = set(names)
    if layout == "nyuv2":
        pairs = _pairs(names, r"(test/[^/]+)/rgb_(\d+)\.png", lambda m: f"{m[1]}/depth_{m[2]}.png")
    elif layout == "kitti":
        pairs = _pairs(names, r"[^/]+/([^/]+)/image_02/data/(\d+)\.png", lambda m: f"{m[1]}/proj_depth/groundtruth/image_02/{m[2]}.png")
        pairs = [p for p in pairs if p[1] in have]
    elif layout == "eth3d":
        pairs = _pairs(names, r"rgb/([^/]+)/images/dslr_images/([^/]+\.JPG)", lambda m: f"depth/{m[1]}_dslr_depth/{m[1]}/ground_truth_depth/dslr_images/{m[2]}")
    elif layout == "scannet":
        pairs = _pairs(names, r"([^/]+)/color/(\d+)\.jpg", lambda m: f"{m[1]}/depth/{m[2]}.png")
    elif layout == "diode":
        entries = [Entry(n, n[:-4] + "_depth.npy", n[:-4] + "_depth_mask.npy") for n in names if n.endswith(".png")]
        return [_checked(e, have) for e in entries]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return [_checked(Entry(rgb, depth), have) for rgb, depth in pairs]


def _checked(entry: Entry, have: set[str]) -> Entry:
    for name in (entry.depth, entry.mask):
        if name is not None and name not in have:
            raise FileNotFoundError(f"{entry.rgb} has no ground truth: {name} is missing (an incomplete download or extraction?)")
    return entry


def read_file_list(text: str, layout: str) -> list[Entry]:
    """Entries from a Marigold file list (``data_split/...``: ``rgb depth [filled|mask]`` per line);
    KITTI lines whose depth is ``None`` are dropped, as Marigold does."""
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[1] == "None":
            continue
        entries.append(Entry(parts[0], parts[1], parts[2] if layout == "diode" and len(parts) > 2 else None))
    return entries


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False).squeeze()


def decode_depth(layout: str, data: bytes, name: str) -> np.ndarray:
    """Ground-truth file bytes -> (H, W) float32 depth in metres, 0 where missing.

    Raises:
        ValueError: an ETH3D file of the wrong size, or a depth map that is not 2-D.
    """
    if layout in ("nyuv2", "scannet"):
        depth = _image(data) / 1000.0
    elif layout == "kitti":
        depth = _image(data) / 256.0
    elif layout == "eth3d":
        expected = ETH3D_SHAPE[0] * ETH3D_SHAPE[1] * 4
        if len(data) != expected:
            raise ValueError(f"{name}: {len(data)} bytes, an ETH3D depth file holds {expected} (4032 x 6048 float32)")
        depth = np.frombuffer(data, np.float32).copy().reshape(ETH3D_SHAPE)
        depth[depth == np.inf] = 0.0
    else:
        depth = _npy(data)
    if depth.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D depth map, got shape {depth.shape}")
    return depth.astype(np.float32)


def load_sample(archive: Archive, entry: Entry, spec: BenchmarkSpec) -> Sample:
    """Read, decode, crop and mask one sample as Marigold's dataset class for ``spec`` does.

    Raises:
        FileNotFoundError: a missing member; ValueError: photo and depth of different sizes, or what
        :func:`decode_depth` and :func:`~.datasets.eval_crop_mask` raise.
    """
    rgb = _image(archive.read(entry.rgb))
    rgb = np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb[..., :3]
    depth = decode_depth(spec.layout, archive.read(entry.depth), entry.depth)
    if spec.kitti_benchmark_crop:
        rgb, depth = kitti_benchmark_crop(rgb), kitti_benchmark_crop(depth)
    if rgb.shape[:2] != depth.shape:
        raise ValueError(f"{entry.rgb} is {rgb.shape[1]} x {rgb.shape[0]} but its depth {entry.depth} is {depth.shape[1]} x {depth.shape[0]}")
    if entry.mask is not None:
        valid = _npy(archive.read(entry.mask)).astype(bool)
        if valid.shape != depth.shape:
            raise ValueError(f"{entry.mask} has shape {valid.shape}, its depth map {depth.shape}")
    else:
        valid = (depth > spec.min_depth) & (depth < spec.max_depth) & eval_crop_mask(depth.shape, spec.eval_crop)
    return Sample(entry.rgb, np.ascontiguousarray(rgb, np.uint8), depth, valid)


class BenchmarkData:
    """The samples of one benchmark (``len``, ``[i]`` -> :class:`Sample`).

    Args:
        spec: the benchmark; data_dir: its tar, extracted folder or Marigold's BASE_DATA_DIR;
        file_list: optional text of a Marigold file list (default: every sample the files hold, sorted);
        any_size: accept a number of samples other than ``spec.count``.
    Raises:
        FileNotFoundError: no data at ``data_dir``, or a missing ground-truth file; ValueError: no sample in
        the expected layout (a wrong folder), or a dataset of the wrong size.
    """

    def __init__(self, spec: BenchmarkSpec, data_dir, file_list: str | None = None, any_size: bool = False):
        self.spec = spec
        self.archive = Archive(locate(data_dir, spec.archive))
        names = self.archive.names()
        self.entries = read_file_list(file_list, spec.layout) if file_list is not None else find_entries(spec.layout, names)
        if not self.entries:
            raise ValueError(f"no {spec.title} sample found in {self.archive.path} ({len(names)} files); is this the right folder? "
                             f"Marigold's download puts it at BASE_DATA_DIR/{spec.archive or '<split>'} (see readers.py for the layout)")
        if spec.count is not None and len(self.entries) != spec.count and not any_size:
            raise ValueError(f"{self.archive.path} holds {len(self.entries)} {spec.title} samples with ground truth, the benchmark has "
                             f"{spec.count}: an incomplete download or another split; pass --any-size to evaluate them anyway")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        return load_sample(self.archive, self.entries[index], self.spec)
