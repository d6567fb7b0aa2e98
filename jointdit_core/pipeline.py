"""One call for the three JointDiT tasks (and any per-branch start/end levels) in latent space."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .latents import check_latent_size, image_ids, pack, unpack
from .model import JointDiT
from .sampler import BranchLevels, SamplerStep, check_mask, plan_sampling, sample, seeded_noise
from .step_cache import JointStepCache, denoising_branches, pair_chunk
from .windows import WindowSettings, windowed_velocity

COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@torch.no_grad()
def generate(
    model: JointDiT,
    txt: Tensor,
    y: Tensor,
    task: str = "joint_generation",
    *,
    rgb_latent: Tensor | None = None,
    depth_latent: Tensor | None = None,
    latent_size: tuple[int, int] | None = None,
    seed: int = 0,
    steps: int = 20,
    schedule: str = "flux_shifted",
    guidance: float = 3.5,
    asw_strength: float = 1.0,
    cfg: float = 1.0,
    negative: tuple[Tensor, Tensor] | None = None,
    levels: tuple[BranchLevels, BranchLevels] | None = None,
    rgb_mask: Tensor | None = None,
    depth_mask: Tensor | None = None,
    callback: Callable[[SamplerStep], None] | None = None,
    progress: bool = True,
    windows: WindowSettings | None = None,
    cache: JointStepCache | None = None,
    zero_depth_noise: bool = False,
) -> tuple[Tensor, Tensor]:
    """Sample P rgb/depth latent pairs.

    Args:
        model: a :class:`JointDiT` (eval mode); compute runs on its device in the dtype of its first float32 /
            bfloat16 / float16 parameter (weights stored in float8 are cast per layer).
        txt: (P, T, context) T5 embeddings (or (1, T, context), broadcast); y: (P, vec) or (1, vec).
        task: "joint_generation", "depth_estimation" (needs ``rgb_latent``) or "depth_to_image"
            (needs ``depth_latent``); ignored when ``levels`` is given.
        rgb_latent, depth_latent: (P, 16, H/8, W/8) autoencoder latents (scaled), for the branches that
            are held or start below sigma 1.
        latent_size: (H/8, W/8) when no latent is given (joint generation); must be even.
        seed: the noise of both branches comes from this seed (CPU generator), in every task and for
            any step count.
        steps: Euler steps (official: 20); schedule: "flux_shifted" (official FLUX.1-dev, default) or
            "linear" (see :func:`~jointdit_core.sampler.plan_sampling`); "shifted" is an old name of
            "flux_shifted".
        guidance: FLUX.1-dev distilled guidance (official 3.5).
        asw_strength: adaptive scheduling weights, 1.0 official, 0.0 off.
        cfg: classifier-free guidance scale, 1.0 = off (official: FLUX.1-dev's distilled ``guidance`` does
            that job). Above 1 each step runs the model twice, with the prompt and with ``negative``, and
            uses ``v_neg + cfg * (v_pos - v_neg)`` for both branches (as ComfyUI's CFG does); for a base
            that is not guidance-distilled, such as the RGB-D world's small one.
        negative: ``(txt, y)`` of the negative prompt (e.g. the empty prompt), shaped like ``txt``/``y``;
            needed when ``cfg`` is not 1.
        levels: custom (rgb, depth) :class:`BranchLevels`, e.g. image-to-image with a partly noised rgb row.
        rgb_mask, depth_mask: (P or 1, 1 or 16, H/8, W/8) float masks in latent space, 1 = regenerate,
            0 = keep that branch's given latent (inpainting, outpainting, depth completion: e.g. task
            "depth_estimation" with ``depth_latent`` and a ``depth_mask`` of 1 where the depth is missing).
            A masked branch needs its latent; its kept part is returned exactly (see
            :func:`~jointdit_core.sampler.sample` for the blending). Resize pixel masks to the latent size first.
        callback: per-step :class:`SamplerStep` (after the update; its latents are packed tokens without
            ``windows``, (P, 16, H/8, W/8) with them); progress: show a tqdm bar.
        windows: window sampling (:mod:`~jointdit_core.windows`) of a latent larger than the model's
            window, e.g. a panorama (``wrap=True`` for 360 degrees); the schedule is shifted by one
            window's token count. None: the whole latent at once.
        cache: a :class:`~jointdit_core.step_cache.JointStepCache` (the joint-aware step cache); it is
            started for this run's denoising branches (held branches never decide), one chunk per
            condition (CFG's two passes keep separate residuals). Afterwards its ``computed`` /
            ``reused`` count the model calls. None: every step is computed. Not with ``windows``.
        zero_depth_noise: start the depth branch from zeros instead of Gaussian noise (at its start sigma):
            with one step of depth estimation a deterministic predictor, as E2E-FT's single step
            (Garcia et al., "Fine-Tuning Image-Conditional Diffusion Models is Easier than You Think", WACV 2025).
    Returns:
        (rgb latents, depth latents), each (P, 16, H/8, W/8) float32 on the model's device.
    Raises:
        ValueError: missing latents for the task, mismatched latent sizes or batches, odd latent sizes,
            ``cfg`` not 1 without ``negative``, ``cache`` together with ``windows``,
            a mask that does not fit its latent or comes without it or on a held branch, an unknown task or schedule (see :func:`~jointdit_core.sampler.plan_sampling`).
    """
    given = [z for z in (rgb_latent, depth_latent) if z is not None]
    if len(given) == 2 and given[0].shape != given[1].shape:
        raise ValueError(f"image latent {tuple(given[0].shape)} and depth latent {tuple(given[1].shape)} differ in size or batch")
    if given:
        pairs, channels, height, width = given[0].shape
    elif latent_size is not None:
        pairs, channels, (height, width) = txt.shape[0], model.config.in_channels // 4, latent_size
    else:
        raise ValueError("give latent_size (height/8, width/8) or an image/depth latent")
    check_latent_size(height, width)
    guided = abs(cfg - 1.0) > 1e-6
    if guided and negative is None:
        raise ValueError(f"cfg {cfg} needs a negative prompt: pass negative=(txt, y), e.g. the empty prompt's, or cfg=1.0")
    conditions = [(txt, y)] + ([negative] if guided else [])
    for c_txt, c_y in conditions:
        if c_txt.shape[0] not in (1, pairs) or c_y.shape[0] not in (1, pairs):
            raise ValueError(f"conditioning batch {c_txt.shape[0]}/{c_y.shape[0]} does not match {pairs} pairs")
    param = next(p for p in model.parameters() if p.dtype in COMPUTE_DTYPES)  # weights stored in float8 compute in another dtype
    device, dtype = param.device, param.dtype
    conditions = [(c_txt.to(device, dtype).expand(pairs, -1, -1), c_y.to(device, dtype).expand(pairs, -1)) for c_txt, c_y in conditions]
    schedule = "flux_shifted" if schedule == "shifted" else schedule
    grid = None if windows is None else windows.grid(height, width)
    window_h, window_w = (height, width) if grid is None else grid.size
    plan = plan_sampling(task, steps=steps, schedule=schedule, token_count=(window_h // 2) * (window_w // 2), levels=levels)
    plan.check_latents(rgb_latent is not None, depth_latent is not None)
    layout = pack if grid is None else (lambda z: z)  # windows cut image-layout latents; each window is packed when evaluated
    noise_rgb, noise_depth = (layout(n) for n in seeded_noise(seed, (pairs, channels, height, width), dtype=dtype, device=device))
    if zero_depth_noise:
        noise_depth = torch.zeros_like(noise_depth)
    clean = [None if z is None else layout(z.to(device, dtype)) for z in (rgb_latent, depth_latent)]
    masks = {}
    for name, mask in (("rgb", rgb_mask), ("depth", depth_mask)):
        if mask is not None:
            full = torch.empty((pairs, channels, height, width), device=device, dtype=dtype)
            masks[f"{name}_mask"] = layout(check_mask(mask, full, name).expand_as(full))
    g = torch.full((pairs,), guidance, device=device, dtype=dtype)

    if cache is not None:
        if grid is not None:  # successive calls of one step hold different windows: nothing to compare
            raise ValueError("the step cache does not work with window sampling yet: use one of cache and windows")
        cache.start(denoising_branches(plan.rgb_sigmas, plan.depth_sigmas))

    def one_condition(key, c_txt, c_y, c_g, ids, x_rgb, x_depth, t_rgb, t_depth):
        if cache is None:
            return model.velocity(x_rgb, x_depth, t_rgb, t_depth, ids, c_txt, c_y, c_g, asw_strength=asw_strength)
        compute = lambda: torch.cat(model.velocity(x_rgb, x_depth, t_rgb, t_depth, ids, c_txt, c_y, c_g, asw_strength=asw_strength))  # noqa: E731
        v = cache(compute, torch.cat([x_rgb, x_depth]), torch.cat([t_rgb, t_depth]), [pair_chunk(pairs, key, device)])
        return v[:pairs], v[pairs:]

    def velocity(x_rgb, x_depth, t_rgb, t_depth):
        rows = x_rgb.shape[0] // pairs  # windows per call (window-major rows), 1 without windows
        ids = image_ids(pairs * rows, window_h, window_w, device=device, dtype=dtype)
        tiled = [(c_txt, c_y, g) if rows == 1 else (c_txt.repeat(rows, 1, 1), c_y.repeat(rows, 1), g.repeat(rows)) for c_txt, c_y in conditions]
        (v_rgb, v_depth), *uncond = [
            one_condition(i, c_txt, c_y, c_g, ids, x_rgb, x_depth, t_rgb, t_depth) for i, (c_txt, c_y, c_g) in enumerate(tiled)
        ]
        if not uncond:
            return v_rgb, v_depth
        u_rgb, u_depth = uncond[0]
        return u_rgb + cfg * (v_rgb - u_rgb), u_depth + cfg * (v_depth - u_depth)

    def window_velocity(x_rgb, x_depth, t_rgb, t_depth):
        v_rgb, v_depth = velocity(pack(x_rgb), pack(x_depth), t_rgb, t_depth)
        return unpack(v_rgb, window_h, window_w), unpack(v_depth, window_h, window_w)

    sampled = velocity if grid is None else windowed_velocity(window_velocity, grid, windows.per_batch)
    bar = tqdm(total=plan.steps, desc=f"JointDiT {plan.task}", disable=not progress)

    def on_step(step: SamplerStep):
        bar.update(1)
        if callback is not None:
            callback(step)

    try:
        x_rgb, x_depth = sample(sampled, plan.rgb_sigmas, plan.depth_sigmas, noise_rgb, noise_depth, *clean, callback=on_step, **masks)
    finally:
        bar.close()
    if grid is None:
        x_rgb, x_depth = unpack(x_rgb, height, width), unpack(x_depth, height, width)
    return x_rgb.float(), x_depth.float()
