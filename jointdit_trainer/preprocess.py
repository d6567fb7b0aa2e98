"""``python -m jointdit_trainer preprocess``: raw dataset folder -> safetensors cache of latents and text embeddings.

Per sample: resize and centre-crop the image (and its depth map) to ``resolution``; take the depth map
from the dataset, or predict it with a local Depth-Anything-V2 (``depth_model``) when there is none;
min-max normalise the disparity per image, apply ``depth_transform``; encode image and depth with the
Flux autoencoder (one posterior sample, as the official cache); encode the caption (empty when there is
none) with CLIP-L and T5-XXL. Unreadable or inconsistent samples are listed in ``cache.json`` under
``skipped`` with the reason, and printed; they never stop the run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from jointdit_core.files import save_json_atomic, save_safetensors_atomic

from .config import TrainConfig
from .data import CACHE_VERSION, load_disparity, load_image, load_sparse_disparity, scan_dataset

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[name]


class DepthEstimator:
    """Relative disparity from a local Depth-Anything-V2 folder through ``transformers.pipeline``.

    Args:
        folder: a transformers Depth-Anything-V2 model folder (e.g. a download of
            ``depth-anything/Depth-Anything-V2-Large-hf``; the official recipe uses Large).
    Raises:
        FileNotFoundError: the folder is missing or holds no ``config.json``.
    """

    def __init__(self, folder: str | Path, device: torch.device):
        folder = Path(folder) if folder else None
        if folder is None or not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"depth_model={folder}: not a transformers model folder (config.json missing). Download "
                "Depth-Anything-V2 (e.g. depth-anything/Depth-Anything-V2-Large-hf) to a folder and set depth_model to it, "
                "or put depth maps in <dataset_dir>/depth/"
            )
        from transformers import pipeline

        self.pipe = pipeline("depth-estimation", model=str(folder), device=device)

    def __call__(self, image) -> np.ndarray:
        """PIL RGB image (W, H) -> (H, W) float32 relative disparity (near = large)."""
        pred = self.pipe(image)["predicted_depth"]
        pred = torch.as_tensor(pred, dtype=torch.float32)
        while pred.ndim < 4:
            pred = pred.unsqueeze(0)
        w, h = image.size
        if pred.shape[-2:] != (h, w):
            pred = torch.nn.functional.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)
        return pred[0, 0].cpu().numpy()


def _cache_sample(s, cfg: TrainConfig, ae, encoders, estimator, generator, store: torch.dtype, cache_dir: Path) -> None:
    """Encode one :class:`~jointdit_trainer.data.RawSample` -> ``<cache_dir>/samples/<stem>.safetensors``.

    Raises:
        ValueError (or the reader's error): no depth map and no ``depth_model``, non-finite latents, an
            unreadable file; the caller lists the sample as skipped.
    """
    from jointdit_core.depth import disparity_to_model_input, normalize_disparity

    from .sparse_depth import latent_validity, normalize_valid

    x, cropped, original = load_image(s.image_path, cfg.resolution)
    coverage = None
    if s.depth_path is not None and cfg.sparse_depth:
        disparity, coverage = load_sparse_disparity(s.depth_path, cfg.resolution, original, cfg.depth_kind)
    elif s.depth_path is not None:
        disparity = load_disparity(s.depth_path, cfg.resolution, original, cfg.depth_kind)
    elif estimator is not None:
        disparity = estimator(cropped)
    else:
        raise ValueError("no depth map in depth/ and no depth_model set to predict one")
    disparity = torch.from_numpy(np.array(disparity, dtype=np.float32))
    if coverage is None:
        d01 = normalize_disparity(disparity[None])
    else:
        d01 = normalize_valid(disparity, torch.from_numpy(coverage) > 0)[None]
    depth_in = disparity_to_model_input(d01, cfg.depth_transform)[0]
    with torch.no_grad():
        lat = ae.encode(torch.stack([x, depth_in]).to(generator.device), sample=cfg.latent_sample, generator=generator)
    if not torch.isfinite(lat).all():
        raise ValueError("the autoencoder produced NaN/inf latents")
    caption = s.caption if s.caption is not None else ""
    t5, pooled = encoders.encode([caption])
    tensors = {"image_latent": lat[0].to(store), "depth_latent": lat[1].to(store), "t5": t5[0].to(store), "clip_pooled": pooled[0].to(store)}
    if cfg.sparse_depth:  # maps from depth_model (or dense ones) count as fully measured
        full = torch.ones(disparity.shape) if coverage is None else torch.from_numpy(coverage)
        tensors["depth_valid"] = latent_validity(full, ae.config.downscale).contiguous()
    save_safetensors_atomic(
        tensors,
        cache_dir / "samples" / f"{s.stem}.safetensors",
        metadata={"caption": caption, "image": s.image_path.name},
    )


def _cache_conditions(encoders, prompts: list[str], store: torch.dtype, cache_dir: Path) -> None:
    """The empty-prompt condition and the sample prompts' conditions -> the cache."""
    t5_empty, pooled_empty = encoders.encode([""])
    save_safetensors_atomic({"t5": t5_empty[0].to(store), "clip_pooled": pooled_empty[0].to(store)}, cache_dir / "empty_prompt.safetensors")
    if prompts:
        t5_s, pooled_s = encoders.encode(prompts)
        save_safetensors_atomic(
            {"t5": t5_s.to(store), "clip_pooled": pooled_s.to(store)},
            cache_dir / "sample_prompts.safetensors",
            metadata={"prompts": json.dumps(prompts)},
        )


def _cache_manifest(cfg: TrainConfig, ae, encoders, done: list[str], skipped: list[dict], no_caption: int) -> dict:
    """The content of ``cache.json``."""
    f = ae.config.downscale
    latent_shape = [ae.config.z_channels, cfg.resolution // f, cfg.resolution // f]
    return {
        "version": CACHE_VERSION,
        "resolution": cfg.resolution,
        "latent_shape": latent_shape,
        "t5_shape": [cfg.t5_max_length, encoders.context_dim],
        "clip_dim": encoders.pooled_dim,
        "depth_transform": cfg.depth_transform,
        "depth_kind": cfg.depth_kind,
        "sparse_depth": cfg.sparse_depth,
        "latent_sample": cfg.latent_sample,
        "cache_dtype": cfg.cache_dtype,
        "ae": Path(cfg.ae_path).name,
        "clip_l": Path(cfg.clip_l).name,
        "t5xxl": Path(cfg.t5xxl).name,
        "samples": done,
        "skipped": skipped,
        "captions_missing": no_caption,
    }


def preprocess(cfg: TrainConfig) -> dict:
    """Build the cache (layout in :mod:`jointdit_trainer.data`) and return its manifest.

    Raises:
        FileNotFoundError: dataset, autoencoder or text encoders missing.
        ValueError: resolution not a multiple of 2x the autoencoder downscale; no usable sample.
    """
    from jointdit_core.checkpoint import load_autoencoder

    from .text_encoders import TextEncoders

    if not cfg.dataset_dir:
        raise ValueError("set dataset_dir (the folder with images/, depth/, captions/)")
    if not cfg.ae_path:
        raise ValueError("set ae_path (the Flux autoencoder, ae.safetensors)")
    cache_dir = cfg.resolved_cache_dir
    device = resolve_device(cfg.preprocess_device)
    samples, problems = scan_dataset(cfg.dataset_dir)
    for p in problems:
        logger.warning("dataset: %s: %s", p["stem"], p["reason"])

    ae = load_autoencoder(cfg.ae_path, device=device, dtype=torch.float32)
    f = ae.config.downscale
    if cfg.resolution % (2 * f):
        raise ValueError(f"resolution {cfg.resolution} must be a multiple of {2 * f} (autoencoder /{f}, then 2x2 packing)")
    encoders = TextEncoders(
        cfg.clip_l, cfg.t5xxl, cfg.clip_tokenizer, cfg.t5_tokenizer, cfg.t5_max_length, device, resolve_dtype(cfg.text_encoder_dtype, device)
    )
    store = torch.bfloat16 if cfg.cache_dtype == "bf16" else torch.float32
    estimator = None
    if any(s.depth_path is None for s in samples) and cfg.depth_model:
        estimator = DepthEstimator(cfg.depth_model, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    skipped = [dict(p) for p in problems]
    done: list[str] = []
    no_caption = 0
    for s in tqdm(samples, desc="preprocess", unit="sample"):
        try:
            _cache_sample(s, cfg, ae, encoders, estimator, generator, store, cache_dir)
            no_caption += s.caption is None
            done.append(s.stem)
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning("skipping %s: %s", s.stem, reason)
            skipped.append({"stem": s.stem, "reason": reason})
    if no_caption:
        logger.warning("%d samples have no caption; they are trained with the empty prompt", no_caption)
    if not done:
        raise ValueError(f"no sample could be preprocessed; problems: {skipped[:5]}")

    _cache_conditions(encoders, [str(p) for p in (cfg.sample_prompts or [])], store, cache_dir)
    manifest = _cache_manifest(cfg, ae, encoders, done, skipped, no_caption)
    save_json_atomic(manifest, cache_dir / "cache.json")
    print(f"cached {len(done)} samples in {cache_dir}; skipped {len(skipped)}")
    for item in skipped:
        print(f"  skipped {item['stem']}: {item['reason']}")
    return manifest
