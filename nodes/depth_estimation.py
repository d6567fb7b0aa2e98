"""One-node depth estimation (any photo size, processing resolution, ensembling) and the JointDiT resize node.

The sampling is JointSampler's: the plan is :func:`jointdit_core.sampler.plan_sampling` ("depth_estimation"),
the noise :func:`jointdit_core.sampler.seeded_noise` (member k: seed + k) and the loop
:func:`.sampler.sample_joint`; decoding is DecodeDepth's (:func:`.depth_maps.vae_pixels_to_depth`). The
resizing (:mod:`jointdit_core.resize`) and the ensembling (:mod:`jointdit_core.ensemble`) are the core's.
So a 512x512 photo at processing resolution 512 with one member gives exactly what VAEEncode ->
JointSampler (depth_estimation) -> DecodeDepth gives.
"""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io

from jointdit_core.depth import COLORMAPS, colorize
from jointdit_core.ensemble import REDUCTIONS, ensemble_disparity
from jointdit_core.resize import processing_size, resize_image, to_input_size, to_processing_resolution
from jointdit_core.sampler import plan_sampling, seeded_noise
from .depth import resolve_transform
from .depth_maps import vae_pixels_to_depth
from .node_options import schema_options
from .sampler import latent_samples, sample_joint

DEPTH_ESTIMATION_PROMPT = " "  # the official depth-estimation prompt (kaist-ami/JointDiT)
# preset -> (steps, depth branch from zeros) overriding the steps input; measured on the RGB-D world (README, "Few steps")
PRESETS = {"custom": None, "4 steps": (4, False), "1 step, deterministic": (1, True)}
_PRESET_TIP = (
    "custom = the 'steps' input (official 20). '4 steps': a fifth of the time; on the demo world AbsRel 0.044 against 0.047 "
    "at 20 steps (0.0385 with 4 ensemble members). '1 step, deterministic': the depth branch starts from zeros and takes one "
    "step (E2E-FT's single step), AbsRel 0.050 there; the same depth for every seed, so one member is run whatever "
    "ensemble_size says. Measured on the small demo model only (README, 'Few steps'): check on your photos before relying "
    "on it with the official weights."
)
_RESOLUTION_TIP = (
    "Longer side (pixels) the photo is processed at, aspect kept, sides rounded to multiples of 16; 512 = the official "
    "training resolution, 0 = the photo's own size. The depth comes back at the photo's size (bilinear; antialiased when shrinking)."
)


def official_conditioning(positive, clip):
    """The prompt CONDITIONING: ``positive`` if connected, else the official prompt " " encoded with ``clip``.

    Raises:
        ValueError: neither is connected.
    """
    if positive is not None:
        return positive
    if clip is None:
        raise ValueError(
            "connect a prompt: 'positive' (e.g. CLIPTextEncode with a single space, the official depth prompt) or 'clip' "
            "(the FLUX.1 text encoders; the node encodes the official prompt ' ' itself)"
        )
    return clip.encode_from_tokens_scheduled(clip.tokenize(DEPTH_ESTIMATION_PROMPT))


@torch.no_grad()
def estimate_depth(model, vae, positive, image: torch.Tensor, processing_resolution: int, ensemble_size: int, seed: int, steps: int, reduction: str,
                   zero_depth_noise: bool = False):
    """Depth of a batch of photos (B, H, W, C) in [0, 1] -> (disparity (B, H, W) in [0, 1] near = 1, uncertainty (B, H, W)).

    Every member runs the whole batch with seed ``seed + k``; the progress bar counts the steps of
    all members, and ComfyUI's cancel is honoured before every model evaluation. ``zero_depth_noise``:
    the depth branch starts from zeros (deterministic; see :func:`jointdit_core.pipeline.generate`).

    Raises:
        ValueError: an empty image, a bad processing resolution, or what the sampler raises.
    """
    if image.ndim != 4 or image.shape[0] == 0 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"the image is empty or not an IMAGE (B, H, W, C): shape {tuple(image.shape)}")
    size = tuple(image.shape[1:3])
    pixels = to_processing_resolution(image[..., :3], processing_resolution)
    latent = latent_samples({"samples": vae.encode(pixels)}, "image")
    plan = plan_sampling("depth_estimation", steps=steps, token_count=(latent.shape[2] // 2) * (latent.shape[3] // 2))
    transform = resolve_transform("auto", model)
    bar = comfy.utils.ProgressBar(ensemble_size * plan.steps)
    members = []
    for k in range(ensemble_size):
        comfy.model_management.throw_exception_if_processing_interrupted()
        noise_rgb, noise_depth = seeded_noise(seed + k, tuple(latent.shape))
        if zero_depth_noise:
            noise_depth = torch.zeros_like(noise_depth)
        done = k * plan.steps
        _, depth_latent = sample_joint(
            model, positive, plan.rgb_sigmas, plan.depth_sigmas, noise_rgb, noise_depth, latent, None, seed=seed + k,
            callback=lambda step, x0, x, total, done=done: bar.update_absolute(done + step + 1, ensemble_size * plan.steps),
        )
        members.append(vae_pixels_to_depth(vae.decode(depth_latent), transform).cpu())
    result = ensemble_disparity(torch.stack(members), reduction)
    return to_input_size(result.disparity, size), to_input_size(result.uncertainty, size)


class JointDiTDepthEstimation(io.ComfyNode):
    """Photo (any size) -> depth map at the photo's size, with optional ensembling and its uncertainty."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTDepthEstimation",
            display_name="JointDiT Depth Estimation",
            category="JointDiT",
            description=(
                "Depth estimation in one node: resizes the photo to the processing resolution, runs JointDiT's depth "
                "estimation (the JointSampler path) ensemble_size times with seeds seed, seed+1, ..., aligns the members "
                "(per-member scale and shift, as Marigold) and combines them; the depth comes back at the photo's size, "
                "near = bright, with the members' spread as uncertainty."
            ),
            inputs=[
                io.Model.Input("model", tooltip="MODEL from LoadJointDiT."),
                io.Vae.Input("vae", tooltip="FLUX.1 autoencoder (ae.safetensors)."),
                io.Image.Input("image", tooltip="Photo(s) of any size; a batch must share one size."),
                io.Int.Input("processing_resolution", default=512, min=0, max=8192, step=16, tooltip=_RESOLUTION_TIP),
                io.Int.Input("ensemble_size", default=1, min=1, max=64, tooltip="Samples combined per photo (Marigold uses 10); 1 = a single run."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of member 1; member k uses seed + k - 1."),
                io.Int.Input("steps", default=20, min=1, max=1000, tooltip="Euler steps per member (official 20; on the demo world 2-4 steps "
                             "score better than 20: AbsRel 0.044 against 0.047, README 'Few steps'). Replaced by a preset other than custom."),
                io.Combo.Input("reduction", options=list(REDUCTIONS), default="median", tooltip="How the aligned members are combined (Marigold: median)."),
                io.Combo.Input("colormap", options=list(COLORMAPS), default="turbo", tooltip="Colours of the 'colormap' output."),
                io.Combo.Input("preset", options=list(PRESETS), default="custom", optional=True, tooltip=_PRESET_TIP),  # optional: older API prompts lack it
                io.Conditioning.Input("positive", optional=True, tooltip="Prompt; official: ' ' (a single space). Without it, 'clip' encodes ' '."),
                io.Clip.Input("clip", optional=True, tooltip="FLUX.1 text encoders, used to encode the official prompt ' ' when 'positive' is not connected."),
            ],
            outputs=[
                io.Image.Output("depth_image", display_name="depth", tooltip="(B, H, W, 3) grey at the photo's size, [0, 1], near = bright."),
                io.Mask.Output("depth_mask", display_name="depth_mask", tooltip="The same depth as MASK (B, H, W)."),
                io.Image.Output("colormap_image", display_name="colormap", tooltip="Colour view of the depth."),
                io.Mask.Output("uncertainty", display_name="uncertainty", tooltip="Spread of the aligned members (MAD for median, std for mean), in depth units; 0 for one member."),
                io.Image.Output("uncertainty_image", display_name="uncertainty_view", tooltip="The uncertainty scaled to each image's maximum, as a colour view."),
            ],
            **schema_options(["depth estimation", "monocular depth", "depth map", "marigold", "depth anything", "jointdit depth"]),
        )

    @classmethod
    def execute(cls, model, vae, image, processing_resolution, ensemble_size, seed, steps, reduction, colormap, positive=None, clip=None, preset="custom") -> io.NodeOutput:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
        zero_noise = False
        if PRESETS[preset] is not None:
            steps, zero_noise = PRESETS[preset]
            ensemble_size = 1 if zero_noise else ensemble_size
        depth, uncertainty = estimate_depth(
            model, vae, official_conditioning(positive, clip), image, processing_resolution, ensemble_size, seed, steps, reduction, zero_noise
        )
        peak = uncertainty.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
        return io.NodeOutput(
            depth[..., None].expand(*depth.shape, 3).contiguous(), depth, colorize(depth, colormap), uncertainty, colorize(uncertainty / peak, "viridis")
        )


class JointDiTResize(io.ComfyNode):
    """Resize an IMAGE to JointDiT's processing size (multiples of 16), or back to another image's size."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTResize",
            display_name="Resize for JointDiT",
            category="JointDiT",
            description=(
                "Photos and depth maps of any size for JointSampler / EncodeDepth: longer side = processing_resolution, "
                "aspect kept, sides multiples of 16 (0 = own size rounded). With 'size_of' connected it resizes to that "
                "image's size instead (e.g. a generated image back to the depth map's original size)."
            ),
            inputs=[
                io.Image.Input("image", tooltip="IMAGE (a photo or a depth map)."),
                io.Int.Input("processing_resolution", default=512, min=0, max=8192, step=16, tooltip=_RESOLUTION_TIP),
                io.Image.Input("size_of", optional=True, tooltip="If connected: resize to this image's width and height."),
            ],
            outputs=[io.Image.Output(tooltip="The resized IMAGE (bilinear, antialiased when shrinking).")],
            **schema_options(["jointdit resize", "multiple of 16"]),
        )

    @classmethod
    def execute(cls, image, processing_resolution, size_of=None) -> io.NodeOutput:
        if size_of is None:
            size = processing_size(image.shape[1], image.shape[2], processing_resolution)
        else:
            size = tuple(size_of.shape[1:3])
        return io.NodeOutput(resize_image(image.movedim(-1, 1), size).movedim(1, -1).clamp(0, 1))
