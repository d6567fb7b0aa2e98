"""Write the pack's example workflows in API format and in UI (drag-and-drop) format.

The graphs are defined once below in API format; the UI files are derived from them with the widget
order that a running ComfyUI reports in ``/object_info`` (so the two formats cannot drift apart).

    python scripts/make_workflows.py --object-info object_info.json   # saved from GET /object_info
    python scripts/make_workflows.py --server http://127.0.0.1:8188
    python scripts/make_workflows.py --thumbnails demo_output                  # after bash scripts/demo.sh

Writes ``workflows/api/<name>.json``, ``workflows/ui/<name>.json`` and a copy of the UI file in
``example_workflows/<title>.json`` (the folder ComfyUI lists as the pack's templates, under the titles of
:data:`TEMPLATES`). The template thumbnails ``example_workflows/<title>.jpg`` are pictures of real outputs,
made separately (``--thumbnails``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _node(class_type: str, title: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


# Model download metadata of the loader nodes (``properties.models``, the format of ComfyUI's own templates):
# the frontend offers these downloads when a file is missing. The addon's name is the official download's
# (byungki-kwon/JointDiT); its JSON sidecar is optional (none = the official defaults).
ADDON = "jointdit.safetensors"
MODELS = {
    "flux1-dev.safetensors": ("https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    "clip_l.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    "ae.safetensors": ("https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors", "vae"),
    ADDON: ("https://huggingface.co/byungki-kwon/JointDiT/resolve/main/jointdit.safetensors", "jointdit"),
}
OUTPUT_NODES = {"SaveImage", "PreviewImage", "Preview3D", "JointDiTSaveDepth"}
SAMPLE_SPARSE_DEPTH = "jointdit_sparse_depth.png"  # written into ComfyUI's input folder by the pack (jointdit_core.depth_files)

NOTE = """## Model files
A missing file gets a Download button in the Errors panel. Latent previews: start ComfyUI with --preview-method auto.

- **diffusion_models**: [flux1-dev](https://huggingface.co/black-forest-labs/FLUX.1-dev) (gated: accept its license first)
- **vae**: [ae](https://huggingface.co/black-forest-labs/FLUX.1-dev)
- **text_encoders**: [clip_l, t5xxl_fp16](https://huggingface.co/comfyanonymous/flux_text_encoders)
- **jointdit**: [jointdit.safetensors](https://huggingface.co/byungki-kwon/JointDiT); its .json sidecar is optional (none: the official settings; another addon: pick it in *Load JointDiT*)

## This workflow
"""
# What each workflow does and what to change first: the details that do not fit a short node title.
TIPS = {
    "joint_generation": "Text to an image and its depth map. Change the prompt and the size (*Size and batch*).",
    "joint_generation_3d": "Text to an image, its depth map and a 3D mesh (*RGB-D to 3D*, shown in *3D view*: drag to orbit). "
                           "The .glb is in ComfyUI's output folder.",
    "depth_estimation": "A photo's depth map. Pick your photo in *Photo* (the prompt stays a single space, as in the paper).",
    "depth_estimation_any_size": "A photo's depth map at the photo's own size: an ensemble of 4 runs, their median and "
                                 "their spread (*Uncertainty*), saved as a 16-bit PNG.",
    "depth_estimation_wide": "The depth map of a wide or large photo in tiles: pick your photo in *Wide photo*. Besides the whole "
                             "photo at processing_resolution, tiles of that size at the photo's own scale (large_photos = tiles, "
                             "tile_overlap pixels shared) are estimated and reconciled. Cost: tiles + 1 runs (a 2048x1024 photo at "
                             "512 with overlap 128: 15 tiles).",
    "panorama_360_3d": ("A 360-degree image and its depth (2:1, equirectangular), generated in overlapping windows of the model's size "
                        "with wrap on, so the left and right edges join; both decoders pad circularly for the same reason. RGB-D "
                        "to 3D puts it on a sphere around you: in *3D view* zoom in to stand inside. Decode Depth's wrap and RGB-D to "
                        "3D's projection are advanced inputs (Show advanced inputs). Sampling costs one model call per window and "
                        "step (here 3 windows of 1024 pixels)."),
    "depth_estimation_3d": "A photo's depth map lifted to a 3D mesh (*3D view*: drag to orbit). Pick your photo in *Photo*.",
    "depth_to_image": "The photo's depth map (depth estimation) turned into a new image from the prompt. To use your "
                      "own depth map, connect it to *Encode depth*'s depth input.",
    "inpaint_rgbd": "Paint a mask on *Photo* (right click, Open in MaskEditor): the masked region is repainted from "
                    "the prompt, with matching depth.",
    "outpaint_rgbd": "The photo and its depth map padded left and right (*Pad photo*, *Pad depth*: keep sizes "
                     "multiples of 16), then the new canvas filled in both.",
    "depth_completion": "A sparse or partial depth file filled in where it is 0, guided by the photo. The sample "
                        "jointdit_sparse_depth.png is in ComfyUI's input folder; upload your own file in *Sparse depth*. "
                        "For metric depth (far = bright) switch *Encode depth*'s near_is_bright off.",
}


def _common(prompt: str) -> dict:
    """Loaders shared by every workflow: official file names in the standard ComfyUI folders."""
    return {
        "1": _node("UNETLoader", "Load FLUX.1-dev", unet_name="flux1-dev.safetensors", weight_dtype="default"),
        "2": _node("LoadJointDiT", "Load JointDiT", model=["1", 0], addon_name=ADDON),
        "3": _node("DualCLIPLoader", "Load CLIP-L + T5-XXL", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors", type="flux", device="default"),
        "4": _node("CLIPTextEncode", "Prompt", text=prompt, clip=["3", 0]),
        "5": _node("FluxGuidance", "Guidance 3.5", conditioning=["4", 0], guidance=3.5),
        "6": _node("VAELoader", "Load FLUX.1 autoencoder", vae_name="ae.safetensors"),
    }


def _sampler(task: str, positive=("5", 0), **latents) -> dict:
    return _node("JointSampler", "JointDiT Sampler", model=["2", 0], positive=list(positive), task=task, seed=42, steps=20, **latents)


def _decode_depth(samples, title: str = "Decode Depth", **options) -> dict:
    return _node("DecodeDepth", title, vae=["6", 0], samples=samples, depth_transform="auto", colormap="turbo", model=["2", 0], **options)


def _photo(first: int) -> dict:
    """LoadImage (ComfyUI's sample ``example.png``) -> 512x512 -> VAEEncode, as nodes ``first`` .. ``first + 2``."""
    a, b, c = (str(first + i) for i in range(3))
    return {
        a: _node("LoadImage", "Photo", image="example.png"),
        b: _node("ImageScale", "Resize (multiple of 16)", image=[a, 0], upscale_method="lanczos", width=512, height=512, crop="center"),
        c: _node("VAEEncode", "Encode photo", pixels=[b, 0], vae=["6", 0]),
    }


def _photo_depth(first: int, latent) -> dict:
    """Depth estimation of the encoded photo ``latent`` with the official prompt (a single space), as nodes
    ``first`` .. ``first + 2``: prompt, guidance, sampler (its output 1 is the depth LATENT)."""
    a, b, c = (str(first + i) for i in range(3))
    return {
        a: _node("CLIPTextEncode", "Depth prompt (a space)", text=" ", clip=["3", 0]),
        b: _node("FluxGuidance", "Guidance 3.5", conditioning=[a, 0], guidance=3.5),
        c: _sampler("depth_estimation", positive=(b, 0), image=latent),
    }


WORKFLOWS = {
    "joint_generation": {
        **_common("a cozy reading corner with a leather armchair by a window, warm afternoon light"),
        "7": _node("EmptySD3LatentImage", "Size and batch", width=512, height=512, batch_size=1),
        "8": _sampler("joint_generation", image=["7", 0]),
        "9": _node("VAEDecode", "Decode image", samples=["8", 0], vae=["6", 0]),
        "10": _decode_depth(["8", 1]),
        "11": _node("SaveImage", "Save image", images=["9", 0], filename_prefix="JointDiT/joint_rgb"),
        "12": _node("SaveImage", "Save depth", images=["10", 0], filename_prefix="JointDiT/joint_depth"),
        "13": _node("PreviewImage", "Depth (colour)", images=["10", 2]),
    },
    "depth_estimation": {
        **_common(" "),  # the official depth-estimation prompt is a single space
        **_photo(7),
        "10": _sampler("depth_estimation", image=["9", 0]),
        "11": _decode_depth(["10", 1]),
        "12": _node("SaveImage", "Save depth", images=["11", 0], filename_prefix="JointDiT/depth"),
        "13": _node("PreviewImage", "Depth (colour)", images=["11", 2]),
    },
    "depth_estimation_any_size": {  # the one-node depth estimation (any photo size, ensemble, uncertainty, 16-bit file)
        **{k: v for k, v in _common(" ").items() if k in ("1", "2", "3", "6")},
        "7": _node("LoadImage", "Photo (any size)", image="example.png"),
        "8": _node(
            "JointDiTDepthEstimation", "JointDiT Depth Estimation", model=["2", 0], vae=["6", 0], image=["7", 0], processing_resolution=512,
            ensemble_size=4, seed=42, steps=20, reduction="median", colormap="turbo", clip=["3", 0],
        ),
        "9": _node("JointDiTSaveDepth", "Save depth (16-bit PNG)", depth=["8", 0], filename_prefix="JointDiT/depth16", format="png16"),
        "10": _node("PreviewImage", "Depth (colour)", images=["8", 2]),
        "11": _node("PreviewImage", "Uncertainty", images=["8", 4]),
    },
    # A wide or large photo in tiles (large_photos = tiles): the resize estimate plus reconciled tiles of the processing size.
    "depth_estimation_wide": {
        **{k: v for k, v in _common(" ").items() if k in ("1", "2", "3", "6")},
        "7": _node("LoadImage", "Wide photo", image="example.png"),
        "8": _node(
            "JointDiTDepthEstimation", "Depth estimation (tiles)", model=["2", 0], vae=["6", 0], image=["7", 0], processing_resolution=512,
            ensemble_size=1, seed=42, steps=20, reduction="median", colormap="turbo", clip=["3", 0], large_photos="tiles", tile_overlap=128,
        ),
        "9": _node("JointDiTSaveDepth", "Save depth (16-bit PNG)", depth=["8", 0], filename_prefix="JointDiT/depth_wide", format="png16"),
        "10": _node("PreviewImage", "Depth (colour)", images=["8", 2]),
    },
    # The depth map comes from the photo (depth estimation), through Encode Depth: connect your own depth map
    # (Load Image, Depth Anything, a ControlNet preprocessor) to Encode Depth's 'depth' input instead.
    "depth_to_image": {
        **_common("a sunlit living room with wooden floor and large plants"),
        **_photo(7),
        **_photo_depth(10, ["9", 0]),
        "13": _decode_depth(["12", 1]),
        "14": _node("EncodeDepth", "Encode depth", vae=["6", 0], depth_transform="auto", near_is_bright=True, normalize=True, depth=["13", 0], model=["2", 0]),
        "15": _sampler("depth_to_image", depth=["14", 0]),
        "16": _node("VAEDecode", "Decode image", samples=["15", 0], vae=["6", 0]),
        "17": _node("SaveImage", "Save image", images=["16", 0], filename_prefix="JointDiT/depth_to_image"),
        "18": _node("PreviewImage", "Depth map used", images=["13", 2]),
    },
}


def _scaled_mask(first: int, mask) -> dict:
    """MASK -> image -> the photo's ImageScale -> MASK, as nodes ``first`` .. ``first + 2`` (mask and image stay aligned)."""
    a, b, c = (str(first + i) for i in range(3))
    return {
        a: _node("MaskToImage", "Mask as image", mask=mask),
        b: _node("ImageScale", "Resize mask", image=[a, 0], upscale_method="nearest-exact", width=512, height=512, crop="center"),
        c: _node("ImageToMask", "Mask", image=[b, 0], channel="red"),
    }


# Masks: a LATENT's noise_mask (SetLatentNoiseMask, 1 = regenerate) is honoured per branch by JointSampler.
WORKFLOWS["inpaint_rgbd"] = {  # repaint a region of a photo (paint the mask on Load Image) and get the matching depth
    **_common("a large potted plant"),
    **_photo(7),
    **_scaled_mask(10, ["7", 1]),
    "13": _node("SetLatentNoiseMask", "Photo: repaint the mask", samples=["9", 0], mask=["12", 0]),
    **_photo_depth(14, ["9", 0]),
    "17": _node("SetLatentNoiseMask", "Depth: repaint the mask", samples=["16", 1], mask=["12", 0]),
    "18": _sampler("joint_generation", image=["13", 0], depth=["17", 0]),
    "19": _node("VAEDecode", "Decode image", samples=["18", 0], vae=["6", 0]),
    "20": _decode_depth(["18", 1]),
    "21": _node("SaveImage", "Save image", images=["19", 0], filename_prefix="JointDiT/inpaint_rgb"),
    "22": _node("SaveImage", "Save depth", images=["20", 0], filename_prefix="JointDiT/inpaint_depth"),
    "23": _node("PreviewImage", "Depth (colour)", images=["20", 2]),
}
# Depth completion: the photo held clean, the depth generated where it is missing. Load Depth reads a sparse or
# partial depth map (16-bit PNG, EXR, TIFF, .npy; 0 = missing, as LiDAR PNGs store it); its 'valid' MASK tells
# Encode Depth which pixels are known (the others are filled from their nearest known pixel before encoding) and,
# inverted, is the depth LATENT's noise mask (1 = generate).
WORKFLOWS["depth_completion"] = {
    **_common(" "),
    **_photo(7),
    "10": _node("JointDiTLoadDepth", "Sparse depth", file=SAMPLE_SPARSE_DEPTH, normalize=True, zero_is_missing=True),
    "11": _node("ImageScale", "Resize depth", image=["10", 0], upscale_method="nearest-exact", width=512, height=512, crop="center"),
    **_scaled_mask(12, ["10", 1]),
    "15": _node("InvertMask", "Missing pixels", mask=["14", 0]),
    "16": _node("EncodeDepth", "Encode depth", vae=["6", 0], depth_transform="auto", near_is_bright=True,
                normalize=True, depth=["11", 0], model=["2", 0], valid_mask=["14", 0]),
    "17": _node("SetLatentNoiseMask", "Depth: fill the gaps", samples=["16", 0], mask=["15", 0]),
    "18": _sampler("depth_estimation", image=["9", 0], depth=["17", 0]),
    "19": _decode_depth(["18", 1]),
    "20": _node("SaveImage", "Save depth", images=["19", 0], filename_prefix="JointDiT/depth_completion"),
    "21": _node("PreviewImage", "Depth (colour)", images=["19", 2]),
}
# Outpainting an RGB-D pair: the photo's depth (depth estimation; or your own depth map into the second pad node),
# both padded to a wider canvas by ComfyUI's Pad Image for Outpainting, whose MASK (1 = new canvas) is the noise
# mask of both branches; joint generation fills the new canvas with image and depth together.
PAD = dict(left=128, top=0, right=128, bottom=0)
WORKFLOWS["outpaint_rgbd"] = {
    **_common("a cozy living room with wooden floor, wide view"),
    **_photo(7),
    **_photo_depth(10, ["9", 0]),
    "13": _decode_depth(["12", 1]),
    "14": _node("ImagePadForOutpaint", "Pad photo", image=["8", 0], **PAD, feathering=24),
    "15": _node("ImagePadForOutpaint", "Pad depth", image=["13", 0], **PAD, feathering=0),
    "16": _node("VAEEncode", "Encode padded photo", pixels=["14", 0], vae=["6", 0]),
    "17": _node("EncodeDepth", "Encode padded depth", vae=["6", 0], depth_transform="auto", near_is_bright=True, normalize=True, depth=["15", 0], model=["2", 0]),
    "18": _node("SetLatentNoiseMask", "Photo: new canvas", samples=["16", 0], mask=["14", 1]),
    "19": _node("SetLatentNoiseMask", "Depth: new canvas", samples=["17", 0], mask=["14", 1]),
    "20": _sampler("joint_generation", image=["18", 0], depth=["19", 0]),
    "21": _node("VAEDecode", "Decode image", samples=["20", 0], vae=["6", 0]),
    "22": _decode_depth(["20", 1]),
    "23": _node("SaveImage", "Save image", images=["21", 0], filename_prefix="JointDiT/outpaint_rgb"),
    "24": _node("SaveImage", "Save depth", images=["22", 0], filename_prefix="JointDiT/outpaint_depth"),
    "25": _node("PreviewImage", "Depth (colour)", images=["22", 2]),
}


# 3D lifting: the joint-generation and depth-estimation graphs, their image and depth map lifted to a
# mesh + point cloud by "JointDiT RGB-D to 3D" and shown in ComfyUI's own Preview 3D (its model_file takes the
# .glb path relative to the output folder, in every supported ComfyUI).
def _with_3d(graph: dict, image_from: str, prefix: str, **lift_options) -> dict:
    """``graph`` plus RGBDTo3D (image: the first ``image_from`` node; depth: DecodeDepth's depth; ``lift_options``: its
    advanced inputs) and Preview3D."""
    first = lambda class_type: next(nid for nid, node in graph.items() if node["class_type"] == class_type)  # noqa: E731
    lift, preview = str(max(int(n) for n in graph) + 1), str(max(int(n) for n in graph) + 2)
    return {
        **graph,
        lift: _node("JointDiTRGBDTo3D", "RGB-D to 3D", image=[first(image_from), 0], depth=[first("DecodeDepth"), 0], fov_degrees=60.0,
                    near=1.0, far=10.0, edge_threshold=0.03, background_threshold=0.0, filename_prefix=prefix, depth_kind="disparity",
                    normalize=True, glb_content="mesh", texture=False, stride=1, **lift_options),
        preview: _node("Preview3D", "3D view (drag to orbit)", model_file=[lift, 0]),
    }


WORKFLOWS["joint_generation_3d"] = _with_3d(WORKFLOWS["joint_generation"], "VAEDecode", "JointDiT/joint_3d")
WORKFLOWS["depth_estimation_3d"] = _with_3d(WORKFLOWS["depth_estimation"], "ImageScale", "JointDiT/depth_3d")
# A 360-degree RGB-D panorama you stand inside: an equirectangular 2:1 latent (FLUX.1-dev scale) sampled in windows of the
# model's size with wrap (the right edge joined to the left), both branches decoded with circular padding (no seam
# where the panorama wraps), lifted onto a sphere around the viewer (RGB-D to 3D, projection equirectangular).
WORKFLOWS["panorama_360_3d"] = _with_3d({
    **_common("a 360-degree panorama of a sunlit ancient Roman forum with marble columns and temples, equirectangular"),
    "7": _node("EmptySD3LatentImage", "Size (2:1 for 360 degrees)", width=2048, height=1024, batch_size=1),
    "8": _node("JointSamplerWindows", "Window Sampler (360, wrap)", model=["2", 0], positive=["5", 0], task="joint_generation",
               seed=42, steps=20, window_width=1024, window_height=1024, overlap=256, wrap=True, windows_per_batch=1, cfg=1.0, image=["7", 0]),
    "9": _node("JointDiTVAEDecodeWrap", "Decode image (360, wrap)", samples=["8", 0], vae=["6", 0]),
    "10": _decode_depth(["8", 1], "Decode Depth (360, wrap)", wrap=True),
    "11": _node("SaveImage", "Save image", images=["9", 0], filename_prefix="JointDiT/panorama_rgb"),
    "12": _node("SaveImage", "Save depth", images=["10", 0], filename_prefix="JointDiT/panorama_depth"),
    "13": _node("PreviewImage", "Depth (colour)", images=["10", 2]),
}, "JointDiTVAEDecodeWrap", "JointDiT/panorama_3d", projection="equirectangular")


# Template file names in example_workflows/: the frontend shows a pack's template under its file name and lists
# them in the folder's order (or A to Z), so the names are titles, numbered in reading order.
TEMPLATES = {
    "joint_generation": "JointDiT 1 - Text to image and depth",
    "depth_estimation": "JointDiT 2 - Photo to depth",
    "depth_estimation_any_size": "JointDiT 3 - Photo to depth, any size",
    "depth_estimation_wide": "JointDiT 3b - Wide photo to depth, in tiles",
    "depth_to_image": "JointDiT 4 - Depth to image",
    "inpaint_rgbd": "JointDiT 5 - Inpaint image and depth",
    "outpaint_rgbd": "JointDiT 6 - Outpaint image and depth",
    "depth_completion": "JointDiT 7 - Depth completion",
    "joint_generation_3d": "JointDiT 8 - Text to 3D",
    "depth_estimation_3d": "JointDiT 9 - Photo to 3D",
    "panorama_360_3d": "JointDiT 9b - 360-degree panorama in 3D",
}


def _inputs_in_order(info: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) of a node's inputs in /object_info order."""
    order = info.get("input_order", {})
    out = []
    for group in ("required", "optional"):
        specs = info["input"].get(group, {})
        for name in order.get(group, list(specs)):
            out.append((name, specs[name], group == "optional"))
    return out


def _is_widget(spec: list) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 else {}
    return isinstance(kind, list) or kind in WIDGET_TYPES or options.get("widgetType") in WIDGET_TYPES  # multi-type inputs with a widget


def widget_values(info: dict, inputs: dict) -> list:
    """``widgets_values`` of a UI node: widget inputs in order, plus the frontend's extra values
    (``control_after_generate`` after a seed, the upload button after an image combo)."""
    values = []
    for name, spec, _ in _inputs_in_order(info):
        if not _is_widget(spec):
            continue
        options = spec[1] if len(spec) > 1 else {}
        value = inputs.get(name, options.get("default"))
        values.append(options.get("default") if isinstance(value, list) else value)  # a linked widget keeps its default
        if options.get("control_after_generate"):
            values.append("fixed")
        if options.get("image_upload"):
            values.append("image")
    return values


def _columns(graph: dict) -> dict[str, int]:
    col: dict[str, int] = {}

    def depth(nid: str) -> int:
        if nid not in col:
            links = [v for v in graph[nid]["inputs"].values() if isinstance(v, list)]
            col[nid] = 1 + max((depth(v[0]) for v in links), default=-1)
        return col[nid]

    for nid in graph:
        depth(nid)
    return col


NOTE_ID = 100
MAX_WIDTH, MAX_HEIGHT = 2000, 1200  # canvas pixels: a template opens fitted to a 1920x1080 window at a zoom (~0.7) that shows text
NODE_WIDTH, GAP = 260, 40
ROW_GAP = 50  # between nodes of a column: the title bar (30 px above pos) and the node badges (20 px) clear the node above
OUTPUT_SIZE = [340, 400]  # room for a 512x512 result below the widgets: an output node never needs to grow
NOTE_MIN_WIDTH = 300
FIXED_SIZE = {"LoadImage": [NODE_WIDTH, 360], "JointDiTLoadDepth": [NODE_WIDTH, 410]}  # nodes that show their input picture
BADGE_ROW = 20  # the Nodes 2.0 rendering draws a pack node's source badge in a row of its own, at the bottom
PREVIEW_ROOM = {"JointSampler": 120}  # below the widgets: the latent preview shown while sampling
# Where the nodes stand: per workflow, columns of node ids (top to bottom), left to right, then the output nodes
# (Save / Preview Image, Preview 3D) in columns right of them, each large enough for its result so that nothing
# grows after a run ("output_size" for wide results). The note goes where it adds the least height.
GRIDS = {
    "joint_generation": {"columns": [[1, 3, 6], [2, 4, 5, 7], [8, 9, 10]], "outputs": [[11, 13], [12]]},
    "joint_generation_3d": {"columns": [[1, 3, 6], [2, 4, 5, 7], [8], [9, 10, 14]], "outputs": [[11, 15], [12, 13]]},
    "depth_estimation": {"columns": [[1, 3, 6], [2, 4, 5], [7, 8, 9], [10, 11]], "outputs": [[12], [13]]},
    "depth_estimation_3d": {"columns": [[1, 3, 6], [2, 4, 5], [7, 8, 9], [10, 11, 14]], "outputs": [[12, 15], [13]]},
    "depth_estimation_any_size": {"columns": [[1, 3, 6], [2, 7], [8]], "outputs": [[9, 11], [10]]},
    "depth_estimation_wide": {"columns": [[1, 3, 6], [2, 7], [8]], "outputs": [[9], [10]], "output_size": [500, 400]},
    "depth_to_image": {"columns": [[1, 3, 6], [2, 7, 8], [9, 10, 11, 12], [13, 4, 5, 14], [15, 16]], "outputs": [[17, 18]]},
    "inpaint_rgbd": {"columns": [[1, 3, 6, 4, 5], [2, 7, 8, 9], [10, 11, 12, 13], [14, 15, 16, 17], [18, 19, 20]],
                     "outputs": [[21, 22, 23]], "output_size": [340, 320]},
    "outpaint_rgbd": {"columns": [[1, 3, 6, 4, 5], [2, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17], [18, 19, 20, 21, 22]],
                      "outputs": [[23, 24, 25]], "output_size": [340, 300]},
    "depth_completion": {"columns": [[1, 3, 6, 4, 5], [2, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]], "outputs": [[20], [21]]},
    "panorama_360_3d": {"columns": [[1, 3, 6], [2, 4, 5, 7], [8], [9, 10, 14]], "outputs": [[11, 15], [12, 13]], "output_size": [340, 330]},
}


def _properties(node: dict) -> dict:
    properties = {"Node name for S&R": node["class_type"]}
    models = [
        {"name": v, "url": MODELS[v][0], "directory": MODELS[v][1]}
        for v in node["inputs"].values() if isinstance(v, str) and v in MODELS
    ]
    if models:
        properties["models"] = models
    return properties


def _node_size(node: dict, info: dict) -> list[int]:
    """The size the frontend gives a node (20 px a socket row, 24 px a widget, 72 px a text box; measured on
    frontend 1.48) with 16 px to spare and room for a latent preview, or the fixed size of a node that shows a picture."""
    if node["class_type"] in FIXED_SIZE:
        return list(FIXED_SIZE[node["class_type"]])
    specs = _inputs_in_order(info)
    sockets = sum(1 for _, spec, _ in specs if not _is_widget(spec))
    text_boxes = sum(1 for _, spec, _ in specs if _is_widget(spec) and len(spec) > 1 and spec[1].get("multiline"))
    height = 30 + 20 * max(sockets, len(info["output"])) + 24 * len(widget_values(info, node["inputs"])) + 48 * text_boxes
    badge = BADGE_ROW if info.get("python_module", "").startswith("custom_nodes.") else 0
    return [NODE_WIDTH, height + PREVIEW_ROOM.get(node["class_type"], 0) + badge]


def _layout(name: str, graph: dict, object_info: dict, note_text: str) -> tuple[dict[str, tuple[list, list]], tuple[list, list]]:
    """Positions and sizes of the nodes of workflow ``name`` from :data:`GRIDS`, and the note's position and size:
    below the run of columns (at least :data:`NOTE_MIN_WIDTH` wide) where it ends highest."""
    grid = GRIDS[name]
    columns = [[str(n) for n in column] for column in grid["columns"] + grid["outputs"]]
    placed = sorted(n for column in columns for n in column)
    if placed != sorted(graph):
        raise ValueError(f"GRIDS[{name!r}] places {placed}, the workflow has the nodes {sorted(graph)}")
    layout: dict[str, tuple[list, list]] = {}
    x, lefts, bottoms = 40, [], []
    for k, column in enumerate(columns):
        y = 40
        for n in column:
            is_output = k >= len(grid["columns"])
            size = list(grid.get("output_size", OUTPUT_SIZE)) if is_output else _node_size(graph[n], object_info[graph[n]["class_type"]])
            layout[n] = ([x, y], size)
            y += size[1] + ROW_GAP
        lefts.append(x)
        bottoms.append(y)
        x += max(layout[n][1][0] for n in column) + GAP
    lefts.append(x)
    places = []
    for first in range(len(columns)):
        for last in range(first, len(columns)):
            width = lefts[last + 1] - lefts[first] - GAP
            if width >= NOTE_MIN_WIDTH:
                top = max(bottoms[first : last + 1])
                places.append((top + _note_height(note_text, width), -width, [lefts[first], top], [width, _note_height(note_text, width)]))
    _, _, pos, size = min(places)
    return layout, (pos, size)


def to_ui(graph: dict, object_info: dict, name: str) -> dict:
    """The UI (LiteGraph) workflow of an API-format graph ``name``, laid out by :func:`_layout`, with a Markdown
    note (where the model files come from, what the workflow does)."""
    links, nodes = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    in_link: dict[tuple[str, str], int] = {}
    for nid, node in graph.items():
        for input_name, value in node["inputs"].items():
            if isinstance(value, list):
                link_id = len(links) + 1
                info = object_info[graph[value[0]]["class_type"]]
                links.append([link_id, int(value[0]), value[1], int(nid), None, info["output"][value[1]]])
                out_links.setdefault((value[0], value[1]), []).append(link_id)
                in_link[(nid, input_name)] = link_id
    cols = _columns(graph)
    note = NOTE + TIPS[name] + "\n"
    layout, (note_pos, note_size) = _layout(name, graph, object_info, note)
    for nid in sorted(graph, key=int):
        node = graph[nid]
        info = object_info[node["class_type"]]
        sockets = []
        for input_name, spec, optional in _inputs_in_order(info):
            link = in_link.get((nid, input_name))
            if _is_widget(spec) and link is None:
                continue
            entry = {"name": input_name, "type": spec[0], "link": link}
            if _is_widget(spec):  # a widget fed by a link (e.g. Preview 3D's model_file)
                entry["widget"] = {"name": input_name}
            if optional:
                entry["shape"] = 7
            sockets.append(entry)
        for slot, entry in enumerate(sockets):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot
        outputs = [
            {"name": info["output_name"][i], "type": kind, "links": out_links.get((nid, i), [])}
            for i, kind in enumerate(info["output"])
        ]
        widgets = widget_values(info, node["inputs"])
        pos, size = layout[nid]
        nodes.append({
            "id": int(nid), "type": node["class_type"], "pos": pos, "size": size,
            "flags": {}, "order": 0, "mode": 0, "inputs": sockets, "outputs": outputs,
            "title": node["_meta"]["title"], "properties": _properties(node), "widgets_values": widgets,
        })
    for order, node in enumerate(sorted(nodes, key=lambda n: (cols[str(n["id"])], n["id"]))):
        node["order"] = order
    nodes.append({
        "id": NOTE_ID, "type": "MarkdownNote", "pos": note_pos, "size": note_size, "flags": {}, "order": len(nodes), "mode": 0,
        "inputs": [], "outputs": [], "title": "Model files", "properties": {}, "widgets_values": [note],
        "color": "#432", "bgcolor": "#653",
    })
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "ComfyUI-JointDiT/" + json.dumps(graph, sort_keys=True))),
        "revision": 0, "last_node_id": NOTE_ID, "last_link_id": len(links),
        "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {"ds": _fit_view(nodes)}, "version": 0.4,
    }


def _note_height(note: str, width: int) -> int:
    """Height of the note's node of ``width`` px: about 19 px a rendered line (5 px a character; Nodes 2.0 spaces lines more), a long line wrapped."""
    chars_per_line = max(20, (width - 40) // 5)
    shown = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", note)  # a link shows its text
    lines = sum(max(1, -(-len(line) // chars_per_line)) for line in shown.splitlines())
    return 60 + 19 * lines


def _fit_view(nodes: list[dict], screen=(1500, 880), margin=(70, 110)) -> dict:
    """The canvas view (``extra.ds``) that shows the whole graph on a 1920x1080 browser window, results included
    (screen position = (canvas position + offset) * scale; ``margin`` keeps clear of the frontend's side and top
    bars, ``screen`` of the minimap in the bottom right corner). Frontends that fit a template to the window
    themselves (1.48) ignore it; older ones (1.27) open the template with it."""
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = round(max(0.6, min(1.0, screen[0] / right, screen[1] / bottom)), 3)  # below ~0.58 the frontend hides text
    return {"scale": scale, "offset": [round(margin[0] / scale), round(margin[1] / scale)]}


# Template thumbnails: real outputs of the demo model (python -m rgbd_world.demo --out DIR), each card its task's
# input(s) on top and result(s) below, every picture labelled. A tile: (label, demo file) or (label, "prompt", sample)
# for the caption of a joint-generation sample, or (label, "3d", folder, sample) for the lifted mesh of a pair.
THUMBNAILS = {
    "joint_generation": ([("prompt", "prompt", "00")], [("image", "joint_generation/00_rgb.png"), ("depth", "joint_generation/00_depth_color.png")]),
    "depth_estimation": ([("photo", "depth_estimation/00_input.png"), ("photo", "depth_estimation/01_input.png")],
                         [("depth", "depth_estimation/00_depth_color.png"), ("depth", "depth_estimation/01_depth_color.png")]),
    "depth_estimation_any_size": ([("photo, any size", "depth_estimation/02_input.png"), ("photo", "depth_estimation/03_input.png")],
                                  [("depth (16-bit)", "depth_estimation/02_depth_color.png"), ("depth", "depth_estimation/03_depth_color.png")]),
    "depth_estimation_wide": ([("wide photo", "wide/00_input.png")], [("depth, tiles", "wide/00_depth_color.png")]),  # rgbd_world.evaluation.windows --tiles-figure
    "depth_to_image": ([("depth map", "depth_to_image/00_input_depth_color.png"), ("depth map", "depth_to_image/01_input_depth_color.png")],
                       [("new image", "depth_to_image/00_rgb.png"), ("new image", "depth_to_image/01_rgb.png")]),
    "inpaint_rgbd": ([("photo + mask", "inpainting/00_input.png")], [("image", "inpainting/00_rgb.png"), ("depth", "inpainting/00_depth_color.png")]),
    "outpaint_rgbd": ([("photo", "outpainting/00_input.png")], [("wider image", "outpainting/00_rgb.png"), ("depth", "outpainting/00_depth_color.png")]),
    "depth_completion": ([("photo", "depth_completion/00_input.png"), ("sparse depth", "depth_completion/00_sparse_depth_color.png")],
                         [("filled depth", "depth_completion/00_depth_color.png")]),
    "joint_generation_3d": ([("prompt", "prompt", "00")], [("image", "joint_generation/00_rgb.png"), ("3D", "3d", "joint_generation", "00")]),
    "depth_estimation_3d": ([("photo", "depth_estimation/00_input.png")], [("depth", "depth_estimation/00_depth_color.png"), ("3D", "3d", "depth_estimation", "00")]),
}
THUMBNAIL_SIZE, TILE = 400, 180


def _tile_image(demo_output: Path, tile: tuple, summary: dict):
    """The picture of one thumbnail tile (TILE x TILE, RGB)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    if tile[1] == "prompt":  # the caption, as the prompt box shows it
        caption = summary["joint_generation"][int(tile[2])]["caption"]
        image = Image.new("RGB", (TILE, TILE), (34, 34, 34))
        draw, font, lines, line = ImageDraw.Draw(image), ImageFont.load_default(size=20), [], ""
        for word in f'"{caption}"'.split():
            if line and draw.textlength(f"{line} {word}", font=font) > TILE - 24:
                lines, line = lines + [line], word
            else:
                line = f"{line} {word}".strip()
        for k, text in enumerate(lines + [line]):
            draw.text((12, 40 + 26 * k), text, fill=(235, 235, 235), font=font)
        return image
    if tile[1] == "3d":  # the pair lifted to a mesh, seen 35 degrees from the side (as the 3D view can show it)
        sys.path.insert(0, str(ROOT))
        from rgbd_world.figures.lift_world import WORLD_NEAR, new_view
        from rgbd_world.world.scenes import FAR

        folder, sample = tile[2], tile[3]
        rgb_name = "rgb" if folder == "joint_generation" else "input"
        rgb = np.asarray(Image.open(demo_output / folder / f"{sample}_{rgb_name}.png").convert("RGB"))
        disparity = np.asarray(Image.open(demo_output / folder / f"{sample}_depth.png").convert("L"), np.float32) / 255
        return Image.fromarray(new_view(rgb, disparity, WORLD_NEAR, FAR)).resize((TILE, TILE), Image.Resampling.BICUBIC)
    return Image.open(demo_output / tile[1]).convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC)


def write_thumbnails(demo_output: Path) -> None:
    """``example_workflows/<template>.jpg`` (400x400 JPEG, the size of ComfyUI's own template cards) from a demo
    output folder: the task's inputs on top, an arrow, its results below, each picture labelled. Needs Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    summary = json.loads((demo_output / "summary.json").read_text())
    font = ImageFont.load_default(size=15)
    for name, rows in THUMBNAILS.items():
        card = Image.new("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE), (24, 24, 24))
        draw = ImageDraw.Draw(card)
        for r, tiles in enumerate(rows):
            top = 8 + r * (TILE + 32)
            for k, tile in enumerate(tiles):
                left = (THUMBNAIL_SIZE - len(tiles) * TILE - (len(tiles) - 1) * 16) // 2 + k * (TILE + 16)
                card.paste(_tile_image(demo_output, tile, summary), (left, top))
                draw.rectangle((left, top + TILE - 22, left + TILE - 1, top + TILE - 1), fill=(0, 0, 0))
                draw.text((left + 6, top + TILE - 20), tile[0], fill=(255, 255, 255), font=font)
        middle = THUMBNAIL_SIZE // 2
        draw.polygon([(middle - 12, 8 + TILE + 6), (middle + 12, 8 + TILE + 6), (middle, 8 + TILE + 26)], fill=(90, 170, 255))
        path = ROOT / "example_workflows" / f"{TEMPLATES[name]}.jpg"
        card.save(path, quality=88)
        print("wrote", path.relative_to(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--object-info", type=Path, help="JSON saved from GET /object_info of a ComfyUI with this pack")
    source.add_argument("--server", help="URL of a running ComfyUI with this pack")
    source.add_argument("--thumbnails", type=Path, help="only write the template thumbnails from this demo output folder (python -m rgbd_world.demo --out DIR)")
    args = parser.parse_args()
    if args.thumbnails:
        write_thumbnails(args.thumbnails)
        return
    if args.server:
        with urllib.request.urlopen(args.server.rstrip("/") + "/object_info") as response:
            object_info = json.load(response)
    else:
        object_info = json.loads(args.object_info.read_text())
    templates = ROOT / "example_workflows"
    for stale in templates.glob("*.json"):  # templates of an earlier naming
        if stale.stem not in TEMPLATES.values():
            stale.unlink()
            stale.with_suffix(".jpg").unlink(missing_ok=True)
    for name, graph in WORKFLOWS.items():
        ui = json.dumps(to_ui(graph, object_info, name), indent=1) + "\n"
        for path, text in ((ROOT / "workflows" / "api" / f"{name}.json", json.dumps(graph, indent=1) + "\n"),
                           (ROOT / "workflows" / "ui" / f"{name}.json", ui),
                           (templates / f"{TEMPLATES[name]}.json", ui)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))

if __name__ == "__main__":
    main()
