"""Loading and saving weights, safetensors only.

* the JointDiT addon file (official layout, bf16/fp16/fp32) and its JSON sidecar of the same stem;
* Flux base weights in the BFL layout (``flux1-dev.safetensors``) and the Flux autoencoder (``ae.safetensors``).

Nothing here unpickles: a file that is not safetensors is refused.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .addons import JointAddons
from .autoencoder import AutoEncoder
from .config import AutoEncoderConfig, FluxConfig, LoraRanks
from .depth import DEPTH_TRANSFORMS
from .files import save_json_atomic, write_atomic

# The sidecar flags of the official release and their defaults (docs/method.md §8).
OFFICIAL_SIDECAR = {"is_txt_ids_training": False, "is_attnmask_training": False, "depth_transform": "none"}
SIDECAR_FALLBACK_NAMES = ("jointdit_addons.json", "jointdit.json")
SIDECAR_EXTENSION_PREFIX = "x_"  # sidecar keys of this prefix are ignored (notes, other tools' keys)
ADDON_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn, torch.float8_e5m2)
FLUX_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")


class AddonFileError(ValueError):
    """An addon file that cannot be used: the message says what is wrong and what to do."""


class WeightFileError(ValueError):
    """A base-model or autoencoder file that cannot be used."""


def read_safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[list[int], str]]:
    """name -> (shape, dtype string) from a safetensors header, without reading tensor data.

    Raises:
        FileNotFoundError: no such file.
        AddonFileError: not a safetensors file, or a truncated one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: (list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise AddonFileError(
            f"{path.name} is not a readable safetensors file ({exc}); it may be truncated (download it again) "
            "or in another format (.ckpt/.pt/.bin pickles are not loaded, for safety)"
        ) from exc
    expected_size = _data_size(path)
    if expected_size is not None and expected_size > path.stat().st_size:
        raise AddonFileError(f"{path.name} is truncated ({path.stat().st_size} of {expected_size} bytes); download it again")
    return shapes


def _data_size(path: Path) -> int | None:
    """Total size a safetensors file must have according to its header (8-byte length + header + data)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        n = int.from_bytes(head, "little")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return 8 + n + max(ends, default=0)


# ----------------------------------------------------------------------------- addon file


def infer_addon_config(shapes: Mapping[str, list[int]]) -> tuple[dict, LoraRanks]:
    """What base model an addon file fits, from its tensor shapes.

    Returns:
        (sizes, ranks): sizes has hidden_size, depth, depth_single_blocks, context_in_dim, vec_in_dim,
        mlp_hidden_dim (entries may be missing if the file lacks the tensors that tell them).
    """
    sizes: dict = {}
    if "txt_in.lora_B.weight" in shapes:
        sizes["hidden_size"] = shapes["txt_in.lora_B.weight"][0]
    else:
        joints = [v for k, v in shapes.items() if k.endswith(("joint1.weight", "joint2.weight"))]
        if joints:
            sizes["hidden_size"] = joints[0][0] // 2
    if "txt_in.lora_A.weight" in shapes:
        sizes["context_in_dim"] = shapes["txt_in.lora_A.weight"][1]
    if "vector_in.in_layer.lora_A.weight" in shapes:
        sizes["vec_in_dim"] = shapes["vector_in.in_layer.lora_A.weight"][1]
    for prefix, name in (("double_blocks", "depth"), ("single_blocks", "depth_single_blocks")):
        idx = {int(m.group(1)) for k in shapes if (m := re.match(prefix + r"\.(\d+)\.", k))}
        sizes[name] = max(idx) + 1 if idx else 0
    if "single_blocks.0.linear1.lora_B.weight" in shapes and "hidden_size" in sizes:
        sizes["mlp_hidden_dim"] = shapes["single_blocks.0.linear1.lora_B.weight"][0] - 3 * sizes["hidden_size"]
    rank = lambda key, default: shapes[key][0] if key in shapes else default  # noqa: E731
    block_rank = next((v[0] for k, v in shapes.items() if k.endswith("img_attn.qkv.lora_A.weight")), LoraRanks.blocks)
    ranks = LoraRanks(
        txt_in=rank("txt_in.lora_A.weight", LoraRanks.txt_in),
        vector_in_in_layer=rank("vector_in.in_layer.lora_A.weight", LoraRanks.vector_in_in_layer),
        vector_in_out_layer=rank("vector_in.out_layer.lora_A.weight", LoraRanks.vector_in_out_layer),
        blocks=block_rank,
    )
    return sizes, ranks


def describe_sizes(sizes: Mapping) -> str:
    """Human description of a model size, naming FLUX.1-dev when it is that."""
    text = (
        f"hidden {sizes.get('hidden_size', '?')}, {sizes.get('depth', '?')} double + "
        f"{sizes.get('depth_single_blocks', '?')} single blocks, text width {sizes.get('context_in_dim', '?')}, "
        f"pooled width {sizes.get('vec_in_dim', '?')}"
    )
    dev = FluxConfig()
    if (sizes.get("hidden_size"), sizes.get("depth"), sizes.get("depth_single_blocks")) == (dev.hidden_size, dev.depth, dev.depth_single_blocks):
        text += " (FLUX.1-dev)"
    return text


def expected_addon_shapes(config: FluxConfig, ranks: LoraRanks = LoraRanks()) -> dict[str, list[int]]:
    """name -> shape of the addon tensors for a base of ``config`` (built on the meta device, no memory)."""
    with torch.device("meta"):
        addons = JointAddons(config, ranks)
    return {k: list(v.shape) for k, v in addons.state_dict().items()}


def _looks_like_plain_lora(names) -> bool:
    has_joint = any(n.endswith((".joint1.weight", ".joint2.weight")) for n in names)
    lora_like = any(("lora" in n or "lokr" in n or "hada" in n) for n in names)
    return lora_like and not has_joint


def _list(items, limit: int = 8) -> str:
    items = sorted(items)
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_addon_shapes(shapes: Mapping[str, list[int]], config: FluxConfig | None, name: str = "addon file") -> tuple[FluxConfig | None, LoraRanks]:
    """Check addon tensor shapes against a base config (or only for internal consistency if None).

    Returns:
        (config the file fits or the given config, LoRA ranks found in the file).
    Raises:
        AddonFileError: a plain Flux LoRA, an addon for another model size, or missing / unexpected /
            mis-shaped tensors; the message lists them and says which model size the file fits.
    """
    names = set(shapes)
    if _looks_like_plain_lora(names):
        raise AddonFileError(
            f"{name} looks like a plain Flux LoRA (no joint1/joint2 layers): load it with a LoRA loader "
            "(e.g. LoraLoaderModelOnly) on the Flux model, not as a JointDiT addon"
        )
    sizes, ranks = infer_addon_config(shapes)
    if not any(n.endswith((".joint1.weight", ".joint2.weight")) for n in names):
        raise AddonFileError(f"{name} holds no JointDiT tensors (no joint1/joint2 layers): it is not a JointDiT addon file")
    if config is None:
        return None, ranks
    want = {
        "hidden_size": config.hidden_size,
        "depth": config.depth,
        "depth_single_blocks": config.depth_single_blocks,
        "context_in_dim": config.context_in_dim,
        "vec_in_dim": config.vec_in_dim,
        "mlp_hidden_dim": config.mlp_hidden_dim,
    }
    mismatch = {k: (sizes[k], v) for k, v in want.items() if k in sizes and sizes[k] != v}
    if mismatch:
        raise AddonFileError(
            f"{name} is an addon for another model size: it fits a Flux with {describe_sizes(sizes)}, but the "
            f"base model has {describe_sizes(want)} (differences: "
            + ", ".join(f"{k} {a} in the file vs {b} in the model" for k, (a, b) in mismatch.items())
            + "). Use the addon file made for this base model."
        )
    expected = expected_addon_shapes(config, ranks)
    missing = set(expected) - names
    unexpected = names - set(expected)
    misshaped = {k for k in names & set(expected) if list(shapes[k]) != expected[k]}
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors ({_list(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors ({_list(unexpected)})")
        if misshaped:
            parts.append(
                f"{len(misshaped)} mis-shaped tensors ("
                + _list(f"{k}: {shapes[k]} in the file, {expected[k]} expected" for k in misshaped)
                + ")"
            )
        raise AddonFileError(f"{name} does not fit the base model ({describe_sizes(want)}): " + "; ".join(parts))
    return config, ranks


def find_sidecar(path: Path) -> Path | None:
    """The JSON sidecar of an addon file: ``<stem>.json``, else an official name in the same folder."""
    own = path.with_suffix(".json")
    if own.is_file():
        return own
    for candidate in SIDECAR_FALLBACK_NAMES:
        if (path.parent / candidate).is_file():
            return path.parent / candidate
    return None


def check_sidecar(data: Mapping, source: str) -> dict:
    """Sidecar flags checked and completed with the official defaults.

    An unknown key stops the load: a misspelt flag (``"depth_tranform"``) would otherwise leave the default in
    force without a word where the user can see it. Keys starting with ``x_`` (:data:`SIDECAR_EXTENSION_PREFIX`)
    are the escape for notes and forward-compatible keys of other tools: they are ignored.

    Args:
        data: the sidecar's JSON object.
        source: the sidecar file, named in every message.
    Returns:
        a new dict: :data:`OFFICIAL_SIDECAR` updated with ``data``.
    Raises:
        AddonFileError: an unknown key (naming the closest known one), a known key with a value of the wrong JSON type (e.g. the string "false" for a
            boolean), or a depth_transform that is not one of :data:`~jointdit_core.depth.DEPTH_TRANSFORMS`.
    """
    unknown = []
    for key in data:
        if key not in OFFICIAL_SIDECAR and not key.startswith(SIDECAR_EXTENSION_PREFIX):
            close = difflib.get_close_matches(key, OFFICIAL_SIDECAR, n=1)
            unknown.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    if unknown:
        raise AddonFileError(
            f"sidecar {source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; the known keys are "
            f"{', '.join(OFFICIAL_SIDECAR)}. Fix the spelling, or start a key of your own with "
            f"'{SIDECAR_EXTENSION_PREFIX}' (e.g. \"{SIDECAR_EXTENSION_PREFIX}note\") to have it ignored"
        )
    for key, default in OFFICIAL_SIDECAR.items():
        if key in data and type(data[key]) is not type(default):
            expected = "a boolean (true or false, without quotes)" if isinstance(default, bool) else "a string"
            raise AddonFileError(f"sidecar {source}: {key} is {json.dumps(data[key], default=repr)}, which is not {expected}; fix that line of the file")
    flags = {**OFFICIAL_SIDECAR, **data}
    if flags["depth_transform"] not in DEPTH_TRANSFORMS:
        raise AddonFileError(
            f"sidecar {source}: depth_transform is {json.dumps(flags['depth_transform'], default=repr)}; it must be one of "
            + " or ".join(json.dumps(t) for t in DEPTH_TRANSFORMS)
        )
    return flags


def read_sidecar(path: Path | None) -> dict:
    """Sidecar flags of an addon file with the official defaults filled in (defaults only when ``path`` is None).

    Raises:
        AddonFileError: invalid JSON, not a JSON object, wrong types or values (see :func:`check_sidecar`), or
            flags this implementation cannot honour; every message names the file.
    """
    if path is None:
        return dict(OFFICIAL_SIDECAR)
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise AddonFileError(f"sidecar {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AddonFileError(f"sidecar {path} must hold a JSON object, e.g. {json.dumps(OFFICIAL_SIDECAR)}")
    flags = check_sidecar(data, str(path))
    for flag in ("is_txt_ids_training", "is_attnmask_training"):
        if flags[flag]:
            raise AddonFileError(
                f"sidecar {path} says {flag}=true: this addon was trained with T5 text ids / attention masks, which the "
                "official release (and this implementation) does not use"
            )
    return flags


@dataclass
class AddonCheckpoint:
    """A loaded addon file: tensors (as stored), sidecar flags, the LoRA ranks and the path."""

    state_dict: dict[str, torch.Tensor]
    sidecar: dict
    ranks: LoraRanks
    path: Path
    sidecar_path: Path | None

    @property
    def depth_transform(self) -> str:
        return self.sidecar["depth_transform"]


def load_addons(path: str | os.PathLike, config: FluxConfig | None = None, device: str | torch.device = "cpu") -> AddonCheckpoint:
    """Load a JointDiT addon file (any file name) and its sidecar, checked against ``config``.

    Args:
        path: a ``.safetensors`` addon file (official names: ``jointdit.safetensors`` or
            ``jointdit_addons.safetensors``); bf16, fp16, fp32, or fp8 (e4m3fn / e5m2, e.g. written by
            :func:`save_addons` with an fp8 ``dtype``: computed in a wider dtype by whoever loads it).
        config: the base model's config; None checks only that the file is a JointDiT addon.
    Raises:
        FileNotFoundError, AddonFileError: see :func:`read_safetensors_shapes`, :func:`check_addon_shapes`,
            :func:`read_sidecar`; also for tensors of another dtype or non-finite values.
    """
    path = Path(path)
    header = read_safetensors_shapes(path)
    shapes = {k: v[0] for k, v in header.items()}
    _, ranks = check_addon_shapes(shapes, config, name=path.name)
    sidecar_path = find_sidecar(path)
    sidecar = read_sidecar(sidecar_path)
    state = load_file(str(path), device=_device_name(device))
    bad_dtype = {k for k, v in state.items() if v.dtype not in ADDON_DTYPES}
    if bad_dtype:
        raise AddonFileError(f"{path.name}: tensors of unsupported dtype ({_list(bad_dtype)}); expected bf16, fp16, fp32, fp8_e4m3fn or fp8_e5m2")
    nonfinite = [k for k, v in state.items() if not torch.isfinite(v.float() if v.element_size() == 1 else v).all()]  # fp8: no isfinite kernel everywhere
    if nonfinite:
        raise AddonFileError(f"{path.name} holds NaN or infinite values in {_list(nonfinite)}: the file is damaged")
    return AddonCheckpoint(state, sidecar, ranks, path, sidecar_path)


def _device_name(device) -> str:
    """Device string safetensors accepts ("cpu:0" -> "cpu")."""
    device = torch.device(device)
    return "cpu" if device.type == "cpu" else str(device)


def save_addons(
    path: str | os.PathLike,
    addons: torch.nn.Module | Mapping[str, torch.Tensor],
    sidecar: Mapping | None = None,
    dtype: torch.dtype = torch.bfloat16,
    config: FluxConfig | None = None,
) -> Path:
    """Write an addon file in the official layout plus its sidecar ``<stem>.json``, each atomically.

    Args:
        path: target ``.safetensors`` path.
        addons: a :class:`JointAddons` or its state dict (official key names).
        sidecar: flags; official defaults fill what is missing (checked by :func:`check_sidecar`).
        dtype: stored dtype (official: bfloat16; ``torch.float8_e4m3fn`` / ``float8_e5m2`` halve the file,
            cast as is without a scale, as ComfyUI's fp8 weight dtypes are).
        config: base config recorded in the file's metadata (taken from ``addons.config`` if present).
    Returns:
        the path written.
    Raises:
        AddonFileError: sidecar flags of the wrong type or value (nothing is written).
    """
    path = Path(path)
    state = addons.state_dict() if isinstance(addons, torch.nn.Module) else dict(addons)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in state.items()}
    config = config or getattr(addons, "config", None)
    metadata = {"format": "pt", "producer": "ComfyUI-JointDiT"}
    if config is not None:
        metadata["flux_config"] = json.dumps(config.to_dict())
    flags = check_sidecar(sidecar or {}, str(path.with_suffix(".json")))
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    save_json_atomic(flags, path.with_suffix(".json"), indent=4)
    return path


# ----------------------------------------------------------------------------- base weights


def strip_prefix(state: Mapping[str, torch.Tensor], marker: str = "img_in.weight") -> dict[str, torch.Tensor]:
    """Remove a ComfyUI/diffusers checkpoint prefix (``model.diffusion_model.`` ...) so BFL names remain."""
    for prefix in FLUX_PREFIXES:
        if prefix + marker in state:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def load_flux_weights(path: str | os.PathLike, device="cpu", dtype: torch.dtype | None = None) -> tuple[dict, FluxConfig]:
    """Flux transformer weights in the BFL layout (``flux1-dev.safetensors``) and the config they imply.

    Raises:
        FileNotFoundError; WeightFileError when the file is not safetensors or not a BFL Flux.
    """
    try:
        read_safetensors_shapes(path)
    except AddonFileError as exc:
        raise WeightFileError(str(exc)) from exc
    state = strip_prefix(load_file(str(path), device=_device_name(device)))
    try:
        config = FluxConfig.from_state_dict(state)
    except ValueError as exc:
        raise WeightFileError(f"{Path(path).name}: {exc} (diffusers-layout files are not supported; use the BFL file)") from exc
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    return state, config


def load_autoencoder(path: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.float32, config: AutoEncoderConfig | None = None) -> AutoEncoder:
    """The Flux autoencoder from an ``ae.safetensors``-layout file (architecture inferred from shapes).

    Raises:
        FileNotFoundError; WeightFileError when the file is not a Flux autoencoder.
    """
    try:
        read_safetensors_shapes(path)
    except AddonFileError as exc:
        raise WeightFileError(str(exc)) from exc
    state = strip_prefix(load_file(str(path), device=_device_name(device)), marker="encoder.conv_in.weight")
    state = {k[len("first_stage_model.") :] if k.startswith("first_stage_model.") else k: v for k, v in state.items()}
    try:
        config = config or AutoEncoderConfig.from_state_dict(state)
    except ValueError as exc:
        raise WeightFileError(f"{Path(path).name}: {exc}") from exc
    ae = AutoEncoder(config)
    ae.load_state_dict(state, strict=True)
    return ae.to(device=device, dtype=dtype).eval()


def load_jointdit(flux_path, addon_path, device="cpu", dtype: torch.dtype = torch.float32):
    """A :class:`~jointdit_core.model.JointDiT` from a BFL Flux file and an addon file, in eval mode.

    Returns:
        (model, AddonCheckpoint).
    Raises:
        WeightFileError, AddonFileError: as the two loaders do.
    """
    from .model import JointDiT

    base_state, config = load_flux_weights(flux_path, device=device)
    addon = load_addons(addon_path, config, device=device)
    with torch.device("meta"):
        model = JointDiT(config, addon.ranks)
    model.base.load_state_dict(base_state, strict=True, assign=True)
    model.addons.load_state_dict(addon.state_dict, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval(), addon
