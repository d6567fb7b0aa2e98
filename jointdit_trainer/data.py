"""Dataset folders: reading raw image/depth/caption samples, and the safetensors cache training reads.

Raw layout (official folder names accepted as aliases)::

    <dataset_dir>/images/<stem>.png|jpg|jpeg|webp|bmp      (alias: processed_images/)
    <dataset_dir>/depth/<stem>.png|npy|npz|tif|tiff        (alias: depthmaps/)   optional
    <dataset_dir>/captions/<stem>.txt                      (alias: text_prompts/) optional
    <dataset_dir>/captions.jsonl  lines {"file": "<stem or file name>", "text": "..."}   optional

Depth maps are relative disparity (near = large) as Depth-Anything-V2 writes them (``depth_kind``
"disparity"), or metric/relative depth (near = small, ``depth_kind`` "depth", converted by 1/depth).
PNG depth may be 8- or 16-bit grayscale; .npy/.npz hold a 2-D float array (an .npz holds one array,
or one named "disparity" or "depth").

Cache layout (written by ``python -m jointdit_trainer preprocess``)::

    <cache_dir>/cache.json                 manifest (resolution, shapes, depth_transform, skipped samples)
    <cache_dir>/samples/<stem>.safetensors image_latent (C,h,w), depth_latent (C,h,w), t5 (T,ctx), clip_pooled (vec),
                                           depth_valid (h,w) for sparse depth (share of measured pixels per latent cell)
    <cache_dir>/empty_prompt.safetensors   t5 (T,ctx), clip_pooled (vec): the dropped-caption condition
    <cache_dir>/sample_prompts.safetensors t5 (N,T,ctx), clip_pooled (N,vec): prompts for periodic samples
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEPTH_EXTS = (".png", ".npy", ".npz", ".tif", ".tiff")
IMAGE_DIRS = ("images", "processed_images")
DEPTH_DIRS = ("depth", "depthmaps")
CAPTION_DIRS = ("captions", "text_prompts")
SAMPLE_KEYS = ("image_latent", "depth_latent", "t5", "clip_pooled")
CACHE_VERSION = 1


@dataclass
class RawSample:
    """One raw training sample: an image, maybe a depth map, maybe a caption."""

    stem: str
    image_path: Path
    depth_path: Path | None
    caption: str | None


def _first_dir(root: Path, names) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _files_by_stem(folder: Path | None, exts, problems: list) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if folder is None:
        return found
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in exts:
            continue
        if path.stem in found:
            problems.append({"stem": path.stem, "reason": f"two files with the same name stem: {found[path.stem].name} and {path.name}; the second is ignored"})
            continue
        found[path.stem] = path
    return found


def read_captions_jsonl(path: Path, problems: list) -> dict[str, str]:
    """``{"file"|"image"|"stem": name, "text"|"caption"|"prompt": str}`` per line -> {stem: caption}."""
    captions: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                name = next(item[k] for k in ("file", "image", "stem") if k in item)
                text = next(item[k] for k in ("text", "caption", "prompt") if k in item)
            except (json.JSONDecodeError, StopIteration, TypeError):
                problems.append({"stem": f"{path.name}:{lineno}", "reason": 'unreadable caption line; expected {"file": ..., "text": ...}'})
                continue
            captions[Path(str(name)).stem] = str(text).strip()
    return captions


def scan_dataset(dataset_dir: str | Path) -> tuple[list[RawSample], list[dict]]:
    """List the samples of a raw dataset folder (layout in the module docstring).

    Returns:
        ``(samples, problems)``: samples sorted by stem; problems as ``{"stem", "reason"}`` dicts
        (duplicate stems, depth maps or captions without an image, unreadable caption lines).

    Raises:
        FileNotFoundError: the folder or its images/ sub-folder is missing, or it holds no image.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist; set dataset_dir to the folder holding images/ (and depth/, captions/)")
    image_dir = _first_dir(root, IMAGE_DIRS)
    if image_dir is None:
        raise FileNotFoundError(f"{root} has no images/ folder; put the training images in {root / 'images'}")
    problems: list[dict] = []
    images = _files_by_stem(image_dir, IMAGE_EXTS, problems)
    if not images:
        raise FileNotFoundError(f"{image_dir} holds no image ({', '.join(IMAGE_EXTS)})")
    depths = _files_by_stem(_first_dir(root, DEPTH_DIRS), DEPTH_EXTS, problems)
    caption_dir = _first_dir(root, CAPTION_DIRS)
    captions: dict[str, str] = {}
    if (root / "captions.jsonl").is_file():
        captions.update(read_captions_jsonl(root / "captions.jsonl", problems))
    for stem, path in _files_by_stem(caption_dir, (".txt",), problems).items():
        captions[stem] = path.read_text(encoding="utf-8").strip()
    for stem in sorted(set(depths) - set(images)):
        problems.append({"stem": stem, "reason": f"depth map {depths[stem].name} has no image; ignored"})
    for stem in sorted(set(captions) - set(images)):
        problems.append({"stem": stem, "reason": "caption has no image; ignored"})
    samples = [RawSample(stem, images[stem], depths.get(stem), captions.get(stem)) for stem in sorted(images)]
    return samples, problems


def resize_center_crop(image: Image.Image, size: int, resample=Image.Resampling.BICUBIC) -> Image.Image:
    """Resize so the shorter side is ``size`` (aspect kept), then centre-crop ``size`` x ``size``.

    Same geometry as the official ``dataset_utils.resize_and_center_crop`` (new long side
    ``int(long * size / short)``, crop offset ``(new - size) // 2``). Works for any PIL mode ("F" too).
    """
    w, h = image.size
    if h < w:
        new_w, new_h = int(w * size / h), size
    else:
        new_w, new_h = size, int(h * size / w)
    image = image.resize((new_w, new_h), resample=resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: Path, size: int) -> tuple[torch.Tensor, Image.Image, tuple[int, int]]:
    """Read an image, resize and centre-crop it.

    Returns:
        ``(x, cropped, original_size)``: x (3, size, size) float32 in [-1, 1]; the cropped RGB PIL
        image; the original (width, height).

    Raises:
        OSError / ValueError from PIL for unreadable files.
    """
    from jointdit_core.images import uint8_to_model

    with Image.open(path) as im:
        im.load()
        original = im.size
        rgb = im.convert("RGB")
    cropped = resize_center_crop(rgb, size, Image.Resampling.LANCZOS)
    x = uint8_to_model(np.asarray(cropped))
    return x, cropped, original


def read_depth_array(path: Path) -> np.ndarray:
    """Read a depth/disparity file as a (H, W) float32 array (values as stored).

    Raises:
        ValueError: not 2-D, colour-mapped PNG, several arrays in an .npz without a known name,
            non-finite values.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = list(z.keys())
            name = next((n for n in ("disparity", "depth") if n in names), names[0] if len(names) == 1 else None)
            if name is None:
                raise ValueError(f"{path.name} holds arrays {names}; name the depth array 'disparity' or 'depth'")
            arr = z[name]
    else:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise ValueError(
                        f"{path.name} is a colour image; depth maps must be grayscale (16-bit PNG) or .npy raw values"
                    )
                arr = rgb[..., 0]
            elif im.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F", "LA"):
                arr = np.asarray(im.getchannel(0) if im.mode == "LA" else im)
            else:
                arr = np.asarray(im.convert("F"))
    arr = np.squeeze(np.asarray(arr)).astype(np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{path.name}: a depth map must be 2-D (H, W), got shape {arr.shape}")
    if not np.isfinite(arr).all() and suffix != ".npy" and suffix != ".npz":
        raise ValueError(f"{path.name} holds NaN or infinite values")
    return arr


def to_disparity(arr: np.ndarray, depth_kind: str) -> np.ndarray:
    """Disparity (near = large) from a stored map: unchanged for "disparity", ``1/depth`` for "depth".

    Non-positive or non-finite depths (invalid pixels) become disparity 0 (farthest).

    Raises:
        ValueError: a disparity map with NaN/inf, or one with no valid pixel.
    """
    if depth_kind == "depth":
        valid = np.isfinite(arr) & (arr > 0)
        if not valid.any():
            raise ValueError("depth map has no positive finite value")
        return np.where(valid, 1.0 / np.where(valid, arr, 1.0), 0.0).astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("disparity map holds NaN or infinite values")
    return arr


def load_sparse_disparity(path: Path, size: int, image_size: tuple[int, int], depth_kind: str = "disparity") -> tuple[np.ndarray, np.ndarray]:
    """A depth file whose 0 values are missing pixels (``depth_kind`` "kitti": uint16 / 256 = metres), as
    disparity resized and centre-cropped like the image with the missing pixels left out.

    Returns:
        ``(disparity, coverage)``: (size, size) float32 each; coverage in [0, 1] is the share of measured
        pixels behind each output pixel (:func:`jointdit_trainer.sparse_depth.resize_with_mask`).
    Raises:
        ValueError: no measured pixel, aspect ratio differs from the image's, or see :func:`read_depth_array`.
    """
    from .sparse_depth import KITTI_DEPTH_SCALE, resize_with_mask

    arr = read_depth_array(path)
    valid = np.isfinite(arr) & (arr > 0)
    if not valid.any():
        raise ValueError(f"{path.name} has no measured pixel (every value is 0 or not finite)")
    if depth_kind == "kitti":
        arr = arr / KITTI_DEPTH_SCALE
    disparity = np.where(valid, 1.0 / np.where(valid, arr, 1.0), 0.0) if depth_kind in ("depth", "kitti") else arr
    return resize_with_mask(disparity.astype(np.float32), valid, image_size, size)


def load_disparity(path: Path, size: int, image_size: tuple[int, int], depth_kind: str = "disparity") -> np.ndarray:
    """Read a depth file, bring it to the image's original size, resize and centre-crop like the image.

    Args:
        image_size: the image's original (width, height); a depth map of another size is resized to
            it first (bilinear), which requires the same aspect ratio (1% tolerance).
    Returns:
        (size, size) float32 disparity, values as stored (not yet normalised).
    Raises:
        ValueError: aspect ratio differs from the image's, or see :func:`read_depth_array`.
    """
    disp = to_disparity(read_depth_array(path), depth_kind)
    im = Image.fromarray(disp, mode="F")
    if im.size != image_size:
        ar_d, ar_i = im.size[0] / im.size[1], image_size[0] / image_size[1]
        if abs(ar_d / ar_i - 1) > 0.01:
            raise ValueError(
                f"depth map {im.size[0]}x{im.size[1]} does not match the image's {image_size[0]}x{image_size[1]} aspect ratio"
            )
        im = im.resize(image_size, resample=Image.Resampling.BILINEAR)
    return np.asarray(resize_center_crop(im, size, Image.Resampling.BILINEAR), dtype=np.float32)


# ----------------------------------------------------------------------------- cache


def read_manifest(cache_dir: str | Path) -> dict:
    """Load ``cache.json``.

    Raises:
        FileNotFoundError: no cache there (tells to run ``python -m jointdit_trainer preprocess``).
    """
    path = Path(cache_dir) / "cache.json"
    if not path.is_file():
        raise FileNotFoundError(f"no latent cache at {cache_dir} (cache.json missing); run `python -m jointdit_trainer preprocess` first")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_file(path: Path, expected: dict[str, tuple]) -> str | None:
    """None when ``path`` opens and holds ``expected`` {key: shape}; otherwise the reason."""
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing = [k for k in expected if k not in keys]
            if missing:
                return f"missing tensors {missing}"
            for key, shape in expected.items():
                got = tuple(f.get_slice(key).get_shape())
                if got != tuple(shape):
                    return f"tensor {key} has shape {list(got)}, expected {list(shape)}"
    except Exception as exc:  # noqa: BLE001 - any failure to open is reported, not fatal
        return f"unreadable safetensors file ({type(exc).__name__}: {exc})"
    return None


class CachedPairs(torch.utils.data.Dataset):
    """The latent cache as a dataset of pairs; broken files are found up front, reported and skipped.

    Each item is a dict: ``image_latent``, ``depth_latent`` (C, h, w), ``t5`` (T, ctx),
    ``clip_pooled`` (vec), in the cache dtype, ``depth_valid`` (h, w) float32 when the cache holds sparse
    depth, plus ``index`` (int).

    Attributes:
        stems: usable sample stems; skipped: ``[{"stem", "reason"}]`` for files that failed checks
            (preprocessing skips are included, marked with ``"stage": "preprocess"``).

    Raises:
        FileNotFoundError: no cache; ValueError: no usable sample.
    """

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)
        self.manifest = read_manifest(self.cache_dir)
        if self.manifest.get("version") != CACHE_VERSION:
            raise ValueError(f"cache at {cache_dir} has version {self.manifest.get('version')}, expected {CACHE_VERSION}; re-run preprocess")
        lat = tuple(self.manifest["latent_shape"])
        t5 = tuple(self.manifest["t5_shape"])
        vec = (int(self.manifest["clip_dim"]),)
        expected = {"image_latent": lat, "depth_latent": lat, "t5": t5, "clip_pooled": vec}
        self.keys = SAMPLE_KEYS + (("depth_valid",) if self.manifest.get("sparse_depth") else ())
        if "depth_valid" in self.keys:
            expected["depth_valid"] = lat[1:]
        self.skipped = [dict(item, stage="preprocess") for item in self.manifest.get("skipped", [])]
        self.stems = []
        for stem in self.manifest["samples"]:
            reason = _check_file(self.sample_path(stem), expected)
            if reason:
                self.skipped.append({"stem": stem, "reason": reason, "stage": "cache check"})
                logger.warning("skipping cached sample %s: %s", stem, reason)
            else:
                self.stems.append(stem)
        if not self.stems:
            raise ValueError(f"no usable sample in the cache at {cache_dir}; problems: {self.skipped[:5]}")
        reason = _check_file(self.cache_dir / "empty_prompt.safetensors", {"t5": t5, "clip_pooled": vec})
        if reason:
            raise ValueError(f"{self.cache_dir / 'empty_prompt.safetensors'}: {reason}; re-run preprocess")

    def sample_path(self, stem: str) -> Path:
        return self.cache_dir / "samples" / f"{stem}.safetensors"

    def empty_prompt(self) -> dict[str, torch.Tensor]:
        """The empty-prompt condition: ``t5`` (T, ctx), ``clip_pooled`` (vec)."""
        return load_file(str(self.cache_dir / "empty_prompt.safetensors"))

    def sample_prompts(self) -> tuple[list[str], dict[str, torch.Tensor]] | None:
        """Prompts cached for periodic samples: (prompts, {"t5": (N,T,ctx), "clip_pooled": (N,vec)}), or None."""
        path = self.cache_dir / "sample_prompts.safetensors"
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            prompts = json.loads((f.metadata() or {}).get("prompts", "[]"))
        return prompts, load_file(str(path))

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> dict:
        path = self.sample_path(self.stems[index])
        try:
            item = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"cached sample {path} became unreadable during training: {exc}; re-run preprocess") from exc
        out = {k: item[k] for k in self.keys}
        out["index"] = index
        return out


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled order that depends only on (seed, epoch), so a resumed run sees the same batches.

    Call :meth:`set_epoch` before iterating each epoch.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=g).tolist())

    def __len__(self) -> int:
        return self.length
