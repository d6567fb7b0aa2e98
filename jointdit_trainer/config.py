"""Training and preprocessing configuration: one flat dataclass, a config file, command-line overrides.

Defaults reproduce the official JointDiT recipe (docs/method.md §7 and the official README's training
command): Adafactor (relative_step, scale_parameter and warmup_init off), lr 1e-5, constant schedule
with warmup (0 warmup steps, the sd-scripts default the official command leaves unchanged), batch 4
pairs, 512x512, bf16, gradient checkpointing, guidance input 1.0, 10% caption dropout, 8 epochs,
seed 42, T5 length 512, no gradient clipping, UTS with shifts 3.1582 (normal) and 0.25 (small).

Why not transformers' ``HfArgumentParser`` (or accelerate's config): it maps dataclass fields to
``--name value`` flags and reads JSON/YAML files, which covers part of this. It does not read TOML (the
format of the shipped configs), has no dotted override into a nested table (``lora_ranks.blocks=16``),
fails on a bare ``list`` field (``sample_prompts``; tried with transformers 4.x), and its errors
for an unknown key are argparse's, without the close matches this module suggests. The trainer's
command line is two options (``--config``, ``--set``); this module is the ~80 lines that give it
exactly the file formats and messages it needs. accelerate's own config (``accelerate config``) holds
the distributed setup only, which the trainer leaves to it.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from jointdit_core.depth import DEPTH_TRANSFORMS
TIMESTEP_SAMPLINGS = ("uts", "same")


@dataclass
class TrainConfig:
    """Everything ``python -m jointdit_trainer preprocess`` and ``python -m jointdit_trainer train`` read.

    Paths may be relative; they are resolved against the current directory. ``None`` means unset.
    """

    # --- model files
    flux_path: str | None = None  # base Flux transformer, BFL layout (flux1-dev.safetensors)
    ae_path: str | None = None  # Flux autoencoder (ae.safetensors)
    clip_l: str | None = None  # Hugging Face CLIPTextModel folder, or clip_l.safetensors
    t5xxl: str | None = None  # Hugging Face T5EncoderModel folder, or t5xxl_fp16.safetensors
    clip_tokenizer: str | None = None  # tokenizer folder; needed when clip_l is a single file
    t5_tokenizer: str | None = None  # tokenizer folder; needed when t5xxl is a single file
    depth_model: str | None = None  # local Depth-Anything-V2 folder (transformers), for missing depth maps

    # --- data
    dataset_dir: str | None = None  # images/, depth/, captions/ (see jointdit_trainer/README.md)
    cache_dir: str | None = None  # default: <dataset_dir>/jointdit_cache
    output_dir: str = "output"
    output_name: str = "jointdit_addons"
    resolution: int = 512
    depth_kind: str = "disparity"  # "disparity" (near = large, Depth-Anything), "depth" (near = small) or "kitti" (16-bit PNG metres*256, 0 = missing)
    depth_zero_is_missing: bool = False  # 0 in a depth map = no measurement (sparse depth); always on for "kitti"
    depth_transform: str = "none"  # "none" | "inverse" (docs/method.md §6)
    t5_max_length: int = 512
    cache_dtype: str = "bf16"  # "bf16" | "fp32"
    latent_sample: bool = True  # encode with a posterior sample, as the official cache does
    text_encoder_dtype: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp32"
    preprocess_device: str = "auto"
    sample_prompts: list = field(default_factory=lambda: ["a photo of a cat sitting on a sofa"])

    # --- training recipe
    learning_rate: float = 1e-5
    lr_warmup_steps: int = 0
    lr_decay_steps: int = 0  # linear cooldown to 0 over the last N steps; 0 = constant (official)
    train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_train_epochs: int = 8
    max_train_steps: int | None = None  # overrides max_train_epochs when set
    mixed_precision: str = "bf16"  # "bf16" | "fp16" | "no"
    gradient_checkpointing: bool = True
    fp8_base: bool = False  # frozen base weights stored as scaled float8_e4m3fn, cast per layer (kohya's --fp8_base)
    fused_backward_pass: bool = False  # update each addon as soon as its gradient is done, then free it (kohya's --fused_backward_pass)
    blocks_to_swap: int = 0  # keep the last N base blocks in CPU memory, copied per layer when used (kohya's --blocks_to_swap)
    guidance_scale: float = 1.0
    caption_dropout: float = 0.1
    max_grad_norm: float = 0.0  # 0 = no clipping (official)
    seed: int = 42
    timestep_sampling: str = "uts"  # "uts" (official) | "same" (ablation: one t per pair)
    uts_normal_shift: float = 3.1582
    uts_small_shift: float = 0.25
    sigmoid_scale: float = 1.0
    asw_strength: float = 1.0  # 1.0 official, 0.0 = ASW off (ablation)
    lora_ranks: dict = field(default_factory=dict)  # LoraRanks fields; empty = official ranks
    dataloader_num_workers: int = 2

    # --- checkpoints, samples, logs
    save_every_n_steps: int = 25000
    save_at_end: bool = True
    keep_last_n_checkpoints: int | None = None
    resume_from: str | None = None  # None | "latest" | a checkpoint folder
    sample_every_n_steps: int = 5000  # 0 = off
    sample_at_first: bool = False
    sample_steps: int = 20
    sample_guidance: float = 3.5
    sample_resolution: int | None = None  # default: resolution
    sample_seed: int = 0
    log_with: str = "auto"  # "auto" (tensorboard when installed) | "tensorboard" | "none"
    log_every_n_steps: int = 1
    nonfinite_loss: str = "stop"  # a NaN/Inf loss: "stop" the run with a message | "skip" that step's update

    def validate(self) -> "TrainConfig":
        """Check value ranges; raises ``ValueError`` naming the field and what to do."""
        if self.depth_transform not in DEPTH_TRANSFORMS:
            raise ValueError(f"depth_transform must be one of {DEPTH_TRANSFORMS}, got {self.depth_transform!r}")
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, got {self.timestep_sampling!r}")
        if self.depth_kind not in ("disparity", "depth", "kitti"):
            raise ValueError(f"depth_kind must be 'disparity', 'depth' or 'kitti', got {self.depth_kind!r}")
        if self.mixed_precision not in ("bf16", "fp16", "no"):
            raise ValueError(f"mixed_precision must be 'bf16', 'fp16' or 'no', got {self.mixed_precision!r}")
        if self.nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {self.nonfinite_loss!r}")
        if self.cache_dtype not in ("bf16", "fp32"):
            raise ValueError(f"cache_dtype must be 'bf16' or 'fp32', got {self.cache_dtype!r}")
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1], got {self.caption_dropout}")
        for name in ("resolution", "train_batch_size", "gradient_accumulation_steps", "t5_max_length", "sample_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.blocks_to_swap < 0:
            raise ValueError(f"blocks_to_swap must be >= 0 (0 = every base block stays on the accelerator), got {self.blocks_to_swap}")
        if self.fused_backward_pass and (self.gradient_accumulation_steps != 1 or self.max_grad_norm > 0):
            raise ValueError("fused_backward_pass updates each weight during the backward: it needs gradient_accumulation_steps = 1 and max_grad_norm = 0")
        if self.lr_warmup_steps < 0 or self.lr_decay_steps < 0:
            raise ValueError(f"lr_warmup_steps and lr_decay_steps must be >= 0, got {self.lr_warmup_steps} and {self.lr_decay_steps}")
        if self.uts_normal_shift <= 0 or self.uts_small_shift <= 0:
            raise ValueError("uts_normal_shift and uts_small_shift must be > 0")
        from jointdit_core.config import LoraRanks

        unknown = set(self.lora_ranks) - {f.name for f in fields(LoraRanks)}
        if unknown:
            raise ValueError(f"unknown lora_ranks keys {sorted(unknown)}; valid: {[f.name for f in fields(LoraRanks)]}")
        return self

    @property
    def base_dtype(self):
        """The frozen base's (and the autocast compute's) torch dtype for ``mixed_precision``."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[self.mixed_precision]

    @property
    def sparse_depth(self) -> bool:
        """Depth maps with missing pixels: a validity mask goes to the cache and the depth loss."""
        return self.depth_zero_is_missing or self.depth_kind == "kitti"

    @property
    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir)
        if not self.dataset_dir:
            raise ValueError("set cache_dir or dataset_dir (the cache defaults to <dataset_dir>/jointdit_cache)")
        return Path(self.dataset_dir) / "jointdit_cache"

    def to_dict(self) -> dict:
        return asdict(self)


def _read_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if suffix in (".yaml", ".yml"):
        import yaml

        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    raise ValueError(f"config file {path}: use .toml, .json, .yaml or .yml")


def _parse_value(text: str) -> Any:
    """``--set`` value: JSON when it parses (numbers, true/false/null, lists, dicts), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return text


def _apply(values: dict, key: str, value: Any) -> None:
    names = [f.name for f in fields(TrainConfig)]
    top, _, sub = key.partition(".")
    if top not in names:
        close = difflib.get_close_matches(top, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown config key {top!r}{hint}")
    if sub:
        nested = dict(values.get(top) or {})
        nested[sub] = value
        values[top] = nested
    else:
        values[top] = value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from defaults, an optional TOML/JSON/YAML file and ``key=value`` overrides.

    Overrides use dotted keys for nested tables (``lora_ranks.blocks=8``); values are parsed as JSON
    when possible (``max_train_steps=100``, ``sample_prompts=["a", "b"]``), else taken as strings.

    Raises:
        FileNotFoundError: the config file is missing.
        ValueError: unknown key (with close matches), malformed override, or an invalid value.
    """
    values: dict = {}
    if path is not None:
        data = _read_file(path)
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a table/object at the top level")
        for key, value in data.items():
            _apply(values, key, value)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, _, text = item.partition("=")
        _apply(values, key.strip(), _parse_value(text))
    cfg = TrainConfig(**values)
    for f in fields(TrainConfig):  # numbers written as strings (YAML reads 1e-5 as a string)
        v, kind = getattr(cfg, f.name), str(f.type).split(" ")[0]
        if kind in ("int", "float") and isinstance(v, str):
            try:
                setattr(cfg, f.name, int(v) if kind == "int" else float(v))
            except ValueError:
                raise ValueError(f"{f.name} must be a number, got {v!r}") from None
    return cfg.validate()
