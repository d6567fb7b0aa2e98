"""Preview samples during training: joint generation of the cached sample prompts, saved as PNGs.

The sampling plan is the core's :func:`jointdit_core.sampler.plan_sampling` (task "joint_generation",
the official flux-shifted schedule), as for the nodes and the pipeline; the sampler is the core's Euler
``sample``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from jointdit_core.files import save_bytes_atomic

logger = logging.getLogger(__name__)
SAMPLES_DIR = "samples"  # <output_dir>/samples: the preview PNGs


@dataclass
class Previews:
    """What periodic samples need: the prompts, their cached condition and the autoencoder."""

    prompts: list[str]
    cond: dict  # "t5" (N, T, ctx), "clip_pooled" (N, vec)
    ae: torch.nn.Module | None  # loaded on the main process only
    dtype: torch.dtype  # compute dtype of the sampling forward


@torch.no_grad()
def joint_samples(model, ae, prompts: list[str], cond: dict, cfg, depth_transform: str, device, dtype) -> list:
    """Joint generation of each cached sample prompt; returns PIL images (rgb | depth side by side).

    Uses the official sampler settings (flux-shifted schedule, Euler, guidance ``sample_guidance``) at
    ``sample_resolution`` with ``sample_steps`` steps; noise from ``sample_seed`` + prompt index (fixed
    across training steps). ``model`` is a :class:`~jointdit_core.model.JointDiT`, ``ae`` its autoencoder.
    """
    import numpy as np
    from PIL import Image

    from jointdit_core.depth import model_output_to_disparity
    from jointdit_core.images import model_to_uint8, unit_to_uint8
    from jointdit_core.latents import image_ids, pack, unpack
    from jointdit_core.sampler import plan_sampling, sample, seeded_noise

    res = cfg.sample_resolution or cfg.resolution
    h = w = res // ae.config.downscale
    plan = plan_sampling("joint_generation", steps=cfg.sample_steps, schedule="flux_shifted", token_count=(h // 2) * (w // 2))
    images = []
    for i, _ in enumerate(prompts):
        txt = cond["t5"][i : i + 1].to(device, dtype)
        y = cond["clip_pooled"][i : i + 1].to(device, dtype)
        noise_rgb, noise_depth = seeded_noise(cfg.sample_seed + i, (1, ae.config.z_channels, h, w), device=device)
        ids = image_ids(1, h, w, device=device)
        guidance = torch.full((1,), float(cfg.sample_guidance), device=device)

        def velocity(x_rgb, x_depth, t_rgb, t_depth):
            v = model.velocity(x_rgb.to(dtype), x_depth.to(dtype), t_rgb, t_depth, ids, txt, y, guidance, asw_strength=cfg.asw_strength)
            return v[0].float(), v[1].float()

        x_rgb, x_depth = sample(velocity, plan.rgb_sigmas, plan.depth_sigmas, pack(noise_rgb), pack(noise_depth))
        decoded = ae.decode(torch.cat([unpack(x_rgb, h, w), unpack(x_depth, h, w)]).to(next(ae.parameters()).dtype)).float()
        rgb = model_to_uint8(decoded[0]).numpy()
        disp = model_output_to_disparity(decoded[1:], depth_transform)[0]
        gray = unit_to_uint8(disp).numpy()
        images.append(Image.fromarray(np.concatenate([rgb, np.repeat(gray[..., None], 3, axis=2)], axis=1)))
    return images


def save_previews(images: list, out_dir: Path, step: int, tensorboard=None) -> None:
    """Write ``<out_dir>/samples/step<step>_<i>.png`` (atomically) and add them to TensorBoard when given."""
    for i, im in enumerate(images):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        save_bytes_atomic(buf.getvalue(), Path(out_dir) / SAMPLES_DIR / f"step{step:06d}_{i}.png")
        if tensorboard is not None:
            import numpy as np

            tensorboard.writer.add_image(f"sample_{i}", np.asarray(im), step, dataformats="HWC")
