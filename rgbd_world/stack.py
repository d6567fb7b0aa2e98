"""The shipped small model of the RGB-D world, loaded and run: the three JointDiT tasks on 64x64 scenes.

``rgbd_world/model/`` (written by ``python -m rgbd_world.recipe``) holds::

    model.json                         manifest: files, addon variants, sampling settings, recipe log
    flux.safetensors (+ .json)         text-to-image base, BFL Flux layout
    ae.safetensors (+ .json)           autoencoder, BFL ae layout, FLUX.1 scale/shift
    text/clip, text/t5                 CLIP / T5 text encoders + tokenizers (Hugging Face folders)
    addons/<variant>.safetensors+.json JointDiT addons (official layout + sidecar) per training variant
    baseline_mean_disparity.safetensors  the mean training disparity map (evaluation baseline)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jointdit_core.images import model_to_uint8, uint8_to_model

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "model"
DEPTH_ESTIMATION_PROMPT = " "  # the official depth-estimation prompt
MEMBER_SEED_STRIDE = 1000  # ensemble member k uses seed + 1000 k (depth_estimation adds the batch offset < 1000)


@dataclass
class Stack:
    """A loaded model: ``model`` (JointDiT, eval, float32), ``ae``, ``text`` (trainer TextEncoders),
    ``asw_strength`` and ``guidance`` to sample with, ``depth_transform`` of the addons, ``variant``,
    ``manifest`` (model.json), ``cfg``: the classifier-free guidance scale of the captioned tasks (joint
    generation, depth-to-image; model.json ``cfg``, 1.0 = off when absent); ``depth_steps`` and
    ``depth_ensemble``: the Euler steps and ensemble size of depth estimation in the demo and
    ``rgbd_world.evaluation.depth`` (model.json ``depth_estimation``; the official 20 steps, one sample, when absent)."""

    model: torch.nn.Module
    ae: torch.nn.Module
    text: object
    asw_strength: float
    guidance: float
    depth_transform: str
    variant: str
    manifest: dict
    cfg: float = 1.0
    depth_steps: int = 20
    depth_ensemble: int = 1

    @property
    def latent_size(self) -> tuple[int, int]:
        side = self.manifest["resolution"] // self.ae.config.downscale
        return side, side


def read_manifest(model_dir: str | Path = DEFAULT_MODEL_DIR) -> dict:
    """model.json of a model folder. Raises FileNotFoundError naming the command that makes it."""
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the model with python -m rgbd_world.recipe --out {model_dir}")
    return json.loads(path.read_text())


def depth_settings(manifest: dict) -> tuple[int, int]:
    """(Euler steps, ensemble size) of depth estimation from model.json's ``depth_estimation`` entry;
    (20, 1), the official single 20-step sample, when it is absent."""
    depth = manifest.get("depth_estimation", {})
    return int(depth.get("steps", 20)), int(depth.get("ensemble", 1))


def load_stack(model_dir: str | Path = DEFAULT_MODEL_DIR, variant: str | None = None, addon: str | Path | None = None, asw_strength: float = 1.0) -> Stack:
    """Load base + addons (``variant``, default the manifest's ``default_addon``), autoencoder, text encoders.

    ``addon``: instead of a variant, an addon file of your own (``python -m jointdit_trainer train`` output,
    ``.safetensors`` with its ``.json`` sidecar beside it) trained on this model's base; sampled with
    ``asw_strength`` (official 1.0).

    Raises:
        FileNotFoundError: missing model folder or files; ValueError: unknown variant, or both ``variant``
        and ``addon``; jointdit_core.checkpoint.AddonFileError: an addon file that does not fit the base.
    """
    from jointdit_core.checkpoint import load_autoencoder, load_jointdit

    from .training.text import load_text_encoders

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if addon is not None:
        if variant is not None:
            raise ValueError("give an addon variant or an addon file, not both")
        addon_path, name = Path(addon), Path(addon).name
        if not addon_path.is_file():
            raise FileNotFoundError(f"addon file {addon_path} not found (the trainer writes <output_dir>/<output_name>.safetensors)")
    else:
        name = variant or manifest["default_addon"]
        if name not in manifest["addons"]:
            raise ValueError(f"unknown addon variant {name!r}; this model has {sorted(manifest['addons'])}")
        addon_path, asw_strength = model_dir / manifest["addons"][name]["file"], float(manifest["addons"][name]["asw_strength"])
    model, checkpoint = load_jointdit(model_dir / manifest["flux"], addon_path)
    ae = load_autoencoder(model_dir / manifest["ae"])
    text = load_text_encoders(model_dir / manifest["text"], t5_max_length=manifest["t5_max_length"])
    return Stack(model, ae, text, float(asw_strength), float(manifest["guidance"]), checkpoint.depth_transform, name, manifest,
                 float(manifest.get("cfg", 1.0)), *depth_settings(manifest))


@torch.no_grad()
def _encode(stack: Stack, x: torch.Tensor) -> torch.Tensor:
    return stack.ae.encode(x)


@torch.no_grad()
def _decode(stack: Stack, z: torch.Tensor) -> torch.Tensor:
    return stack.ae.decode(z)


def _generate(stack: Stack, prompts: list[str], task: str, steps: int, seed: int, cfg: float = 1.0, **latents):
    from jointdit_core.pipeline import generate

    txt, y = stack.text.encode(prompts)
    negative = stack.text.encode([""]) if cfg != 1.0 else None  # the empty prompt of the 10% caption dropout
    return generate(
        stack.model, txt, y, task, latent_size=stack.latent_size, seed=seed, steps=steps,
        guidance=stack.guidance, asw_strength=stack.asw_strength, cfg=cfg, negative=negative, progress=False, **latents,
    )


def depth_estimation(stack: Stack, rgb: np.ndarray, steps: int = 20, seed: int = 0, batch: int = 50, ensemble: int = 1, **options) -> np.ndarray:
    """Depth from images: uint8 (N, H, W, 3) -> disparity float32 (N, H, W) in [0, 1], near = 1.

    The rgb branch holds the encoded image at t = 0, the depth branch is denoised from noise
    (``seed`` + batch offset) over ``steps`` Euler steps with the official prompt " ". ``ensemble`` > 1:
    that many samples per image, member k with seed ``seed + 1000 k`` (member 0 is the single run),
    combined by :func:`jointdit_core.ensemble.ensemble_disparity` (joint scale/shift alignment, median;
    Marigold's test-time ensembling). ``options``: further keywords of :func:`jointdit_core.pipeline.generate`
    (``schedule``, ``cache``, ``zero_depth_noise``). Raises ValueError for ``ensemble`` < 1.
    """
    if ensemble < 1:
        raise ValueError(f"ensemble must be at least 1 sample per image, got {ensemble}")
    if ensemble > 1:
        from jointdit_core.ensemble import ensemble_disparity

        members = [depth_estimation(stack, rgb, steps, seed + MEMBER_SEED_STRIDE * k, batch, **options) for k in range(ensemble)]
        return ensemble_disparity(torch.from_numpy(np.stack(members))).disparity.numpy()
    out = []
    for i in range(0, len(rgb), batch):
        chunk = rgb[i : i + batch]
        z = _encode(stack, uint8_to_model(chunk))
        _, z_depth = _generate(stack, [DEPTH_ESTIMATION_PROMPT] * len(chunk), "depth_estimation", steps, seed + i, rgb_latent=z, **options)
        out.append(_decode_disparity(stack, z_depth))
    return np.concatenate(out)


def _resize_uint8(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from jointdit_core.resize import resize_image

    x = resize_image(torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float(), size)
    return x.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()


def depth_estimation_resized(stack: Stack, rgb: np.ndarray, steps: int = 20, seed: int = 0, **options) -> np.ndarray:
    """Depth of photos of any size by resizing: uint8 (N, H, W, 3) -> the photos squeezed to the model's square
    native size (64 px; the demo model knows no other shape), :func:`depth_estimation`, the disparity resized back:
    float32 (N, H, W) in [0, 1]. Resampling: :mod:`jointdit_core.resize` (JointDiT Depth Estimation's).
    ``options``: as :func:`depth_estimation` (``ensemble``, ``batch``, ...)."""
    from jointdit_core.resize import to_input_size

    native = (stack.manifest["resolution"],) * 2
    small = depth_estimation(stack, _resize_uint8(rgb, native), steps, seed, **options)
    return to_input_size(torch.from_numpy(small), tuple(rgb.shape[1:3])).numpy()


def tile_estimates(stack: Stack, rgb: np.ndarray, overlap: int, steps: int = 20, seed: int = 0, **options):
    """Every tile's own disparity: uint8 (N, H, W, 3) -> (grid, float32 (N, T, h, w) in [0, 1]), the tiles of
    :func:`jointdit_core.tiles.plan_tiles` (the native size, 64 px, ``overlap`` pixels; T = ``len(grid.windows)``),
    estimated by :func:`depth_estimation` in one batch. ``options``: as :func:`depth_estimation`.
    Raises ValueError from ``plan_tiles`` (e.g. an overlap of 64 px or more)."""
    from jointdit_core.resize import to_input_size
    from jointdit_core.tiles import plan_tiles, tile_slices

    native = (stack.manifest["resolution"],) * 2
    grid = plan_tiles(rgb.shape[1], rgb.shape[2], native, overlap)
    crops = np.stack([photo[rows, cols] for photo in rgb for rows, cols in tile_slices(grid)])
    tiles = torch.from_numpy(depth_estimation(stack, _resize_uint8(crops, native), steps, seed, **options))
    return grid, to_input_size(tiles, grid.size).reshape(len(rgb), len(grid.windows), *grid.size)


def depth_estimation_tiles(stack: Stack, rgb: np.ndarray, overlap: int, steps: int = 20, seed: int = 0, anchor_weight: float | None = 0.1,
                           **options) -> np.ndarray:
    """Depth of photos larger than the model's native size in tiles of that size: uint8 (N, H, W, 3) -> float32 (N, H, W) in [0, 1].

    The core of JointDiT Depth Estimation's ``large_photos = tiles``: :func:`tile_estimates`, merged by
    :func:`jointdit_core.tiles.merge_tiles` anchored to :func:`depth_estimation_resized` (the same seed) with
    ``anchor_weight``; None: no anchor, the tiles only agree with each other. ``options``: as :func:`depth_estimation`.
    Raises ValueError from :func:`jointdit_core.tiles.plan_tiles` (e.g. an overlap of 64 px or more).
    """
    from jointdit_core.tiles import merge_tiles

    grid, tiles = tile_estimates(stack, rgb, overlap, steps, seed, **options)
    reference = None if anchor_weight is None else torch.from_numpy(depth_estimation_resized(stack, rgb, steps, seed, **options))
    return np.stack([
        merge_tiles(tiles[k], grid, None if reference is None else reference[k], anchor_weight or 0.0).disparity.numpy() for k in range(len(rgb))
    ])


def joint_generation(stack: Stack, captions: list[str], steps: int = 20, seed: int = 0, cfg: float | None = None, **options) -> tuple[np.ndarray, np.ndarray]:
    """Text -> (rgb uint8 (N, H, W, 3), disparity float32 (N, H, W) in [0, 1]); both branches from noise.

    ``cfg``: classifier-free guidance scale against the empty prompt (default: the stack's ``cfg``);
    ``options`` as in :func:`depth_estimation`."""
    from jointdit_core.depth import model_output_to_disparity

    z_rgb, z_depth = _generate(stack, captions, "joint_generation", steps, seed, stack.cfg if cfg is None else cfg, **options)
    decoded = _decode(stack, torch.cat([z_rgb, z_depth]))
    return model_to_uint8(decoded[: len(captions)]).numpy(), model_output_to_disparity(decoded[len(captions) :], stack.depth_transform).numpy()


def depth_to_image(stack: Stack, disparity: np.ndarray, captions: list[str], steps: int = 20, seed: int = 0, cfg: float | None = None, **options) -> np.ndarray:
    """Depth (+ caption) -> image: disparity (N, H, W) in [0, 1] (near = 1) -> uint8 (N, H, W, 3).

    The depth branch holds the encoded depth map at t = 0; the rgb branch is denoised from noise;
    ``cfg`` and ``options`` as in :func:`joint_generation`.
    Raises ValueError (from the depth conventions) for disparity outside [0, 1].
    """
    z_rgb, _ = _generate(stack, captions, "depth_to_image", steps, seed, stack.cfg if cfg is None else cfg, depth_latent=_encode_disparity(stack, disparity), **options)
    return model_to_uint8(_decode(stack, z_rgb)).numpy()


def latent_mask(stack: Stack, pixel_mask: np.ndarray) -> torch.Tensor:
    """(N, H, W) pixel mask (bool or [0, 1], 1 = regenerate) -> (N, 1, h, w) float latent mask.

    Area average over each latent cell (the soft mask a ComfyUI ``noise_mask`` becomes at the latent size).
    """
    mask = torch.from_numpy(np.asarray(pixel_mask, np.float32))[:, None]
    return torch.nn.functional.interpolate(mask, size=stack.latent_size, mode="area")


def _encode_disparity(stack: Stack, disparity: np.ndarray) -> torch.Tensor:
    from jointdit_core.depth import disparity_to_model_input

    return _encode(stack, disparity_to_model_input(torch.from_numpy(np.asarray(disparity, np.float32)), stack.depth_transform))


def _decode_disparity(stack: Stack, z: torch.Tensor) -> np.ndarray:
    from jointdit_core.depth import model_output_to_disparity

    return model_output_to_disparity(_decode(stack, z), stack.depth_transform).numpy()


def depth_completion(stack: Stack, rgb: np.ndarray, disparity: np.ndarray, missing: np.ndarray, steps: int = 20, seed: int = 0, batch: int = 50) -> np.ndarray:
    """Depth completion: the photo held clean, the depth generated where it is missing.

    Args:
        rgb: uint8 (N, H, W, 3) photos. disparity: float (N, H, W) in [0, 1] (near = 1), any values where
            missing (e.g. a nearest-neighbour fill). missing: (N, H, W) bool or [0, 1], 1 = generate.
    Returns:
        disparity float32 (N, H, W) in [0, 1]. Task depth_estimation with a depth mask (masked sampling,
        :func:`jointdit_core.sampler.sample`), prompt " ".
    """
    out = []
    for i in range(0, len(rgb), batch):
        z_rgb = _encode(stack, uint8_to_model(rgb[i : i + batch]))
        z_depth = _encode_disparity(stack, disparity[i : i + batch])
        _, z = _generate(stack, [DEPTH_ESTIMATION_PROMPT] * len(z_rgb), "depth_estimation", steps, seed + i,
                         rgb_latent=z_rgb, depth_latent=z_depth, depth_mask=latent_mask(stack, missing[i : i + batch]))
        out.append(_decode_disparity(stack, z))
    return np.concatenate(out)


def inpaint_rgbd(stack: Stack, rgb: np.ndarray, disparity: np.ndarray, hole: np.ndarray, captions: list[str], steps: int = 20, seed: int = 0, depth_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Joint RGB-D inpainting: image and depth regenerated inside ``hole``, kept outside.

    Args:
        rgb: uint8 (N, H, W, 3); disparity: float (N, H, W) in [0, 1]; hole: (N, H, W) bool or [0, 1],
            1 = regenerate; captions: N prompts. depth_only: keep the whole photo (task depth_estimation)
            and regenerate only the depth inside the hole.
    Returns:
        (rgb uint8 (N, H, W, 3), disparity float32 (N, H, W) in [0, 1]).
    """
    z_rgb = _encode(stack, uint8_to_model(rgb))
    z_depth = _encode_disparity(stack, disparity)
    mask = latent_mask(stack, hole)
    task, rgb_mask = ("depth_estimation", None) if depth_only else ("joint_generation", mask)
    z_rgb, z_depth = _generate(stack, captions, task, steps, seed, rgb_latent=z_rgb, depth_latent=z_depth, rgb_mask=rgb_mask, depth_mask=mask)
    return model_to_uint8(_decode(stack, z_rgb)).numpy(), _decode_disparity(stack, z_depth)


def autoencoder_roundtrip_rgb(stack: Stack, rgb: np.ndarray, batch: int = 50) -> np.ndarray:
    """Encode and decode images, uint8 (N, H, W, 3) -> uint8 (N, H, W, 3): the autoencoder's blur and colour drift."""
    return np.concatenate([model_to_uint8(_decode(stack, _encode(stack, uint8_to_model(rgb[i : i + batch])))).numpy() for i in range(0, len(rgb), batch)])


def autoencoder_roundtrip_disparity(stack: Stack, disparity: np.ndarray) -> np.ndarray:
    """Encode and decode disparity maps (N, H, W) in [0, 1]: the autoencoder's share of the depth error."""
    return _decode_disparity(stack, _encode_disparity(stack, disparity))


def load_baseline(model_dir: str | Path = DEFAULT_MODEL_DIR) -> np.ndarray:
    """The mean normalised training disparity map (H, W) float32 (the trivial baseline)."""
    from safetensors.numpy import load_file

    manifest = read_manifest(model_dir)
    return load_file(str(Path(model_dir) / manifest["baseline"]))["mean_disparity"]


def scenes_of(split: str, start: int, count: int, size: int = 64):
    """Scenes ``split_indices(split)[start:start+count]`` (rgbd_world.world.scenes.Scene objects), with a progress
    bar from 50 scenes on. Raises ValueError for a range outside the split."""
    from tqdm.auto import tqdm

    from .world.scenes import scene, split_indices

    indices = split_indices(split)[start : start + count]
    if len(indices) < count:
        raise ValueError(f"the {split} split has {len(split_indices(split))} scenes; start={start} count={count} is outside it")
    return [scene(i, size=size) for i in tqdm(indices, desc=f"rendering {split} scenes", disable=count < 50)]


def held_out_scenes(count: int, start: int = 0, size: int = 64):
    """Held-out scenes ``split_indices("test")[start:start+count]`` (see :func:`scenes_of`)."""
    return scenes_of("test", start, count, size)
