"""One-node depth estimation (any photo size, processing resolution, ensembling) and the JointDiT resize node.

The sampling is JointSampler's: the plan is :func:`jointdit_core.sampler.plan_sampling` ("depth_estimation"),
the noise :func:`jointdit_core.sampler.seeded_noise` (member k: seed + k) and the loop
:func:`.sampler.sample_joint`; decoding is DecodeDepth's (:func:`.depth_maps.vae_pixels_to_depth`). The
resizing (:mod:`jointdit_core.resize`), the ensembling (:mod:`jointdit_core.ensemble`) and the tiles of
photos larger than the processing resolution (:mod:`jointdit_core.tiles`) are the core's.
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
from jointdit_core.tiles import merge_tiles, plan_tiles, tile_slices
from .depth import resolve_transform
from .depth_maps import vae_pixels_to_depth
from .node_options import advanced, schema_options
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

LARGE_PHOTOS = ("resize", "tiles")
_LARGE_PHOTOS_TIP = (
    "resize = the whole photo at processing_resolution (one pass). tiles = for a photo whose longer side is larger than "
    "processing_resolution: that resize estimate plus tiles of processing_resolution at the photo's own scale (finer "
    "detail), each tile's scale and shift solved jointly so the tiles agree over their overlaps and follow the resize "
    "estimate's layout, then blended. Cost: (number of tiles + 1) x steps x ensemble_size model runs, e.g. a 1536x1024 "
    "photo at 512 with overlap 128: 12 tiles, 13 times resize. On the small demo model tiles beat resize on 4x-wide photos "
    "(AbsRel 0.040 against 0.052) but not on photos at 4x its resolution (0.088 against 0.060; README, 'Large photos in tiles'). "
    "A photo no larger than processing_resolution gives the resize result."
)
_OVERLAP_TIP = (
    "tiles only: pixels shared by neighbouring tiles (at least; they are spread evenly), smaller than processing_resolution. "
    "More overlap ties the tiles together better but needs more tiles (cost)."
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
                   zero_depth_noise: bool = False, large_photos: str = "resize", tile_overlap: int = 128):
    """Depth of a batch of photos (B, H, W, C) in [0, 1] -> (disparity (B, H, W) in [0, 1] near = 1, uncertainty (B, H, W)).

    Every member runs the whole batch with seed ``seed + k``; the progress bar counts the steps of
    all members (and of all tiles), and ComfyUI's cancel is honoured before every member of every tile and
    every model evaluation. ``zero_depth_noise``: the depth branch starts from zeros (deterministic; see
    :func:`jointdit_core.pipeline.generate`). ``large_photos`` "tiles": a photo whose longer side exceeds
    ``processing_resolution`` is also estimated in tiles of that size at its own scale (``tile_overlap`` pixels
    shared), each tile ensembled, and the tiles reconciled to the whole photo's estimate by
    :func:`jointdit_core.tiles.merge_tiles`; the uncertainty is then the tiles' blended spread.

    Raises:
        ValueError: an empty image, a bad processing resolution, an unknown ``large_photos``, a ``tile_overlap``
        not smaller than ``processing_resolution``, or what the sampler raises.
    """
    if image.ndim != 4 or image.shape[0] == 0 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"the image is empty or not an IMAGE (B, H, W, C): shape {tuple(image.shape)}")
    if large_photos not in LARGE_PHOTOS:
        raise ValueError(f"unknown large_photos {large_photos!r}; choose one of {list(LARGE_PHOTOS)}")
    size = tuple(image.shape[1:3])
    grid = None
    if large_photos == "tiles":
        if not 0 <= tile_overlap < max(processing_resolution, 1):
            raise ValueError(f"tile_overlap {tile_overlap} px must be at least 0 and smaller than processing_resolution "
                             f"({processing_resolution} px, the tile size); lower tile_overlap")
        if processing_resolution > 0 and max(size) > processing_resolution:
            grid = plan_tiles(*size, processing_resolution, tile_overlap)
    passes = 1 + (len(grid.windows) if grid is not None else 0)
    transform = resolve_transform("auto", model)
    bar = comfy.utils.ProgressBar(passes * ensemble_size * steps)
    done = [0]

    def estimate(pixels: torch.Tensor, out_size: tuple[int, int]):
        """One pass: every member on ``pixels`` at processing resolution -> ensembled, resized to ``out_size``."""
        latent = latent_samples({"samples": vae.encode(to_processing_resolution(pixels, processing_resolution))}, "image")
        plan = plan_sampling("depth_estimation", steps=steps, token_count=(latent.shape[2] // 2) * (latent.shape[3] // 2))
        members = []
        for k in range(ensemble_size):
            comfy.model_management.throw_exception_if_processing_interrupted()
            noise_rgb, noise_depth = seeded_noise(seed + k, tuple(latent.shape))
            if zero_depth_noise:
                noise_depth = torch.zeros_like(noise_depth)
            first = done[0]
            _, depth_latent = sample_joint(
                model, positive, plan.rgb_sigmas, plan.depth_sigmas, noise_rgb, noise_depth, latent, None, seed=seed + k,
                callback=lambda step, x0, x, total, first=first: bar.update_absolute(first + step + 1, passes * ensemble_size * steps),
            )
            done[0] += plan.steps
            members.append(vae_pixels_to_depth(vae.decode(depth_latent), transform).cpu())
        result = ensemble_disparity(torch.stack(members), reduction)
        return to_input_size(result.disparity, out_size), to_input_size(result.uncertainty, out_size)

    disparity, uncertainty = estimate(image[..., :3], size)
    if grid is None:
        return disparity, uncertainty
    tiles = [estimate(image[:, rows, cols, :3], grid.size) for rows, cols in tile_slices(grid)]
    merged = [
        merge_tiles(torch.stack([t[0][b] for t in tiles]), grid, disparity[b], uncertainty=torch.stack([t[1][b] for t in tiles]))
        for b in range(image.shape[0])
    ]
    return torch.stack([m.disparity for m in merged]), torch.stack([m.uncertainty for m in merged])


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
                io.Combo.Input("large_photos", options=list(LARGE_PHOTOS), default="resize", optional=True, tooltip=_LARGE_PHOTOS_TIP, **advanced()),
                io.Int.Input("tile_overlap", default=128, min=0, max=8192, step=16, optional=True, tooltip=_OVERLAP_TIP, **advanced()),
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
    def execute(cls, model, vae, image, processing_resolution, ensemble_size, seed, steps, reduction, colormap, positive=None, clip=None, preset="custom",
                large_photos="resize", tile_overlap=128) -> io.NodeOutput:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
        zero_noise = False
        if PRESETS[preset] is not None:
            steps, zero_noise = PRESETS[preset]
            ensemble_size = 1 if zero_noise else ensemble_size
        depth, uncertainty = estimate_depth(
            model, vae, official_conditioning(positive, clip), image, processing_resolution, ensemble_size, seed, steps, reduction, zero_noise,
            large_photos, tile_overlap,
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
