"""Depth maps in files without losing precision: 16-bit PNG, 32-bit float EXR, float TIFF, .npy (+ 8-bit PNG/JPEG in).

Libraries (one per format, each the format's most used Python reader/writer, all with wheels for
Linux/macOS/Windows):

- PNG (16-bit, mode ``I;16``) and 8-bit PNG/JPEG: Pillow, already a ComfyUI dependency. A 16-bit
  PNG stores [0, 1] in steps of 1/65535; every viewer opens it.
- EXR: ``openexr`` (PyPI), the official Python bindings of the Academy Software Foundation's OpenEXR
  (3.x: ``OpenEXR.File`` with numpy channels; no OpenCV, no FreeImage). imageio was the other
  candidate, but it reads/writes EXR only through its FreeImage plugin (a separate binary download,
  unmaintained upstream) or OpenCV; ``OpenEXR`` is the reference implementation. One float32 channel
  ``Y`` (the luminance name, so viewers show it as grey), ZIP compression (lossless).
- TIFF: ``tifffile`` (C. Gohlke), pure Python + numpy, the reader/writer scientific imaging uses;
  float32 with zlib compression (lossless). Pillow's float TIFF ("F" mode) has no compression
  choice and no multi-channel float, and tifffile reads what other tools write.
- ``.npy``: numpy (``allow_pickle=False``, so a file can never run code).

Values: what the depth nodes pass around, relative disparity (near = 1) in [0, 1]; the float formats
store any finite values unchanged (e.g. metric depth from another tool). ``read_depth`` returns
float32 values and a validity mask: non-finite values other than NaN (``inf``, as renderers write for
the sky) are invalid pixels; NaN is refused with an error (it has no meaning in a depth file).
"""

from __future__ import annotations

import importlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# format name -> file suffix written
FORMATS = {"png16": ".png", "exr": ".exr", "tiff": ".tif", "npy": ".npy"}
READ_SUFFIXES = (".png", ".exr", ".tif", ".tiff", ".npy", ".jpg", ".jpeg")
MAX_DEPTH_PIXELS = 2**27  # 134 megapixels (e.g. 16384 x 8192), 512 MiB as float32: larger files are refused unread
PNG16_STEP = 1.0 / 65535
PNG8_STEP = 1.0 / 255


@dataclass(frozen=True)
class DepthFile:
    """A depth map read from a file.

    values: (H, W) float32 (16-bit PNG -> [0, 1] in steps of 1/65535, 8-bit -> steps of 1/255, float
        formats as stored; invalid pixels set to 0).
    valid: (H, W) bool, False where the file holds +-inf.
    source: a short description, e.g. "16-bit PNG" or "float32 EXR channel Y".
    """

    values: np.ndarray
    valid: np.ndarray
    source: str


def _as_map(depth) -> np.ndarray:
    """(H, W), (1, H, W), (H, W, 1) or (H, W, 3 equal-ish channels: mean) array/tensor -> (H, W) float32."""
    arr = depth.detach().cpu().numpy() if hasattr(depth, "detach") else np.asarray(depth)
    arr = grey_map(arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr)
    if arr.ndim != 2:
        raise ValueError(f"a depth map to save must be (H, W) (or (H, W, 1/3)), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"the depth map to save is empty (shape {arr.shape})")
    return arr.astype(np.float32)


def grey_map(arr: np.ndarray) -> np.ndarray:
    """(H, W, 1/3/4) -> (H, W) float32 (mean of the colour channels, alpha ignored; grey maps with equal
    channels give their first channel exactly, no float rounding of the mean); other shapes unchanged."""
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        colours = arr[..., : min(3, arr.shape[-1])]
        if (colours == colours[..., :1]).all():
            return colours[..., 0].astype(np.float32)
        return colours.astype(np.float32).mean(axis=-1)
    return arr


def _library(module: str, pip_name: str, fmt: str):
    """Import a format's library, or raise ImportError saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{fmt} depth files need the '{module}' package: pip install {pip_name} (in ComfyUI's Python environment)") from e


def write_depth(path: str | Path, depth, fmt: str) -> Path:
    """Write one depth map; returns the path written (``fmt``'s suffix added when missing).

    Args:
        path: file path; depth: (H, W) float array/tensor (or (H, W, 3) grey, channel mean);
        fmt: "png16" (values must lie in [0, 1]; stored as round(v * 65535)), "exr" (float32),
            "tiff" (float32), "npy" (float32).
    Raises:
        ValueError: unknown format, empty map, NaN / infinite values, png16 values outside [0, 1].
        ImportError: the format's library is not installed (says what to install).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown depth file format {fmt!r}; choose one of {list(FORMATS)}")
    d = _as_map(depth)
    if not np.isfinite(d).all():
        raise ValueError("the depth map contains NaN or infinite values; it cannot be saved as a depth file")
    path = Path(path)
    if path.suffix.lower() != FORMATS[fmt] and not (fmt == "tiff" and path.suffix.lower() == ".tiff"):
        path = path.with_name(path.name + FORMATS[fmt])
    if fmt == "png16":
        if d.min() < 0 or d.max() > 1:
            raise ValueError(f"png16 stores values in [0, 1], this map spans [{d.min():g}, {d.max():g}]: normalise it or use exr/tiff/npy")
        from PIL import Image

        Image.fromarray(np.round(d * 65535).astype(np.uint16)).save(path, format="PNG")
    elif fmt == "exr":
        OpenEXR = _library("OpenEXR", "openexr", "EXR")
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"Y": np.ascontiguousarray(d)}) as f:
            f.write(str(path))
    elif fmt == "tiff":
        tifffile = _library("tifffile", "tifffile", "TIFF")
        tifffile.imwrite(path, d, compression="zlib")
    else:
        np.save(path, d, allow_pickle=False)
    return path


def check_pixel_count(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a map whose header declares more than :data:`MAX_DEPTH_PIXELS` pixels, before any pixel is read.

    Raises:
        ValueError: the declared size (says what it is and the limit).
    """
    count = int(np.prod([int(n) for n in shape], dtype=np.float64)) if len(shape) else 0
    if count > MAX_DEPTH_PIXELS:
        size = " x ".join(str(int(n)) for n in shape)
        raise ValueError(
            f"{path.name} declares a {size} array ({count / 1e6:,.0f} million values); depth files are read up to "
            f"{MAX_DEPTH_PIXELS / 1e6:.0f} million pixels: shrink the map first (a depth map this large is most likely a damaged file)"
        )


def _damaged(path: Path, kind: str, error: Exception) -> ValueError:
    return ValueError(f"{path.name} is not a readable {kind} file; it may be damaged, cut short or of another format ({error}). Save it again, or choose another file")


def _read_pil(path: Path) -> tuple[np.ndarray, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            check_pixel_count(path, img.size)
            img.load()
            mode, fmt = img.mode, img.format
            arr = np.asarray(img)
    except Image.DecompressionBombError as e:  # Pillow refuses huge headers itself, at open
        raise ValueError(f"{path.name} declares more than {MAX_DEPTH_PIXELS / 1e6:.0f} million pixels ({e}): shrink the map first") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:  # Pillow's damaged-file errors
        raise _damaged(path, "PNG/JPEG image", e) from e
    if mode in ("I;16", "I;16B", "I;16L") or (mode == "I" and fmt == "PNG"):
        return arr.astype(np.float32) / 65535.0, f"16-bit {fmt}"
    if mode in ("L", "RGB", "RGBA", "LA", "P"):
        if mode == "P":
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        if arr.ndim == 3:
            arr = arr[..., : (1 if mode == "LA" else 3)].astype(np.float32).mean(axis=-1)
        return arr.astype(np.float32) / 255.0, f"8-bit {fmt}"
    if mode == "F":
        return arr.astype(np.float32), f"float {fmt}"
    raise ValueError(f"{path.name}: unsupported {fmt} pixel mode {mode!r}; save the depth as 8/16-bit grey PNG, EXR, TIFF or .npy")


def _read_exr(path: Path) -> tuple[np.ndarray, str]:
    OpenEXR = _library("OpenEXR", "openexr", "EXR")
    try:
        with OpenEXR.File(str(path), header_only=True) as f:
            low, high = f.header()["dataWindow"]
        check_pixel_count(path, tuple(int(n) for n in np.asarray(high) - np.asarray(low) + 1))
        with OpenEXR.File(str(path)) as f:
            channels = {name: np.asarray(ch.pixels) for name, ch in f.channels().items()}
    except (RuntimeError, ValueError, OSError, KeyError) as e:  # the bindings' errors for damaged or cut files
        if str(e).startswith(f"{path.name} declares"):
            raise
        raise _damaged(path, "OpenEXR", e) from e
    for name in ("Z", "Y", "R", "depth", "Depth.Z"):
        if name in channels and channels[name].ndim == 2:
            return channels[name].astype(np.float32), f"EXR channel {name}"
    for name, arr in channels.items():  # e.g. one packed "RGB" channel (H, W, 3), or any single channel
        if arr.ndim == 3:
            return arr[..., :3].astype(np.float32).mean(axis=-1), f"EXR channel {name} (mean of colours)"
        if arr.ndim == 2:
            return arr.astype(np.float32), f"EXR channel {name}"
    raise ValueError(f"{path.name} has no image channel a depth map can come from (channels: {sorted(channels)})")


def _read_tiff(path: Path) -> tuple[np.ndarray, str]:
    tifffile = _library("tifffile", "tifffile", "TIFF")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image in the file")
            check_pixel_count(path, tif.series[0].shape)
            arr = tif.series[0].asarray()
    except (tifffile.TiffFileError, ValueError, OSError, RuntimeError, zlib.error) as e:  # zlib: compressed data cut short
        if str(e).startswith(f"{path.name} declares"):
            raise
        raise _damaged(path, "TIFF", e) from e
    kind = arr.dtype
    arr = grey_map(arr)
    if np.issubdtype(kind, np.integer):
        return arr.astype(np.float32) / float(np.iinfo(kind).max), f"{np.iinfo(kind).bits}-bit TIFF"
    return np.asarray(arr, np.float32), f"{kind} TIFF"


def _read_npy(path: Path) -> tuple[np.ndarray, str]:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(f)
    except (ValueError, OSError, SyntaxError) as e:
        raise ValueError(f"{path.name} is not a .npy array file (its header cannot be read: {e})") from e
    check_pixel_count(path, shape)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:  # pickled object arrays, or data cut short
        raise ValueError(f"{path.name} is not a plain numeric .npy array (pickled objects are never loaded): {e}") from e
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{path.name}: a depth .npy must hold a numeric array, got {getattr(arr, 'dtype', type(arr))}")
    kind = arr.dtype
    return grey_map(arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr).astype(np.float32), f"{kind} .npy"


def read_depth(path: str | Path, zero_is_missing: bool = False) -> DepthFile:
    """Read a depth map from a 16-bit/8-bit PNG, JPEG, EXR, TIFF or .npy file.

    ``zero_is_missing``: values of exactly 0 are invalid pixels too (the convention of sparse depth such as
    KITTI's LiDAR PNGs, where 0 means "no measurement"); otherwise only +-inf is.

    Returns:
        :class:`DepthFile` (values (H, W) float32, valid (H, W) bool, source).
    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty (0-byte) file or zero-sized image, an unknown suffix, a damaged or cut-short file
            or one not of the format its suffix says, a header declaring more than :data:`MAX_DEPTH_PIXELS`
            pixels (checked before reading them), not a 2-d map, NaN values, or no valid pixel at all.
        ImportError: the format's library is missing (says what to install).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth file {path} not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        values, source = _read_pil(path)
    elif suffix == ".exr":
        values, source = _read_exr(path)
    elif suffix in (".tif", ".tiff"):
        values, source = _read_tiff(path)
    elif suffix == ".npy":
        values, source = _read_npy(path)
    else:
        raise ValueError(f"{path.name}: unknown depth file type {suffix!r}; use one of {list(READ_SUFFIXES)}")
    if values.ndim != 2:
        raise ValueError(f"{path.name} holds an array of shape {values.shape}; a depth map is (H, W) (or (H, W, 1/3))")
    if values.size == 0:
        raise ValueError(f"{path.name} holds a zero-sized depth map (shape {values.shape})")
    nan = np.isnan(values)
    if nan.any():
        raise ValueError(f"{path.name} contains NaN at {int(nan.sum())} of {values.size} pixels; a depth file needs numbers (use inf to mark invalid pixels)")
    valid = np.isfinite(values) & ((values != 0) if zero_is_missing else True)
    if not valid.any():
        raise ValueError(f"{path.name} has no finite depth value" + (" other than 0 (zero_is_missing is on)" if zero_is_missing else ""))
    return DepthFile(np.where(valid, values, 0).astype(np.float32), valid, source)


SAMPLE_SPARSE_DEPTH = "jointdit_sparse_depth.png"  # the depth-completion workflow's default file in ComfyUI's input folder


def sample_sparse_depth(size: int = 512, fraction: float = 0.05) -> np.ndarray:
    """A sparse disparity map of a ground plane seen level: near (bright) at the bottom, far at the top.

    About ``fraction`` of the pixels, scattered (a fixed random pattern, so that any resize keeps samples,
    unlike scanlines), hold the plane's disparity; the others are 0 (= missing, the LiDAR PNG convention).

    Returns:
        (size, size) float32 in [0, 1]: 0 where missing, else the disparity of the plane, 0.05 (top) .. 1 (bottom).
    """
    disparity = np.linspace(0.05, 1.0, size, dtype=np.float32)[:, None].repeat(size, axis=1)
    measured = np.random.default_rng(0).random((size, size)) < fraction
    return np.where(measured, disparity, np.float32(0))


def provide_sample_sparse_depth(folder: str | Path) -> Path | None:
    """Write :func:`sample_sparse_depth` as ``folder/SAMPLE_SPARSE_DEPTH`` (16-bit PNG) unless a file of that name exists.

    Returns the path written, or None if the file was already there (a user's own file is never replaced).
    """
    path = Path(folder) / SAMPLE_SPARSE_DEPTH
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_depth(path, sample_sparse_depth(), "png16")
