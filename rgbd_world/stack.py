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


@dataclass
class Stack:
    """A loaded model: ``model`` (JointDiT, eval, float32), ``ae``, ``text`` (trainer TextEncoders),
    ``asw_strength`` and ``guidance`` to sample with, ``depth_transform`` of the addons, ``variant``,
    ``manifest`` (model.json)."""

    model: torch.nn.Module
    ae: torch.nn.Module
    text: object
    asw_strength: float
    guidance: float
    depth_transform: str
    variant: str
    manifest: dict

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


def load_stack(model_dir: str | Path = DEFAULT_MODEL_DIR, variant: str | None = None) -> Stack:
    """Load base + addons (``variant``, default the manifest's ``default_addon``), autoencoder, text encoders.

    Raises:
        FileNotFoundError: missing model folder or files; ValueError: unknown variant.
    """
    from jointdit_core.checkpoint import load_autoencoder, load_jointdit

    from .text import load_text_encoders

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    variant = variant or manifest["default_addon"]
    if variant not in manifest["addons"]:
        raise ValueError(f"unknown addon variant {variant!r}; this model has {sorted(manifest['addons'])}")
    entry = manifest["addons"][variant]
    model, addon = load_jointdit(model_dir / manifest["flux"], model_dir / entry["file"])
    ae = load_autoencoder(model_dir / manifest["ae"])
    text = load_text_encoders(model_dir / manifest["text"], t5_max_length=manifest["t5_max_length"])
    return Stack(model, ae, text, float(entry["asw_strength"]), float(manifest["guidance"]), addon.depth_transform, variant, manifest)


@torch.no_grad()
def _encode(stack: Stack, x: torch.Tensor) -> torch.Tensor:
    return stack.ae.encode(x)


@torch.no_grad()
def _decode(stack: Stack, z: torch.Tensor) -> torch.Tensor:
    return stack.ae.decode(z)


def _generate(stack: Stack, prompts: list[str], task: str, steps: int, seed: int, **latents):
    from jointdit_core.pipeline import generate

    txt, y = stack.text.encode(prompts)
    return generate(
        stack.model, txt, y, task, latent_size=stack.latent_size, seed=seed, steps=steps,
        guidance=stack.guidance, asw_strength=stack.asw_strength, progress=False, **latents,
    )


def depth_estimation(stack: Stack, rgb: np.ndarray, steps: int = 20, seed: int = 0, batch: int = 50) -> np.ndarray:
    """Depth from images: uint8 (N, H, W, 3) -> disparity float32 (N, H, W) in [0, 1], near = 1.

    The rgb branch holds the encoded image at t = 0, the depth branch is denoised from noise
    (``seed`` + batch offset) over ``steps`` Euler steps with the official prompt " ".
    """
    from jointdit_core.depth import model_output_to_disparity

    out = []
    for i in range(0, len(rgb), batch):
        chunk = rgb[i : i + batch]
        z = _encode(stack, uint8_to_model(chunk))
        _, z_depth = _generate(stack, [DEPTH_ESTIMATION_PROMPT] * len(chunk), "depth_estimation", steps, seed + i, rgb_latent=z)
        out.append(model_output_to_disparity(_decode(stack, z_depth), stack.depth_transform).numpy())
    return np.concatenate(out)


def joint_generation(stack: Stack, captions: list[str], steps: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Text -> (rgb uint8 (N, H, W, 3), disparity float32 (N, H, W) in [0, 1]); both branches from noise."""
    from jointdit_core.depth import model_output_to_disparity

    z_rgb, z_depth = _generate(stack, captions, "joint_generation", steps, seed)
    decoded = _decode(stack, torch.cat([z_rgb, z_depth]))
    return model_to_uint8(decoded[: len(captions)]).numpy(), model_output_to_disparity(decoded[len(captions) :], stack.depth_transform).numpy()


def depth_to_image(stack: Stack, disparity: np.ndarray, captions: list[str], steps: int = 20, seed: int = 0) -> np.ndarray:
    """Depth (+ caption) -> image: disparity (N, H, W) in [0, 1] (near = 1) -> uint8 (N, H, W, 3).

    The depth branch holds the encoded depth map at t = 0; the rgb branch is denoised from noise.
    Raises ValueError (from the depth conventions) for disparity outside [0, 1].
    """
    from jointdit_core.depth import disparity_to_model_input

    z = _encode(stack, disparity_to_model_input(torch.from_numpy(np.asarray(disparity, np.float32)), stack.depth_transform))
    z_rgb, _ = _generate(stack, captions, "depth_to_image", steps, seed, depth_latent=z)
    return model_to_uint8(_decode(stack, z_rgb)).numpy()


def autoencoder_roundtrip_rgb(stack: Stack, rgb: np.ndarray, batch: int = 50) -> np.ndarray:
    """Encode and decode images, uint8 (N, H, W, 3) -> uint8 (N, H, W, 3): the autoencoder's blur and colour drift."""
    return np.concatenate([model_to_uint8(_decode(stack, _encode(stack, uint8_to_model(rgb[i : i + batch])))).numpy() for i in range(0, len(rgb), batch)])


def autoencoder_roundtrip_disparity(stack: Stack, disparity: np.ndarray) -> np.ndarray:
    """Encode and decode disparity maps (N, H, W) in [0, 1]: the autoencoder's share of the depth error."""
    from jointdit_core.depth import disparity_to_model_input, model_output_to_disparity

    x = disparity_to_model_input(torch.from_numpy(np.asarray(disparity, np.float32)), stack.depth_transform)
    return model_output_to_disparity(_decode(stack, _encode(stack, x)), stack.depth_transform).numpy()


def load_baseline(model_dir: str | Path = DEFAULT_MODEL_DIR) -> np.ndarray:
    """The mean normalised training disparity map (H, W) float32 (the trivial baseline)."""
    from safetensors.numpy import load_file

    manifest = read_manifest(model_dir)
    return load_file(str(Path(model_dir) / manifest["baseline"]))["mean_disparity"]


def held_out_scenes(count: int, start: int = 0, size: int = 64):
    """Held-out scenes ``split_indices("test")[start:start+count]`` (rgbd_world.scenes.Scene objects)."""
    from .scenes import scene, split_indices

    from tqdm.auto import tqdm

    indices = split_indices("test")[start : start + count]
    if len(indices) < count:
        raise ValueError(f"the test split has {len(split_indices('test'))} scenes; start={start} count={count} is outside it")
    return [scene(i, size=size) for i in tqdm(indices, desc="rendering held-out scenes", disable=count < 50)]
