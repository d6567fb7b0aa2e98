"""EncodeDepth and DecodeDepth: depth maps <-> depth-branch LATENTs through ComfyUI's VAE (ae.safetensors)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from jointdit_core.depth import DEPTH_TRANSFORMS

from .depth_maps import COLORMAPS, check_depth_size, colorize, depth_from_comfy, depth_to_vae_pixels, vae_pixels_to_depth
from .model_patch import jointdit_info
from .node_options import advanced
from .panorama_decode import vae_decode

TRANSFORMS = ["auto", *DEPTH_TRANSFORMS]
_TRANSFORM_TIP = (
    "The addon's depth_transform (its .json sidecar; official 'none'). auto: taken from the connected JointDiT "
    "MODEL, 'none' without one."
)


def resolve_transform(depth_transform: str, model=None) -> str:
    """'auto' -> the LoadJointDiT MODEL's sidecar value ('none' without a MODEL); others unchanged.

    Raises:
        ValueError: an unknown value, or a MODEL that LoadJointDiT did not patch.
    """
    if depth_transform not in TRANSFORMS:
        raise ValueError(f"depth_transform must be one of {TRANSFORMS}, got {depth_transform!r}")
    if depth_transform != "auto":
        return depth_transform
    if model is None:
        return "none"
    info = jointdit_info(model)
    if info is None:
        raise ValueError("the MODEL connected to the depth node is not a JointDiT model (LoadJointDiT)")
    return info.depth_transform


def _vae_cell(vae) -> int:
    """Pixels per latent cell of a ComfyUI VAE (8 for FLUX's ae.safetensors); 1 for a stand-in without that attribute."""
    if hasattr(vae, "spacial_compression_encode"):
        cell = vae.spacial_compression_encode()
    else:
        cell = getattr(vae, "downscale_ratio", 1)
    return cell if isinstance(cell, int) else 8


class EncodeDepth(io.ComfyNode):
    """Depth map (IMAGE or MASK) -> depth LATENT for JointSampler."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EncodeDepth",
            display_name="Encode Depth (JointDiT)",
            category="JointDiT",
            description=(
                "Encodes a depth map for the JointDiT depth branch: per-image min-max normalisation to [0, 1] "
                "(near = 1), the addon's depth_transform, 3 channels, VAE encode. Takes the output of depth "
                "packs directly (Depth Anything V2, MiDaS; Marigold with invert)."
            ),
            inputs=[
                io.Vae.Input("vae", tooltip="FLUX.1 autoencoder (ae.safetensors)."),
                io.Combo.Input("depth_transform", options=TRANSFORMS, default="auto", tooltip=_TRANSFORM_TIP),
                io.Boolean.Input("near_is_bright", default=True, tooltip="True for disparity-like maps (near = bright). False flips depth-like maps (near = dark)."),
                io.Boolean.Input("normalize", default=True, tooltip="Per-image min-max normalisation (the training convention). Off: values must already be in [0, 1]."),
                io.Image.Input("depth", optional=True, tooltip="Depth map IMAGE (B, H, W, 3) in [0, 1]."),
                io.Mask.Input("depth_mask", optional=True, tooltip="Depth map as MASK (B, H, W), used when no IMAGE is connected."),
                io.Model.Input("model", optional=True, tooltip="JointDiT MODEL, read by depth_transform 'auto'."),
                io.Mask.Input(
                    "valid_mask", optional=True,
                    tooltip="Sparse or partial depth: 1 where the depth is known (Load Depth's 'valid'). Missing pixels take their nearest "
                    "known pixel's value before encoding and the normalisation uses known pixels only. For depth completion also "
                    "give the sampler's depth LATENT a noise mask of the missing pixels (InvertMask -> SetLatentNoiseMask).",
                ),
            ],
            outputs=[io.Latent.Output(tooltip="Depth LATENT for JointSampler's 'depth' input.")],
        )

    @classmethod
    def execute(cls, vae, depth_transform, near_is_bright, normalize, depth=None, depth_mask=None, model=None, valid_mask=None) -> io.NodeOutput:
        source = depth if depth is not None else depth_mask
        if source is None:
            raise ValueError("EncodeDepth needs a depth map: connect 'depth' (IMAGE) or 'depth_mask' (MASK)")
        maps = check_depth_size(depth_from_comfy(source), _vae_cell(vae))
        pixels = depth_to_vae_pixels(maps, near_is_bright, normalize, resolve_transform(depth_transform, model), valid=valid_mask)
        return io.NodeOutput({"samples": vae.encode(pixels)})


class DecodeDepth(io.ComfyNode):
    """Depth LATENT -> depth map as IMAGE (near = bright) and MASK, plus a colour view."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DecodeDepth",
            display_name="Decode Depth (JointDiT)",
            category="JointDiT",
            description=(
                "Decodes a JointDiT depth LATENT: VAE decode, clamp, mean of the 3 channels, undo depth_transform. "
                "Outputs relative disparity in [0, 1], near = bright (the convention of ComfyUI depth packs and "
                "depth ControlNets)."
            ),
            inputs=[
                io.Vae.Input("vae", tooltip="FLUX.1 autoencoder (ae.safetensors)."),
                io.Latent.Input("samples", tooltip="The depth output of JointSampler."),
                io.Combo.Input("depth_transform", options=TRANSFORMS, default="auto", tooltip=_TRANSFORM_TIP),
                io.Combo.Input("colormap", options=list(COLORMAPS), default="turbo", tooltip="Colours of the 'colormap' output."),
                io.Model.Input("model", optional=True, tooltip="JointDiT MODEL, read by depth_transform 'auto'."),
                io.Boolean.Input("wrap", default=False, optional=True, **advanced(),
                                 tooltip="360-degree panorama (Window Sampler with wrap): decode with circular padding, so the "
                                         "left and right edges join without a seam."),
            ],
            outputs=[
                io.Image.Output("depth_image", display_name="depth", tooltip="(B, H, W, 3) grey, [0, 1], near = bright."),
                io.Mask.Output("depth_mask", display_name="depth_mask", tooltip="(B, H, W) in [0, 1], near = 1."),
                io.Image.Output("colormap_image", display_name="colormap", tooltip="Colour view of the depth."),
            ],
        )

    @classmethod
    def execute(cls, vae, samples, depth_transform, colormap, model=None, wrap=False) -> io.NodeOutput:
        z = samples["samples"]
        if z.shape[0] == 0:
            raise ValueError("DecodeDepth got a depth LATENT with a batch of 0: connect JointSampler's depth output")
        if not torch.isfinite(z).all():
            raise ValueError(
                "the depth LATENT at DecodeDepth's 'samples' contains NaN or Inf values: the sampler's inputs or the model "
                "in half precision overflowed; JointSampler refuses non-finite inputs, so check the model's weight_dtype "
                "(UNETLoader 'default' or bf16) and any node between JointSampler and DecodeDepth"
            )
        depth = vae_pixels_to_depth(vae_decode(vae, z, wrap), resolve_transform(depth_transform, model))
        image = depth[..., None].expand(*depth.shape, 3).contiguous()
        return io.NodeOutput(image, depth, colorize(depth, colormap))
