"""Write the pack's example workflows in API format and in UI (drag-and-drop) format.

The graphs are defined once below in API format; the UI files are derived from them with the widget
order that a running ComfyUI reports in ``/object_info`` (so the two formats cannot drift apart).

    python scripts/make_workflows.py --object-info object_info.json   # saved from GET /object_info
    python scripts/make_workflows.py --server http://127.0.0.1:8188

Writes ``workflows/api/<name>.json``, ``workflows/ui/<name>.json`` and a copy of the UI file in
``example_workflows/<name>.json`` (the folder ComfyUI lists as the pack's templates).
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


def _sampler(task: str, **extra) -> dict:
    inputs = dict(
        model=["2", 0], positive=["5", 0], task=task, seed=42, steps=20, schedule="flux_shifted", cfg=1.0, asw_strength=1.0,
        width=512, height=512, batch_size=1, rgb_start=1.0, rgb_end=0.0, depth_start=1.0, depth_end=0.0,
    )
    inputs.update(extra)
    return _node("JointSampler", "JointDiT Sampler", **inputs)


def _decode_depth(samples) -> dict:
    return _node("DecodeDepth", "Decode Depth", vae=["6", 0], samples=samples, depth_transform="auto", colormap="turbo", model=["2", 0])


WORKFLOWS = {
    "joint_generation": {
        **_common("a cozy reading corner with a leather armchair by a window, warm afternoon light"),
        "7": _sampler("joint_generation"),
        "8": _node("VAEDecode", "Decode image", samples=["7", 0], vae=["6", 0]),
        "9": _decode_depth(["7", 1]),
        "10": _node("SaveImage", "Save image", images=["8", 0], filename_prefix="JointDiT/joint_rgb"),
        "11": _node("SaveImage", "Save depth", images=["9", 0], filename_prefix="JointDiT/joint_depth"),
        "12": _node("PreviewImage", "Depth (colour)", images=["9", 2]),
    },
    "depth_estimation": {
        **_common(" "),  # the official depth-estimation prompt is a single space
        "7": _node("LoadImage", "Photo", image="example.png"),
        "8": _node("ImageScale", "Resize to a multiple of 16", image=["7", 0], upscale_method="lanczos", width=512, height=512, crop="center"),
        "9": _node("VAEEncode", "Encode photo", pixels=["8", 0], vae=["6", 0]),
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
    "depth_to_image": {
        **_common("a sunlit living room with wooden floor and large plants"),
        "7": _node("LoadImage", "Depth map (near = bright)", image="example.png"),
        "8": _node("ImageScale", "Resize to a multiple of 16", image=["7", 0], upscale_method="lanczos", width=512, height=512, crop="center"),
        "9": _node("EncodeDepth", "Encode depth", vae=["6", 0], depth_transform="auto", near_is_bright=True, normalize=True, depth=["8", 0], model=["2", 0]),
        "10": _sampler("depth_to_image", depth=["9", 0]),
        "11": _node("VAEDecode", "Decode image", samples=["10", 0], vae=["6", 0]),
        "12": _node("SaveImage", "Save image", images=["11", 0], filename_prefix="JointDiT/depth_to_image"),
    },
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
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_values(info: dict, inputs: dict) -> list:
    """``widgets_values`` of a UI node: widget inputs in order, plus the frontend's extra values
    (``control_after_generate`` after a seed, the upload button after an image combo)."""
    values = []
    for name, spec, _ in _inputs_in_order(info):
        if not _is_widget(spec):
            continue
        options = spec[1] if len(spec) > 1 else {}
        values.append(inputs.get(name, options.get("default")))
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


def to_ui(graph: dict, object_info: dict) -> dict:
    """The UI (LiteGraph) workflow of an API-format graph."""
    links, nodes = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    in_link: dict[tuple[str, str], int] = {}
    for nid, node in graph.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                link_id = len(links) + 1
                info = object_info[graph[value[0]]["class_type"]]
                links.append([link_id, int(value[0]), value[1], int(nid), None, info["output"][value[1]]])
                out_links.setdefault((value[0], value[1]), []).append(link_id)
                in_link[(nid, name)] = link_id
    cols = _columns(graph)
    rows: dict[int, int] = {}
    for nid in sorted(graph, key=int):
        node = graph[nid]
        info = object_info[node["class_type"]]
        sockets = []
        for name, spec, optional in _inputs_in_order(info):
            if _is_widget(spec):
                continue
            link = in_link.get((nid, name))
            entry = {"name": name, "type": spec[0], "link": link}
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
        col = cols[nid]
        row = rows.get(col, 0)
        widgets = widget_values(info, node["inputs"])
        height = 46 + 24 * max(len(sockets), len(outputs)) + 26 * len(widgets)
        rows[col] = row + height + 40
        nodes.append({
            "id": int(nid), "type": node["class_type"], "pos": [40 + 380 * col, 40 + row], "size": [340, height],
            "flags": {}, "order": 0, "mode": 0, "inputs": sockets, "outputs": outputs,
            "title": node["_meta"]["title"], "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets,
        })
    for order, node in enumerate(sorted(nodes, key=lambda n: (cols[str(n["id"])], n["id"]))):
        node["order"] = order
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "ComfyUI-JointDiT/" + json.dumps(graph, sort_keys=True))),
        "revision": 0, "last_node_id": max(int(n) for n in graph), "last_link_id": len(links),
        "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--object-info", type=Path, help="JSON saved from GET /object_info of a ComfyUI with this pack")
    source.add_argument("--server", help="URL of a running ComfyUI with this pack")
    args = parser.parse_args()
    if args.server:
        with urllib.request.urlopen(args.server.rstrip("/") + "/object_info") as response:
            object_info = json.load(response)
    else:
        object_info = json.loads(args.object_info.read_text())
    for name, graph in WORKFLOWS.items():
        ui = json.dumps(to_ui(graph, object_info), indent=1) + "\n"
        for path, text in ((ROOT / "workflows" / "api" / f"{name}.json", json.dumps(graph, indent=1) + "\n"),
                           (ROOT / "workflows" / "ui" / f"{name}.json", ui),
                           (ROOT / "example_workflows" / f"{name}.json", ui)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
