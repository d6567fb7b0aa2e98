"""The shipped one-node depth-estimation API workflow in a headless ComfyUI, on a real photo of an odd size.

Uses the server of test_comfyui_server (random FLUX.1-dev-layout models, the test conditioning node) and
``workflows/api/depth_estimation_any_size.json``: the astronaut photo resized to 133x91, processing
resolution 64, two members, two steps; the 16-bit depth file and the previews come back at 133x91. The same for
``depth_estimation_wide.json`` (tiles) on a 200x96 photo.
"""

from __future__ import annotations

import json

import numpy as np
from comfyui_harness import REPO
from PIL import Image
from test_comfyui_server import server  # noqa: F401  (fixture)

from jointdit_core.depth_files import read_depth


def _any_size_graph(base, width=133, height=91, name="depth_estimation_any_size", **settings) -> dict:
    graph = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    by_type = {node["class_type"]: nid for nid, node in graph.items()}
    photo = f"astronaut_{width}x{height}.png"
    Image.open(REPO / "tests" / "data" / "astronaut_128.png").convert("RGB").resize((width, height), Image.BICUBIC).save(base / "input" / photo)
    graph[by_type["LoadImage"]]["inputs"]["image"] = photo
    estimation = graph[by_type["JointDiTDepthEstimation"]]["inputs"]
    del graph[by_type["DualCLIPLoader"]]
    del estimation["clip"]
    graph["90"] = {"class_type": "JointDiTTestConditioning", "inputs": {"seed": 0, "tokens": 8}}
    estimation.update({"positive": ["90", 0], "processing_resolution": 64, "ensemble_size": 2, "steps": 2, **settings})
    graph[by_type["JointDiTSaveDepth"]]["inputs"]["filename_prefix"] = f"test/{name}"
    return graph, by_type


def test_any_size_depth_workflow_runs_headless(server):  # noqa: F811
    info = server.get("/object_info")
    for name in ("JointDiTDepthEstimation", "JointDiTResize", "JointDiTSaveDepth", "JointDiTLoadDepth"):
        assert name in info, name
    graph, by_type = _any_size_graph(server.base)
    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{server.log_tail()}"
    files = sorted((server.base / "output" / "test").glob("depth_estimation_any_size_*.png"))
    assert len(files) == 1
    depth = read_depth(files[0])
    assert depth.values.shape == (91, 133) and "16-bit" in depth.source
    assert len(np.unique(depth.values)) > 256  # more than 8 bits of depth levels
    for node in (n for n, v in graph.items() if v["class_type"] in ("PreviewImage", "JointDiTSaveDepth")):
        for path in server.images(entry, node):
            assert Image.open(path).size == (133, 91), (node, path)


def test_wide_photo_workflow_runs_headless_in_tiles(server):  # noqa: F811
    """workflows/api/depth_estimation_wide.json (large_photos = tiles) on a 200x96 photo at processing resolution 64:
    the resize estimate plus 5 tiles of 64 px (overlap 16), one member here to keep it short."""
    graph, by_type = _any_size_graph(server.base, 200, 96, "depth_estimation_wide", ensemble_size=1, tile_overlap=16)
    assert graph[by_type["JointDiTDepthEstimation"]]["inputs"]["large_photos"] == "tiles"
    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{server.log_tail()}"
    files = sorted((server.base / "output" / "test").glob("depth_estimation_wide_*.png"))
    assert len(files) == 1
    depth = read_depth(files[0])
    assert depth.values.shape == (96, 200) and depth.values.min() == 0 and depth.values.max() == 1
    for node in (n for n, v in graph.items() if v["class_type"] in ("PreviewImage", "JointDiTSaveDepth")):
        for path in server.images(entry, node):
            assert Image.open(path).size == (200, 96), (node, path)
