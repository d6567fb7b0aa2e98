"""JointSampler: the JointDiT Euler loop driven through ComfyUI's own sampling machinery.

The loop is :func:`jointdit_core.sampler.sample` (each branch on its own sigma schedule). Every model
evaluation goes through ``comfy.samplers.CFGGuider`` with a (2P,) vector of per-row sigmas, so
ComfyUI does what it does for KSampler: registers the MODEL's wrappers and hooks, loads the model and
its additional models (the JointDiT addons, ControlNets) with ``load_models_gpu``, batches cond and
uncond with ``calc_cond_batch``, applies CFG and post-CFG functions, and cleans up.

The batch handed to the model is ``[rgb_0..rgb_{P-1}, depth_0..depth_{P-1}]``; the patched model
(:mod:`.model_patch`) reads the layout of each cond/uncond chunk from ``transformer_options``.
ComfyUI returns the denoised estimate ``x - sigma * v`` per row; the velocity is recovered as
``(x - denoised) / sigma``. A row at sigma 0 is a held condition (its Euler step is 0), so its
velocity is not needed and is set to 0.
"""

from __future__ import annotations

import comfy.model_management
import comfy.samplers
import latent_preview
import torch
from comfy_api.latest import io

from jointdit_core.sampler import TASKS, BranchLevels, branch_schedules, sample, seeded_noise, task_levels
from jointdit_core.schedules import custom_schedule, flux_shifted_schedule, linear_schedule
from .model_patch import RUN_KEY, JointRun, jointdit_info

TASK_NAMES = list(TASKS) + ["custom"]
SCHEDULES = ["flux_shifted", "linear"]
LATENT_CHANNELS = 16


class JointEulerSampler(comfy.samplers.Sampler):
    """A ``comfy.samplers.Sampler`` whose ``sample`` runs ``body(velocity, noise, callback)``.

    ``velocity(x (B, C, h, w), sigma (B,)) -> (B, C, h, w)``: the (CFG-combined) velocity of every row
    through the guider ``model_wrap``; checks ComfyUI's interrupt flag before each evaluation.
    """

    def __init__(self, body):
        self.body = body

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            comfy.model_management.throw_exception_if_processing_interrupted()
            denoised = model_wrap(x, sigma, **extra_args)
            s = sigma.to(x).view(-1, *([1] * (x.ndim - 1)))
            return torch.where(s > 0, (x - denoised) / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(x))

        return self.body(velocity, noise, callback)


def _cond_batch(conditioning) -> int:
    return max(int(c[0].shape[0]) for c in conditioning)


def sample_joint(
    model,
    positive,
    rgb_sigmas,
    depth_sigmas,
    noise_rgb: torch.Tensor,
    noise_depth: torch.Tensor,
    clean_rgb: torch.Tensor | None = None,
    clean_depth: torch.Tensor | None = None,
    negative=None,
    cfg: float = 1.0,
    asw_strength: float = 1.0,
    seed: int = 0,
    callback=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample P rgb/depth pairs with a MODEL patched by LoadJointDiT.

    Args:
        model: ComfyUI MODEL from LoadJointDiT.
        positive / negative: ComfyUI CONDITIONING (batch 1 or P); negative only needed when cfg != 1.
        rgb_sigmas, depth_sigmas: per-branch schedules (lists of equal length, non-increasing, in [0, 1]);
            a constant list holds that branch (see :func:`jointdit_core.sampler.sample`).
        noise_rgb, noise_depth: (P, 16, h, w) Gaussian noise (float32).
        clean_rgb, clean_depth: (P, 16, h, w) ComfyUI LATENT samples (VAE space, as VAEEncode gives them),
            needed by a branch that starts below sigma 1 or is held.
        cfg: classifier-free guidance scale (1 = off, official).
        asw_strength: adaptive scheduling weights, 1 official, 0 off.
        callback: ``callback(step, x0, x, total_steps)`` as from ``latent_preview.prepare_callback``; it gets
            the rgb rows, or the depth rows when the rgb branch is held.
    Returns:
        (rgb, depth) latents (P, 16, h, w) float32 in VAE space, on ComfyUI's intermediate device.
    Raises:
        ValueError: cfg != 1 without a negative, conditioning batch not 1 or P, or what the core sampler raises.
    """
    pairs = noise_rgb.shape[0]
    if jointdit_info(model) is None:
        raise ValueError("JointSampler needs a MODEL from LoadJointDiT")
    if abs(cfg - 1.0) > 1e-6 and negative is None:
        raise ValueError("cfg != 1 needs a negative conditioning (e.g. an empty prompt); connect 'negative' or set cfg to 1")
    for name, cond in (("positive", positive), ("negative", negative)):
        if cond is not None and _cond_batch(cond) not in (1, pairs):
            raise ValueError(f"{name} conditioning has batch {_cond_batch(cond)}; it must be 1 or the number of pairs ({pairs})")
    patched = model.clone()
    patched.model_options["transformer_options"][RUN_KEY] = JointRun(pairs, float(asw_strength))
    guider = comfy.samplers.CFGGuider(patched)
    guider.inner_set_conds({"positive": positive} if negative is None else {"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    latent_in = model.model.process_latent_in
    clean_rgb = None if clean_rgb is None else latent_in(clean_rgb.float())
    clean_depth = None if clean_depth is None else latent_in(clean_depth.float())
    preview_depth = len(set(float(s) for s in rgb_sigmas)) == 1

    def body(velocity, noise, sampler_callback):
        device = noise.device

        def velocity_fn(x_rgb, x_depth, s_rgb, s_depth):
            v = velocity(torch.cat([x_rgb, x_depth]), torch.cat([s_rgb, s_depth]))
            return v[:pairs], v[pairs:]

        def step_callback(step):
            if sampler_callback is None:
                return
            x, v, s = (step.x_depth, step.v_depth, step.sigma_depth) if preview_depth else (step.x_rgb, step.v_rgb, step.sigma_rgb)
            sampler_callback(step.step, x - s * v, x, step.total)

        x_rgb, x_depth = sample(
            velocity_fn,
            rgb_sigmas,
            depth_sigmas,
            noise[:pairs],
            noise[pairs:],
            None if clean_rgb is None else clean_rgb.to(device),
            None if clean_depth is None else clean_depth.to(device),
            callback=step_callback,
        )
        return torch.cat([x_rgb, x_depth])

    noise = torch.cat([noise_rgb, noise_depth]).float()
    main_sigmas = torch.tensor(depth_sigmas if preview_depth else rgb_sigmas, dtype=torch.float32)
    out = guider.sample(noise, torch.zeros_like(noise), JointEulerSampler(body), main_sigmas, callback=callback, disable_pbar=True, seed=seed)
    out = out.to(comfy.model_management.intermediate_device())
    return out[:pairs], out[pairs:]


def _latent(latent: dict | None, name: str) -> torch.Tensor | None:
    if latent is None:
        return None
    z = latent["samples"]
    if z.ndim != 4 or z.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"the {name} LATENT has shape {tuple(z.shape)}; JointDiT needs FLUX latents (B, 16, H/8, W/8) from VAEEncode with ae.safetensors")
    if z.shape[-2] % 2 or z.shape[-1] % 2:
        raise ValueError(
            f"the {name} is {z.shape[-1] * 8}x{z.shape[-2] * 8} pixels; FLUX needs multiples of 16: resize or crop it "
            "first (e.g. ImageScale to a multiple of 16)"
        )
    return z


def _match_batches(image: torch.Tensor | None, depth: torch.Tensor | None):
    """Same size required; a batch of 1 is repeated to the other's batch, other differences are errors."""
    if image is None or depth is None:
        return image, depth
    if image.shape[-2:] != depth.shape[-2:]:
        raise ValueError(
            f"the image is {image.shape[-1] * 8}x{image.shape[-2] * 8} but the depth map {depth.shape[-1] * 8}x{depth.shape[-2] * 8}; "
            "resize the depth map to the image size before EncodeDepth"
        )
    if image.shape[0] != depth.shape[0]:
        if image.shape[0] == 1:
            image = image.repeat(depth.shape[0], 1, 1, 1)
        elif depth.shape[0] == 1:
            depth = depth.repeat(image.shape[0], 1, 1, 1)
        else:
            raise ValueError(f"image batch {image.shape[0]} and depth batch {depth.shape[0]} differ; give equal batches (or one of 1)")
    return image, depth


def plan_schedules(steps: int, schedule: str, tokens: int, rgb: BranchLevels, depth: BranchLevels, rgb_sigmas=None, depth_sigmas=None):
    """Per-branch sigma lists: the base schedule mapped onto each branch's levels, or the given SIGMAS.

    A SIGMAS input replaces that branch's schedule; the other branch then uses as many steps.

    Raises:
        ValueError: unknown schedule, invalid SIGMAS, or two SIGMAS of different lengths.
    """
    given_rgb = None if rgb_sigmas is None else custom_schedule(torch.as_tensor(rgb_sigmas).flatten().tolist())
    given_depth = None if depth_sigmas is None else custom_schedule(torch.as_tensor(depth_sigmas).flatten().tolist())
    lengths = {len(s) for s in (given_rgb, given_depth) if s is not None}
    if len(lengths) > 1:
        raise ValueError(f"the rgb and depth SIGMAS have different lengths {sorted(lengths)}; give the same number of steps")
    if lengths:
        steps = lengths.pop() - 1
    if schedule == "flux_shifted":
        base = flux_shifted_schedule(steps, tokens)
    elif schedule == "linear":
        base = linear_schedule(steps)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    rgb_s, depth_s = branch_schedules(base, rgb, depth)
    return given_rgb or rgb_s, given_depth or depth_s


class JointSampler(io.ComfyNode):
    """Sample rgb/depth pairs with JointDiT: joint generation, depth estimation, depth-to-image or custom levels."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointSampler",
            display_name="JointDiT Sampler",
            category="JointDiT",
            description=(
                "Euler sampling of an rgb and a depth branch, each with its own noise level. "
                "joint_generation: both from noise; depth_estimation: image held clean, depth generated; "
                "depth_to_image: depth held clean, image generated; custom: start/end level per branch."
            ),
            inputs=[
                io.Model.Input("model", tooltip="MODEL from LoadJointDiT."),
                io.Conditioning.Input("positive", tooltip="Prompt (official depth estimation uses ' '). Guidance comes from FluxGuidance (default 3.5)."),
                io.Combo.Input("task", options=TASK_NAMES, default="joint_generation"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Int.Input("steps", default=20, min=1, max=1000, tooltip="Euler steps (official 20)."),
                io.Combo.Input("schedule", options=SCHEDULES, default="flux_shifted", tooltip="flux_shifted: the official FLUX.1-dev schedule (shift by token count)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance; 1 = off (official). >1 needs 'negative'."),
                io.Float.Input("asw_strength", default=1.0, min=0.0, max=4.0, step=0.05, tooltip="Adaptive scheduling weights: 1 official, 0 off (constant 0.5)."),
                io.Int.Input("width", default=512, min=16, max=8192, step=16, tooltip="joint_generation without latents: image width (multiple of 16)."),
                io.Int.Input("height", default=512, min=16, max=8192, step=16, tooltip="joint_generation without latents: image height (multiple of 16)."),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="joint_generation without latents: number of pairs."),
                io.Float.Input("rgb_start", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="custom: rgb branch start level (1 = noise, 0 = clean)."),
                io.Float.Input("rgb_end", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="custom: rgb branch end level; start == end holds the branch."),
                io.Float.Input("depth_start", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="custom: depth branch start level."),
                io.Float.Input("depth_end", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="custom: depth branch end level."),
                io.Conditioning.Input("negative", optional=True, tooltip="Only used when cfg > 1."),
                io.Latent.Input("image", optional=True, tooltip="Image LATENT (VAEEncode): needed by depth_estimation and by a custom rgb start < 1."),
                io.Latent.Input("depth", optional=True, tooltip="Depth LATENT (EncodeDepth): needed by depth_to_image and by a custom depth start < 1."),
                io.Sigmas.Input("rgb_sigmas", optional=True, tooltip="Overrides the rgb branch schedule (values in [0, 1], non-increasing)."),
                io.Sigmas.Input("depth_sigmas", optional=True, tooltip="Overrides the depth branch schedule."),
            ],
            outputs=[io.Latent.Output("rgb", display_name="rgb"), io.Latent.Output("depth_latent", display_name="depth")],
        )

    @classmethod
    def execute(
        cls, model, positive, task, seed, steps, schedule, cfg, asw_strength, width, height, batch_size,
        rgb_start, rgb_end, depth_start, depth_end, negative=None, image=None, depth=None, rgb_sigmas=None, depth_sigmas=None,
    ) -> io.NodeOutput:
        rgb_levels, depth_levels = (
            (BranchLevels(rgb_start, rgb_end), BranchLevels(depth_start, depth_end)) if task == "custom" else task_levels(task)
        )
        image_z, depth_z = _match_batches(_latent(image, "image"), _latent(depth, "depth map"))
        reference = image_z if image_z is not None else depth_z
        if reference is None:
            if width % 16 or height % 16:
                raise ValueError(f"width and height must be multiples of 16, got {width}x{height}")
            shape = (batch_size, LATENT_CHANNELS, height // 8, width // 8)
        else:
            shape = tuple(reference.shape)
        rgb_s, depth_s = plan_schedules(steps, schedule, (shape[2] // 2) * (shape[3] // 2), rgb_levels, depth_levels, rgb_sigmas, depth_sigmas)
        for name, sig, z, source in (("rgb", rgb_s, image_z, "an image LATENT (VAEEncode)"), ("depth", depth_s, depth_z, "a depth LATENT (EncodeDepth)")):
            if (sig[0] < 1.0 or len(set(sig)) == 1) and z is None:
                raise ValueError(f"task {task!r} starts the {name} branch at sigma {sig[0]:g} or holds it: connect {source}")
        noise_rgb, noise_depth = seeded_noise(seed, shape)
        rgb, depth_out = sample_joint(
            model, positive, rgb_s, depth_s, noise_rgb, noise_depth, image_z, depth_z,
            negative=negative, cfg=cfg, asw_strength=asw_strength, seed=seed,
            callback=latent_preview.prepare_callback(model, len(rgb_s) - 1),
        )
        return io.NodeOutput({"samples": rgb}, {"samples": depth_out})
