"""Write the pack's example workflows in API format and in UI (drag-and-drop) format.

The graphs are defined once below in API format; the UI files are derived from them with the widget
order that a running ComfyUI reports in ``/object_info`` (so the two formats cannot drift apart).

    python scripts/make_workflows.py --object-info object_info.json   # saved from GET /object_info
    python scripts/make_workflows.py --server http://127.0.0.1:8188
    python scripts/make_workflows.py --thumbnails demo_output                  # after bash scripts/demo.sh

Writes ``workflows/api/<name>.json``, ``workflows/ui/<name>.json`` and a copy of the UI file in
``example_workflows/<name>.json`` (the folder ComfyUI lists as the pack's templates). The template
thumbnails ``example_workflows/<name>.jpg`` are pictures of real outputs, made separately.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _node(class_type: str, title: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


# Model download metadata of the loader nodes (``properties.models``, the format of ComfyUI's own templates):
# the frontend offers these downloads when a file is missing. The JointDiT addon is not listed: its
# file name on the official model page is not fixed (see the README) and it needs its .json sidecar, so
# the Note node of every workflow says where to get it.
MODELS = {
    "flux1-dev.safetensors": ("https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    "clip_l.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    "ae.safetensors": ("https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors", "vae"),
}
OUTPUT_NODES = {"SaveImage", "PreviewImage", "Preview3D", "JointDiTSaveDepth"}

NOTE = """## JointDiT: model files

Put these files in ComfyUI's `models` folders (the loaders use these names):

| file | folder |
| --- | --- |
| [flux1-dev.safetensors](https://huggingface.co/black-forest-labs/FLUX.1-dev) | `diffusion_models/` |
| [ae.safetensors](https://huggingface.co/black-forest-labs/FLUX.1-dev) | `vae/` |
| [clip_l.safetensors, t5xxl_fp16.safetensors](https://huggingface.co/comfyanonymous/flux_text_encoders) | `text_encoders/` |
| JointDiT addon + its `.json` sidecar, from [byungki-kwon/JointDiT](https://huggingface.co/byungki-kwon/JointDiT) | `jointdit/` |

Name the addon `jointdit_addons.safetensors` (or pick yours in *Load JointDiT*) and keep the `.json` next to it.
FLUX.1-dev is gated: accept its license on Hugging Face first. Latent previews: start ComfyUI with
`--preview-method auto`. More: the pack's README.
"""


def _common(prompt: str) -> dict:
    """Loaders shared by every workflow: official file names in the standard ComfyUI folders."""
    return {
        "1": _node("UNETLoader", "Load FLUX.1-dev", unet_name="flux1-dev.safetensors", weight_dtype="default"),
        "2": _node("LoadJointDiT", "Load JointDiT", model=["1", 0], addon_name="jointdit_addons.safetensors"),
        "3": _node("DualCLIPLoader", "Load CLIP-L + T5-XXL", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors", type="flux", device="default"),
        "4": _node("CLIPTextEncode", "Prompt", text=prompt, clip=["3", 0]),
        "5": _node("FluxGuidance", "Guidance 3.5", conditioning=["4", 0], guidance=3.5),
        "6": _node("VAELoader", "Load FLUX.1 autoencoder", vae_name="ae.safetensors"),
    }


def _sampler(task: str, positive=("5", 0), **latents) -> dict:
    return _node("JointSampler", "JointDiT Sampler", model=["2", 0], positive=list(positive), task=task, seed=42, steps=20, **latents)


def _decode_depth(samples) -> dict:
    return _node("DecodeDepth", "Decode Depth", vae=["6", 0], samples=samples, depth_transform="auto", colormap="turbo", model=["2", 0])


def _photo(first: int) -> dict:
    """LoadImage (ComfyUI's sample ``example.png``) -> 512x512 -> VAEEncode, as nodes ``first`` .. ``first + 2``."""
    a, b, c = (str(first + i) for i in range(3))
    return {
        a: _node("LoadImage", "Photo", image="example.png"),
        b: _node("ImageScale", "Resize to a multiple of 16", image=[a, 0], upscale_method="lanczos", width=512, height=512, crop="center"),
        c: _node("VAEEncode", "Encode photo", pixels=[b, 0], vae=["6", 0]),
    }


def _photo_depth(first: int, latent) -> dict:
    """Depth estimation of the encoded photo ``latent`` with the official prompt (a single space), as nodes
    ``first`` .. ``first + 2``: prompt, guidance, sampler (its output 1 is the depth LATENT)."""
    a, b, c = (str(first + i) for i in range(3))
    return {
        a: _node("CLIPTextEncode", "Depth-estimation prompt (a single space)", text=" ", clip=["3", 0]),
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
    # The depth map comes from the photo (depth estimation), through Encode Depth: connect your own depth map
    # (Load Image, Depth Anything, a ControlNet preprocessor) to Encode Depth's 'depth' input instead.
    "depth_to_image": {
        **_common("a sunlit living room with wooden floor and large plants"),
        **_photo(7),
        **_photo_depth(10, ["9", 0]),
        "13": _decode_depth(["12", 1]),
        "14": _node("EncodeDepth", "Encode depth (or your own depth map)", vae=["6", 0], depth_transform="auto", near_is_bright=True, normalize=True, depth=["13", 0], model=["2", 0]),
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
        b: _node("ImageScale", "Resize the mask like the photo", image=[a, 0], upscale_method="nearest-exact", width=512, height=512, crop="center"),
        c: _node("ImageToMask", "Mask (1 = regenerate)", image=[b, 0], channel="red"),
    }


# Masks: a LATENT's noise_mask (SetLatentNoiseMask, 1 = regenerate) is honoured per branch by JointSampler.
WORKFLOWS["inpaint_rgbd"] = {  # repaint a region of a photo (paint the mask on Load Image) and get the matching depth
    **_common("a large potted plant"),
    **_photo(7),
    **_scaled_mask(10, ["7", 1]),
    "13": _node("SetLatentNoiseMask", "Photo: regenerate inside the mask", samples=["9", 0], mask=["12", 0]),
    **_photo_depth(14, ["9", 0]),
    "17": _node("SetLatentNoiseMask", "Depth: regenerate inside the mask", samples=["16", 1], mask=["12", 0]),
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
    "10": _node("JointDiTLoadDepth", "Sparse depth (0 = missing)", file="sparse_depth.png", normalize=True, zero_is_missing=True),
    "11": _node("ImageScale", "Resize the depth like the photo", image=["10", 0], upscale_method="nearest-exact", width=512, height=512, crop="center"),
    **_scaled_mask(12, ["10", 1]),
    "15": _node("InvertMask", "Missing pixels (1 = generate)", mask=["14", 0]),
    "16": _node("EncodeDepth", "Encode depth (metric depth files: near_is_bright off)", vae=["6", 0], depth_transform="auto", near_is_bright=True,
                normalize=True, depth=["11", 0], model=["2", 0], valid_mask=["14", 0]),
    "17": _node("SetLatentNoiseMask", "Depth: fill where missing", samples=["16", 0], mask=["15", 0]),
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
    "14": _node("ImagePadForOutpaint", "Pad the photo (sizes: multiples of 16)", image=["8", 0], **PAD, feathering=24),
    "15": _node("ImagePadForOutpaint", "Pad the depth map the same way", image=["13", 0], **PAD, feathering=0),
    "16": _node("VAEEncode", "Encode padded photo", pixels=["14", 0], vae=["6", 0]),
    "17": _node("EncodeDepth", "Encode padded depth", vae=["6", 0], depth_transform="auto", near_is_bright=True, normalize=True, depth=["15", 0], model=["2", 0]),
    "18": _node("SetLatentNoiseMask", "Photo: generate the new canvas", samples=["16", 0], mask=["14", 1]),
    "19": _node("SetLatentNoiseMask", "Depth: generate the new canvas", samples=["17", 0], mask=["14", 1]),
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
def _with_3d(graph: dict, image_from: str, prefix: str) -> dict:
    """``graph`` plus RGBDTo3D (image: the first ``image_from`` node; depth: DecodeDepth's depth) and Preview3D."""
    first = lambda class_type: next(nid for nid, node in graph.items() if node["class_type"] == class_type)  # noqa: E731
    lift, preview = str(max(int(n) for n in graph) + 1), str(max(int(n) for n in graph) + 2)
    return {
        **graph,
        lift: _node("JointDiTRGBDTo3D", "RGB-D to 3D", image=[first(image_from), 0], depth=[first("DecodeDepth"), 0], fov_degrees=60.0,
                    near=1.0, far=10.0, edge_threshold=0.03, background_threshold=0.0, filename_prefix=prefix, depth_kind="disparity",
                    normalize=True, glb_content="mesh", texture=False, stride=1),
        preview: _node("Preview3D", "3D view (drag to orbit)", model_file=[lift, 0]),
    }


WORKFLOWS["joint_generation_3d"] = _with_3d(WORKFLOWS["joint_generation"], "VAEDecode", "JointDiT/joint_3d")
WORKFLOWS["depth_estimation_3d"] = _with_3d(WORKFLOWS["depth_estimation"], "ImageScale", "JointDiT/depth_3d")


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


NOTE_ID, NOTE_SIZE = 100, [640, 340]
NODE_WIDTH, COLUMN, GAP = 300, 340, 40
OUTPUT_SIZE = [400, 470]  # room for a result below the widgets: an output node never needs to grow over another node
PREVIEW_HEIGHT = {"LoadImage": 440, "JointDiTLoadDepth": 480}  # nodes that show their input image: room for it (the frontend grows them otherwise)
# Long graphs are folded into bands (rows of columns) so that the whole graph reads at a zoom that still shows
# text: node id -> band (default 0).
BANDS = {"depth_to_image": {"4": 1, "5": 1, "14": 1, "15": 1, "16": 1, "17": 1}}


def _properties(node: dict) -> dict:
    properties = {"Node name for S&R": node["class_type"]}
    models = [
        {"name": v, "url": MODELS[v][0], "directory": MODELS[v][1]}
        for v in node["inputs"].values() if isinstance(v, str) and v in MODELS
    ]
    if models:
        properties["models"] = models
    return properties


def to_ui(graph: dict, object_info: dict, name: str = "") -> dict:
    """The UI (LiteGraph) workflow of an API-format graph, laid out for reading after a run.

    Working nodes stand in columns by their distance from the loaders (a long graph folded into bands, see
    :data:`BANDS`); each band's output nodes (Save / Preview Image) stand side by side to its right, large,
    with nothing below them, so the images they show after a run hide no other node. A Markdown note at the
    bottom left says where the model files come from.
    """
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
    band_of = BANDS.get(name, {})
    band = {nid: band_of.get(nid, 0) for nid in graph}
    working = {nid for nid in graph if graph[nid]["class_type"] not in OUTPUT_NODES}
    dense = {}  # column within the band, without empty columns
    for b in set(band.values()):
        used = sorted({cols[nid] for nid in working if band[nid] == b})
        dense.update({nid: used.index(cols[nid]) for nid in working if band[nid] == b})
    band_cols = {b: 1 + max((dense[n] for n in working if band[n] == b), default=-1) for b in set(band.values())}
    layout: dict[str, tuple[list, list]] = {}
    band_top, bottom = 40, {}
    outputs_placed = 0  # output nodes of all bands in one row of their own, so that none stands above another node
    for b in sorted(band_cols):
        rows: dict[int, int] = {}
        for nid in sorted((n for n in graph if band[n] == b), key=int):
            node = graph[nid]
            info = object_info[node["class_type"]]
            if node["class_type"] in OUTPUT_NODES:
                x = 40 + COLUMN * max(band_cols.values()) + outputs_placed * (OUTPUT_SIZE[0] + GAP)
                layout[nid] = ([x, band_top], list(OUTPUT_SIZE))
                outputs_placed += 1
                continue
            sockets = sum(1 for _, spec, _ in _inputs_in_order(info) if not _is_widget(spec))
            height = 46 + 24 * max(sockets, len(info["output"])) + 26 * len(widget_values(info, node["inputs"]))
            height = max(height, PREVIEW_HEIGHT.get(node["class_type"], 0))
            col = dense[nid]
            layout[nid] = ([40 + COLUMN * col, band_top + rows.get(col, 0)], [NODE_WIDTH, height])
            rows[col] = rows.get(col, 0) + height + GAP
        bottom[b] = {col: band_top + height for col, height in rows.items()}
        band_top = max([band_top + OUTPUT_SIZE[1] + GAP] + [band_top + h for h in rows.values()]) + GAP
    last = max(bottom)
    note_pos = [40, max(bottom[last].get(0, 40), bottom[last].get(1, 40)) + GAP]
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
        "id": NOTE_ID, "type": "MarkdownNote", "pos": note_pos, "size": NOTE_SIZE, "flags": {}, "order": len(nodes), "mode": 0,
        "inputs": [], "outputs": [], "title": "Model files", "properties": {}, "widgets_values": [NOTE],
        "color": "#432", "bgcolor": "#653",
    })
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "ComfyUI-JointDiT/" + json.dumps(graph, sort_keys=True))),
        "revision": 0, "last_node_id": NOTE_ID, "last_link_id": len(links),
        "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {"ds": _fit_view(nodes)}, "version": 0.4,
    }


def _fit_view(nodes: list[dict], screen=(1780, 900), margin=(70, 110)) -> dict:
    """The canvas view (``extra.ds``) that shows the whole graph on a 1920x1080 browser window, results included
    (screen position = (canvas position + offset) * scale; ``margin`` keeps clear of the frontend's side and top bars)."""
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = round(max(0.6, min(1.0, screen[0] / right, screen[1] / bottom)), 3)  # below ~0.58 the frontend hides text
    return {"scale": scale, "offset": [round(margin[0] / scale), round(margin[1] / scale)]}


# Template thumbnails: 2x2 grids of real outputs of the demo model (python -m rgbd_world.demo), two samples per
# card, each row the task's input or first output beside its result.
THUMBNAILS = {  # name: (demo folder, file patterns per row, samples); tiles fill a square grid row by row
    "joint_generation": ("joint_generation", ("{}_rgb.png", "{}_depth_color.png"), ("00", "01")),
    "depth_estimation": ("depth_estimation", ("{}_input.png", "{}_depth_color.png"), ("00", "01")),
    "depth_estimation_any_size": ("depth_estimation", ("{}_input.png", "{}_depth_color.png"), ("00", "01")),
    "depth_to_image": ("depth_to_image", ("{}_input_depth_color.png", "{}_rgb.png"), ("00", "01")),
    "inpaint_rgbd": ("inpainting", ("{}_input.png", "{}_rgb.png", "{}_original.png", "{}_depth_color.png"), ("00",)),
    "outpaint_rgbd": ("outpainting", ("{}_input.png", "{}_rgb.png", "{}_original.png", "{}_depth_color.png"), ("00",)),
    "depth_completion": ("depth_completion", ("{}_input.png", "{}_sparse_depth_color.png", "{}_ground_truth_color.png", "{}_depth_color.png"), ("00",)),
}
THUMBNAIL_SIZE = 400


def write_thumbnails(demo_output: Path) -> None:
    """``example_workflows/<name>.jpg`` (400x400 JPEG, the size of ComfyUI's own template thumbnails) from a
    demo output folder: the listed files of each sample, in a 2x2 grid. Needs Pillow."""
    from PIL import Image

    cell = THUMBNAIL_SIZE // 2
    for name, (folder, patterns, samples) in THUMBNAILS.items():
        grid = Image.new("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        tiles = [pattern.format(sample) for sample in samples for pattern in patterns]
        for k, tile in enumerate(tiles[:4]):
            image = Image.open(demo_output / folder / tile).convert("RGB")
            grid.paste(image.resize((cell, cell), Image.Resampling.BICUBIC), ((k % 2) * cell, (k // 2) * cell))
        path = ROOT / "example_workflows" / f"{name}.jpg"
        grid.save(path, quality=85)
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
    for name, graph in WORKFLOWS.items():
        ui = json.dumps(to_ui(graph, object_info, name), indent=1) + "\n"
        for path, text in ((ROOT / "workflows" / "api" / f"{name}.json", json.dumps(graph, indent=1) + "\n"),
                           (ROOT / "workflows" / "ui" / f"{name}.json", ui),
                           (ROOT / "example_workflows" / f"{name}.json", ui)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
