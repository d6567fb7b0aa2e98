"""The model under test, run as a user runs it: photo -> relative disparity at the photo's size.

Everything is ``jointdit_core``'s: :func:`~jointdit_core.resize.processing_size` and
:func:`~jointdit_core.resize.resize_image` to the processing resolution, the autoencoder,
:func:`~jointdit_core.pipeline.generate` (task depth_estimation: rgb branch held at t = 0, depth denoised
from the seed's noise), :func:`~jointdit_core.depth.model_output_to_disparity`,
:func:`~jointdit_core.ensemble.ensemble_disparity` and :func:`~jointdit_core.resize.to_input_size` back to
the photo's size. The official depth-estimation prompt is " ", encoded once.

Two sources of weights: FLUX.1-dev + the official addons (+ ``ae.safetensors``, CLIP-L, T5-XXL), or a model
folder with a ``model.json`` manifest such as the demo world's ``rgbd_world/model``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEPTH_ESTIMATION_PROMPT = " "
MEMBER_SEED_STRIDE = 1000  # ensemble member k uses seed + 1000 k (as rgbd_world.evaluation.ensemble)


@dataclass
class DepthEstimator:
    """A loaded model: ``model`` (JointDiT, eval), ``ae``, the encoded prompt ``txt`` (1, T, context) and
    ``y`` (1, vec), FLUX's distilled ``guidance``, ``asw_strength``, the addons' ``depth_transform`` and a
    ``name`` for reports."""

    model: torch.nn.Module
    ae: torch.nn.Module
    txt: Tensor
    y: Tensor
    guidance: float
    asw_strength: float
    depth_transform: str
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _encode_prompt(text_encoders) -> tuple[Tensor, Tensor]:
    return text_encoders.encode([DEPTH_ESTIMATION_PROMPT])


def _load_jointdit(flux, addons, device, dtype, fp8_base: bool):
    """The core's ``load_jointdit``; with ``fp8_base`` the base's linear weights stored as scaled float8 on ``device``
    (:func:`jointdit_trainer.frozen_base.place_frozen_base`, cast per layer to ``dtype`` when they run)."""
    from jointdit_core.checkpoint import load_jointdit

    if not fp8_base:
        return load_jointdit(flux, addons, device=device, dtype=dtype)
    from ..frozen_base import place_frozen_base

    model, checkpoint = load_jointdit(flux, addons, device="cpu", dtype=dtype)
    place_frozen_base(model.base, device, fp8=True)
    model.addons.to(device)
    return model, checkpoint


def load_model_folder(model_dir: str | Path, variant: str | None = None, device="cpu", dtype=torch.float32, fp8_base: bool = False) -> DepthEstimator:
    """A model folder with ``model.json`` (``flux``, ``ae``, ``text`` (clip/ and t5/ folders), ``t5_max_length``,
    ``guidance``, ``addons``: {variant: {file, asw_strength}}, ``default_addon``), e.g. ``rgbd_world/model``.

    Raises:
        FileNotFoundError: no model.json; ValueError: an unknown variant; what the core's loaders raise.
    """
    from jointdit_core.checkpoint import load_autoencoder

    from ..text_encoders import TextEncoders

    root = Path(model_dir)
    if not (root / "model.json").is_file():
        raise FileNotFoundError(f"{root} has no model.json: give --model-dir a model folder (e.g. rgbd_world/model), or --flux/--addons/... files")
    manifest = json.loads((root / "model.json").read_text())
    name = variant or manifest["default_addon"]
    if name not in manifest["addons"]:
        raise ValueError(f"unknown addon variant {name!r}; {root} has {sorted(manifest['addons'])}")
    addon = manifest["addons"][name]
    model, checkpoint = _load_jointdit(root / manifest["flux"], root / addon["file"], device, dtype, fp8_base)
    text = TextEncoders(root / manifest["text"] / "clip", root / manifest["text"] / "t5", t5_max_length=manifest["t5_max_length"])
    txt, y = _encode_prompt(text)
    return DepthEstimator(model, load_autoencoder(root / manifest["ae"], device=device), txt, y, float(manifest["guidance"]),
                          float(addon["asw_strength"]), checkpoint.depth_transform, f"{model_dir}:{name}")


def load_flux_addons(flux, addons, ae, clip_l, t5xxl, clip_tokenizer=None, t5_tokenizer=None, t5_max_length=512, guidance=3.5,
                     asw_strength=1.0, device="cuda", dtype=torch.bfloat16, fp8_base: bool = False) -> DepthEstimator:
    """FLUX.1-dev (BFL ``flux1-dev.safetensors``; an fp8 file is upcast to ``dtype``, or with ``fp8_base`` every linear
    weight stored as scaled float8) + an addon file + ``ae.safetensors``
    + CLIP-L / T5-XXL (folders or single files, as the trainer takes them; used once for the prompt, then freed).

    Raises:
        FileNotFoundError, WeightFileError, AddonFileError: as the core's loaders and the trainer's
        ``TextEncoders`` raise them.
    """
    from jointdit_core.checkpoint import load_autoencoder

    from ..text_encoders import TextEncoders

    text = TextEncoders(clip_l, t5xxl, clip_tokenizer, t5_tokenizer, t5_max_length=t5_max_length, device=device, dtype=dtype)
    txt, y = _encode_prompt(text)
    del text
    model, checkpoint = _load_jointdit(flux, addons, device, dtype, fp8_base)
    return DepthEstimator(model, load_autoencoder(ae, device=device), txt, y, guidance, asw_strength, checkpoint.depth_transform, Path(addons).stem)


@torch.no_grad()
def estimate_disparity(estimator: DepthEstimator, rgb: np.ndarray, seed: int = 0, steps: int = 20, processing_resolution: int = 512,
                       ensemble_size: int = 1, reduction: str = "median", cache_threshold: float = 0.0) -> np.ndarray:
    """Relative disparity of a batch of photos.

    Args:
        rgb: (B, H, W, 3) uint8 photos of one size. seed: the batch's noise seed (member k: seed + 1000 k; the
            noise of the B photos is drawn together, :func:`jointdit_core.sampler.seeded_noise`).
        steps: Euler steps (official 20); processing_resolution: longer side the photo is processed at (0 = its
            own size; sides rounded to multiples of 16); ensemble_size, reduction: :mod:`jointdit_core.ensemble`.
    Returns:
        (B, H, W) float32 disparity in [0, 1], near = 1.
    Raises:
        ValueError: not a (B, H, W, 3) batch, or what the core raises (e.g. an unknown reduction).
    """
    from jointdit_core.depth import model_output_to_disparity
    from jointdit_core.ensemble import ensemble_disparity
    from jointdit_core.images import uint8_to_model
    from jointdit_core.pipeline import generate
    from jointdit_core.resize import processing_size, resize_image, to_input_size

    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"photos must be a (B, H, W, 3) batch, got shape {rgb.shape}")
    if ensemble_size < 1:
        raise ValueError(f"ensemble_size must be at least 1, got {ensemble_size}")
    height, width = rgb.shape[1:3]
    x = uint8_to_model(rgb)
    x = resize_image(x, processing_size(height, width, processing_resolution)).clamp(-1, 1)
    ae_dtype = next(estimator.ae.parameters()).dtype
    z = estimator.ae.encode(x.to(estimator.device, ae_dtype))
    from jointdit_core.step_cache import CacheSettings, JointStepCache

    members = []
    for k in range(ensemble_size):
        cache = JointStepCache(CacheSettings(cache_threshold, start_percent=0.0, end_percent=1.0)) if cache_threshold > 0 else None
        _, z_depth = generate(estimator.model, estimator.txt, estimator.y, "depth_estimation", rgb_latent=z, seed=seed + MEMBER_SEED_STRIDE * k,
                              steps=steps, guidance=estimator.guidance, asw_strength=estimator.asw_strength, progress=False, cache=cache)
        members.append(model_output_to_disparity(estimator.ae.decode(z_depth.to(ae_dtype)), estimator.depth_transform).cpu())
    disparity = ensemble_disparity(torch.stack(members), reduction).disparity
    return to_input_size(disparity, (height, width)).numpy().astype(np.float32)
