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

import logging

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from jointdit_core.sampler import SCHEDULES, TASKS, BranchLevels, keep_unmasked, plan_sampling, sample, seeded_noise
from jointdit_core.step_cache import denoising_branches
from jointdit_core.windows import WindowSettings, windowed_velocity, windows_per_call
from .model_patch import RUN_KEY, JointRun, jointdit_info
from .node_options import advanced, schema_options

TASK_NAMES = list(TASKS) + ["custom"]
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
    rgb_mask: torch.Tensor | None = None,
    depth_mask: torch.Tensor | None = None,
    windows: WindowSettings | None = None,
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
        rgb_mask, depth_mask: (P or 1, 1 or 16, h, w) masks in latent space (1 = regenerate, 0 = keep that
            branch's clean latent), see :func:`jointdit_core.sampler.sample`; the kept part of the output is
            exactly the given LATENT (blended again in VAE space after ComfyUI's ``process_latent_out``).
        windows: window sampling (:mod:`jointdit_core.windows`): every step evaluates the model window by
            window through the same guider (so LoRAs, fp8, ControlNets ... apply to each window; a ControlNet
            hint is scaled to each window, not cut) and blends the velocities. None: the whole latent at once.
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
    grid = None if windows is None else windows.grid(noise_rgb.shape[-2], noise_rgb.shape[-1])
    per_call = 1 if grid is None else windows_per_call(len(grid.windows), windows.per_batch)
    patched = model.clone()
    patched.model_options["transformer_options"][RUN_KEY] = JointRun(
        pairs * per_call, float(asw_strength), denoising_branches(rgb_sigmas, depth_sigmas), windowed=grid is not None
    )
    guider = comfy.samplers.CFGGuider(patched)
    guider.inner_set_conds({"positive": positive} if negative is None else {"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    latent_in = model.model.process_latent_in
    given_rgb, given_depth = clean_rgb, clean_depth
    clean_rgb = None if clean_rgb is None else latent_in(clean_rgb.float())
    clean_depth = None if clean_depth is None else latent_in(clean_depth.float())
    preview_depth = len(set(float(s) for s in rgb_sigmas)) == 1

    def body(velocity, noise, sampler_callback):
        device = noise.device

        def joint_velocity(x_rgb, x_depth, s_rgb, s_depth):
            v = velocity(torch.cat([x_rgb, x_depth]), torch.cat([s_rgb, s_depth]))
            return v[: len(x_rgb)], v[len(x_rgb) :]

        velocity_fn = joint_velocity if grid is None else windowed_velocity(joint_velocity, grid, windows.per_batch)

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
            rgb_mask=None if rgb_mask is None else rgb_mask.to(device),
            depth_mask=None if depth_mask is None else depth_mask.to(device),
        )
        return torch.cat([x_rgb, x_depth])

    noise = torch.cat([noise_rgb, noise_depth]).float()
    main_sigmas = torch.tensor(depth_sigmas if preview_depth else rgb_sigmas, dtype=torch.float32)
    out = guider.sample(noise, torch.zeros_like(noise), JointEulerSampler(body), main_sigmas, callback=callback, disable_pbar=True, seed=seed)
    out = out.to(comfy.model_management.intermediate_device())
    rgb, depth = out[:pairs], out[pairs:]
    # process_latent_out(process_latent_in(z)) is z only up to rounding: keep the unmasked part exactly
    if rgb_mask is not None:
        rgb = keep_unmasked(rgb, given_rgb.float().to(rgb), rgb_mask.to(rgb))
    if depth_mask is not None:
        depth = keep_unmasked(depth, given_depth.float().to(depth), depth_mask.to(depth))
    return rgb, depth


def latent_samples(latent: dict | None, name: str) -> torch.Tensor | None:
    """The (B, 16, h, w) samples of the ``name`` LATENT input, or None when it is not connected.

    Raises:
        ValueError: not a 16-channel FLUX latent (a 4-channel SD latent says so), a batch of 0, an image
            smaller than 16x16 or not a multiple of 16 pixels, or NaN / Inf values; the message names the input.
    """
    if latent is None:
        return None
    z = latent["samples"]
    if z.ndim != 4 or z.shape[1] != LATENT_CHANNELS:
        what = (
            "a 4-channel Stable Diffusion latent (EmptyLatentImage, or VAEEncode with an SD VAE)"
            if z.ndim == 4 and z.shape[1] == 4
            else f"of shape {tuple(z.shape)}"
        )
        raise ValueError(
            f"the {name} LATENT is {what}; JointDiT needs FLUX latents with 16 channels (B, 16, H/8, W/8): "
            "for joint generation connect EmptySD3LatentImage (width, height, batch_size), for a photo VAEEncode with ae.safetensors"
        )
    if z.shape[0] == 0:
        raise ValueError(f"the {name} LATENT has a batch of 0 (no images): give it at least one image, e.g. batch_size 1")
    if z.shape[-2] < 2 or z.shape[-1] < 2:
        raise ValueError(f"the {name} is {z.shape[-1] * 8}x{z.shape[-2] * 8} pixels; the smallest size JointDiT works with is 16x16")
    if z.shape[-2] % 2 or z.shape[-1] % 2:
        raise ValueError(
            f"the {name} is {z.shape[-1] * 8}x{z.shape[-2] * 8} pixels; FLUX needs multiples of 16: resize or crop it "
            "first (e.g. ImageScale to a multiple of 16)"
        )
    if not torch.isfinite(z).all():
        raise ValueError(
            f"the {name} LATENT contains NaN or Inf values: check the nodes that made it (a broken image file, a VAE run in "
            "fp16 that overflowed, a math node dividing by 0)"
        )
    return z


def _noise_mask(latent: dict | None, z: torch.Tensor | None, name: str) -> torch.Tensor | None:
    """The ``noise_mask`` of the ``name`` LATENT (SetLatentNoiseMask; 1 = regenerate) resized to ``z``'s latent size.

    Accepted: (H, W), (B, H, W) or (B, 1, H, W) with B 1 or the LATENT's batch, of the image's aspect ratio
    (its pixel size H = 8 h, the latent size, or a photo's original size); it is resized as ComfyUI's KSampler does (``comfy.utils.reshape_mask``:
    bilinear to (h, w), repeated over the 16 channels and the batch).

    Returns:
        (B, 16, h, w) float32 mask in [0, 1], or None when the LATENT has no ``noise_mask``.
    Raises:
        ValueError: a mask of another size, batch or number of dims, or with values outside [0, 1] / NaN.
    """
    mask = None if latent is None else latent.get("noise_mask")
    if mask is None or z is None:
        return None
    mask = torch.as_tensor(mask).float()
    batch, h, w = z.shape[0], z.shape[-2], z.shape[-1]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    same_aspect = mask.ndim == 3 and abs(mask.shape[-2] / mask.shape[-1] - h / w) <= 0.5 / min(h, w)
    if not same_aspect or mask.shape[0] not in (1, batch):
        raise ValueError(
            f"the {name} LATENT's noise_mask has shape {tuple(mask.shape)}; it needs (batch, height, width) with batch 1 or "
            f"{batch} and the image's aspect ratio ({w * 8}x{h * 8}, or any size of that shape): make the mask from the same "
            "image (scale it with the image) before SetLatentNoiseMask"
        )
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise ValueError(f"the {name} LATENT's noise_mask must hold values in [0, 1] (1 = regenerate); it has values outside that range or NaN")
    return comfy.utils.reshape_mask(mask, (batch, LATENT_CHANNELS, h, w)).clamp(0, 1)


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


NEEDS_EMPTY_LATENT = (
    "joint generation takes its size and number of pairs from the LATENT at 'image': connect EmptySD3LatentImage "
    "(width, height, batch_size; a 16-channel empty latent) to JointSampler's 'image' input"
)


def _sigma_list(sigmas) -> list[float] | None:
    return None if sigmas is None else torch.as_tensor(sigmas).flatten().tolist()


def run_joint_sampler(
    model, positive, task: str, seed: int, steps: int, image=None, depth=None, *, negative=None, schedule: str = "flux_shifted",
    cfg: float = 1.0, asw_strength: float = 1.0, levels: tuple[BranchLevels, BranchLevels] | None = None,
    rgb_sigmas=None, depth_sigmas=None, shape: tuple[int, int, int, int] | None = None, windows: WindowSettings | None = None,
) -> io.NodeOutput:
    """What both sampler nodes do: check the LATENT inputs, plan both branches, sample, return (rgb, depth) LATENTs.

    The size and batch come from the image LATENT (else the depth LATENT, else ``shape``, the
    (P, 16, h, w) of an old workflow's width/height/batch_size). ``levels`` are the (rgb, depth) levels
    of task "custom". The plan is :func:`jointdit_core.sampler.plan_sampling`'s, shifted by one window's token
    count with ``windows``.

    Raises:
        ValueError: a LATENT that is not usable (see :func:`latent_samples`), a latent the task needs but that is
            not connected, no latent to take the size from, or what the plan and :func:`sample_joint` raise.
    """
    image_z, depth_z = latent_samples(image, "image"), latent_samples(depth, "depth")
    image_mask, depth_mask = _noise_mask(image, image_z, "image"), _noise_mask(depth, depth_z, "depth")
    image_z, depth_z = _match_batches(image_z, depth_z)
    reference = image_z if image_z is not None else depth_z
    shape = tuple(reference.shape) if reference is not None else shape
    plan_options = dict(
        steps=steps, schedule=schedule, levels=levels if task == "custom" else None,
        rgb_sigmas=_sigma_list(rgb_sigmas), depth_sigmas=_sigma_list(depth_sigmas),
    )
    window_hw = None if shape is None else (shape[2], shape[3]) if windows is None else windows.grid(shape[2], shape[3]).size
    plan = plan_sampling(task, token_count=256 if shape is None else (window_hw[0] // 2) * (window_hw[1] // 2), **plan_options)
    for branch, needs, z, source in (
        ("rgb", plan.needs_rgb_latent, image_z, "an image LATENT (VAEEncode) to 'image'"),
        ("depth", plan.needs_depth_latent, depth_z, "a depth LATENT (EncodeDepth) to 'depth'"),
    ):
        if needs and z is None:
            raise ValueError(f"task {task!r} holds the {branch} branch or starts it below pure noise: connect {source}")
    if shape is None:
        raise ValueError(NEEDS_EMPTY_LATENT)
    for branch, held, mask, name in (("rgb", plan.rgb_held, image_mask, "image"), ("depth", plan.depth_held, depth_mask, "depth")):
        if held and mask is not None:
            raise ValueError(
                f"the {name} LATENT has a noise_mask (SetLatentNoiseMask) but task {task!r} holds the {branch} branch as a clean "
                f"condition, so nothing of it is regenerated: remove the mask, or use a task that generates the {branch} branch "
                "(joint_generation for inpainting both; depth_estimation with a masked depth LATENT for depth completion)"
            )
    noise_rgb, noise_depth = seeded_noise(seed, shape)
    rgb, depth_out = sample_joint(
        model, positive, plan.rgb_sigmas, plan.depth_sigmas, noise_rgb, noise_depth,
        image_z if plan.needs_rgb_latent or image_mask is not None else None,
        depth_z if plan.needs_depth_latent or depth_mask is not None else None,
        negative=negative, cfg=cfg, asw_strength=asw_strength, seed=seed, rgb_mask=image_mask, depth_mask=depth_mask,
        callback=latent_preview.prepare_callback(model, plan.steps), windows=windows,
    )
    return io.NodeOutput({"samples": rgb}, {"samples": depth_out})


# The inputs JointSampler had before the Advanced variant (pack 0.1): an old API prompt may still carry them.
OLD_WIDGETS = ("schedule", "cfg", "asw_strength", "width", "height", "batch_size", "rgb_start", "rgb_end", "depth_start", "depth_end")
OLD_LINKS = ("negative", "rgb_sigmas", "depth_sigmas")
MIGRATION = (
    "JointSampler now has model, positive, task, seed, steps, image and depth; size and batch come from an "
    "EmptySD3LatentImage at 'image', and cfg/negative, schedule, asw_strength, custom levels and SIGMAS are on "
    "'JointDiT Sampler (Advanced)' (class_type JointSamplerAdvanced): see the README, 'Migrating workflows'"
)


def task_message(task) -> str | None:
    """None for a task JointSampler runs; else what to do (task "custom" moved to JointDiT Sampler (Advanced))."""
    if task in TASKS:
        return None
    if task == "custom":
        return (
            "task 'custom' is on 'JointDiT Sampler (Advanced)' now (class_type JointSamplerAdvanced): change the node's "
            "class_type and give rgb_start, rgb_end, depth_start, depth_end (1 = noise, 0 = clean; start == end holds a "
            "branch), schedule, cfg and asw_strength there; drop width/height/batch_size and connect an EmptySD3LatentImage "
            "to 'image' for the size (README: 'Migrating workflows')"
        )
    return f"JointSampler has no task {task!r}: choose one of {', '.join(TASKS)} (custom levels: JointDiT Sampler (Advanced))"


def old_inputs(hidden, linked: dict) -> dict:
    """Keyword arguments for :func:`run_joint_sampler` from an old JointSampler prompt's extra inputs.

    ``linked``: the undeclared linked inputs ComfyUI passes on (negative, SIGMAS); the undeclared widget
    values are read from the node's own entry in the API prompt (``hidden.prompt[hidden.unique_id]``).
    Task-level custom levels were only read by task "custom", which the simple node does not offer.

    Raises:
        ValueError: an input no JointSampler ever had, or a width/height that is not a multiple of 16.
    """
    unknown = sorted(set(linked) - set(OLD_LINKS))
    if unknown:
        raise ValueError(f"JointSampler has no input {', '.join(unknown)}. {MIGRATION}")
    raw = {}
    if hidden is not None and isinstance(getattr(hidden, "prompt", None), dict):
        raw = hidden.prompt.get(str(hidden.unique_id), {}).get("inputs", {})
    values = {k: raw[k] for k in OLD_WIDGETS if k in raw and not isinstance(raw[k], list)}
    values.update(linked)
    if not values:
        return {}
    logging.warning("JointSampler: running an old workflow's inputs %s; they keep working for now. %s", sorted(values), MIGRATION)
    out = {k: values[k] for k in ("schedule", "negative", "rgb_sigmas", "depth_sigmas") if k in values}
    out.update({k: float(values[k]) for k in ("cfg", "asw_strength") if k in values})
    if "width" in values or "height" in values or "batch_size" in values:
        width, height = int(values.get("width", 512)), int(values.get("height", 512))
        if width % 16 or height % 16 or width < 16 or height < 16:
            raise ValueError(f"width and height must be multiples of 16 (at least 16), got {width}x{height}")
        out["shape"] = (int(values.get("batch_size", 1)), LATENT_CHANNELS, height // 8, width // 8)
    return out


TASK_TIP = (
    "joint_generation: an image and its depth map from the prompt (connect EmptySD3LatentImage to 'image' for size and batch). "
    "depth_estimation: the depth map of the photo at 'image' (VAEEncode). depth_to_image: an image that follows the depth "
    "map at 'depth' (EncodeDepth)."
)
SEED_TIP = "Seed of the starting noise of both branches; the same seed gives the same noise on every device and task."
SEARCH_ALIASES = ["jointdit", "rgbd", "depth estimation", "monocular depth", "depth to image", "joint rgb depth", "image and depth"]


def _common_inputs(tasks: list[str]) -> list:
    return [
        io.Model.Input("model", tooltip="MODEL from LoadJointDiT."),
        io.Conditioning.Input("positive", tooltip="Prompt (official depth estimation uses ' '). Guidance comes from FluxGuidance (default 3.5)."),
        io.Combo.Input("task", options=tasks, default="joint_generation", tooltip=TASK_TIP),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip=SEED_TIP),
        io.Int.Input("steps", default=20, min=1, max=1000, tooltip="Euler steps (official 20)."),
    ]


_IMAGE_TIP = (
    "Image LATENT. joint_generation: an empty latent (EmptySD3LatentImage) giving size and batch; depth_estimation: "
    "the photo (VAEEncode with ae.safetensors)."
)
_DEPTH_TIP = "Depth LATENT (EncodeDepth): needed by depth_to_image."
_OUTPUTS = [io.Latent.Output("rgb", display_name="rgb"), io.Latent.Output("depth_latent", display_name="depth")]
_DESCRIPTION = (
    "Euler sampling of an rgb and a depth branch, each with its own noise level. "
    "joint_generation: both from noise; depth_estimation: image held clean, depth generated; "
    "depth_to_image: depth held clean, image generated."
)


def _schema(node_id: str, display_name: str, description: str, inputs: list, aliases: list[str], **extra) -> io.Schema:
    return io.Schema(
        node_id=node_id, display_name=display_name, category="JointDiT", description=f"{_DESCRIPTION} {description}",
        inputs=inputs, outputs=_OUTPUTS, **schema_options(aliases), **extra,
    )


class JointSampler(io.ComfyNode):
    """Sample rgb/depth pairs with JointDiT: joint generation, depth estimation or depth-to-image."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "JointSampler", "JointDiT Sampler", "For cfg, schedule, ASW and custom levels use JointDiT Sampler (Advanced).",
            [
                *_common_inputs(list(TASKS)),
                io.Latent.Input("image", optional=True, tooltip=_IMAGE_TIP),
                io.Latent.Input("depth", optional=True, tooltip=_DEPTH_TIP),
            ],
            SEARCH_ALIASES,
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, task: str | None = None) -> bool | str:
        """True, or what to do about a task this node does not run (the old JointSampler's "custom" among them).

        Declaring ``task`` here replaces ComfyUI's own "Value not in list" check for it, so every value is checked.
        """
        return task_message(task) or True

    @classmethod
    def execute(cls, model, positive, task, seed, steps, image=None, depth=None, **linked) -> io.NodeOutput:
        message = task_message(task)
        if message:
            raise ValueError(message)
        return run_joint_sampler(model, positive, task, seed, steps, image, depth, **old_inputs(cls.hidden, linked))


class JointSamplerAdvanced(io.ComfyNode):
    """JointSampler with cfg/negative, schedule, ASW strength, custom start/end levels and SIGMAS inputs."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "JointSamplerAdvanced", "JointDiT Sampler (Advanced)", "custom: start/end level per branch (1 = noise, 0 = clean; start == end holds it).",
            [
                *_common_inputs(TASK_NAMES),
                io.Combo.Input("schedule", options=list(SCHEDULES), default="flux_shifted", tooltip="flux_shifted: the official FLUX.1-dev schedule (shift by token count)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance; 1 = off (official). >1 needs 'negative'."),
                io.Float.Input("asw_strength", default=1.0, min=0.0, max=4.0, step=0.05, tooltip="Adaptive scheduling weights: 1 official, 0 off (constant 0.5)."),
                io.Float.Input("rgb_start", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="custom: rgb branch start level (1 = noise, 0 = clean).", **advanced()),
                io.Float.Input("rgb_end", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="custom: rgb branch end level; start == end holds the branch.", **advanced()),
                io.Float.Input("depth_start", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="custom: depth branch start level.", **advanced()),
                io.Float.Input("depth_end", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="custom: depth branch end level.", **advanced()),
                io.Conditioning.Input("negative", optional=True, tooltip="Only used when cfg > 1."),
                io.Latent.Input("image", optional=True, tooltip=_IMAGE_TIP + " custom: needed by an rgb start < 1."),
                io.Latent.Input("depth", optional=True, tooltip=_DEPTH_TIP + " custom: needed by a depth start < 1."),
                io.Sigmas.Input("rgb_sigmas", optional=True, tooltip="Overrides the rgb branch schedule (values in [0, 1], non-increasing)."),
                io.Sigmas.Input("depth_sigmas", optional=True, tooltip="Overrides the depth branch schedule."),
            ],
            SEARCH_ALIASES + ["jointdit advanced", "custom levels"],
        )

    @classmethod
    def execute(
        cls, model, positive, task, seed, steps, schedule, cfg, asw_strength, rgb_start, rgb_end, depth_start, depth_end,
        negative=None, image=None, depth=None, rgb_sigmas=None, depth_sigmas=None,
    ) -> io.NodeOutput:
        return run_joint_sampler(
            model, positive, task, seed, steps, image, depth, negative=negative, schedule=schedule, cfg=cfg, asw_strength=asw_strength,
            levels=(BranchLevels(rgb_start, rgb_end), BranchLevels(depth_start, depth_end)), rgb_sigmas=rgb_sigmas, depth_sigmas=depth_sigmas,
        )
