"""The 3D lifting node (JointDiT RGB-D to 3D) inside ComfyUI: files in the output folder, ComfyUI's 3D preview.

In-process tests call the node as ComfyUI does; what its outputs feed (Preview3D's ``model_file``, the
File3D types of newer releases) is checked against the running release's own 3D nodes.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch
from comfyui_harness import PACK_NAME, load_pack

trimesh = pytest.importorskip("trimesh", reason="the 3D node writes files with trimesh: pip install trimesh in ComfyUI's Python")


@pytest.fixture(scope="module")
def lift3d():
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.nodes.lift3d")


@pytest.fixture
def output_dir(tmp_path):
    import folder_paths

    before = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_output_directory(before)


def _pair(batch: int = 1, h: int = 24, w: int = 32):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, h, w, 3, generator=g)
    disparity = torch.where(torch.arange(w) < w // 2, 0.9, 0.2).expand(batch, h, w)  # a depth step
    return image, disparity[..., None].expand(batch, h, w, 3).contiguous()


def _run(lift3d, image, depth, **overrides):
    kwargs = dict(fov_degrees=60.0, near=1.0, far=10.0, edge_threshold=0.03, background_threshold=0.0, filename_prefix="JointDiT/3d")
    kwargs.update(overrides)
    return lift3d.RGBDTo3D.execute(image, depth, **kwargs)


def test_node_writes_glb_and_ply_into_the_output_folder(lift3d, output_dir):
    image, depth = _pair(batch=2)
    out = _run(lift3d, image, depth)
    glb_path, ply_path = out.args[0], out.args[1]
    assert glb_path == "JointDiT/3d_00001_.glb" and ply_path == "JointDiT/3d_00001_.ply"
    files = out.ui["3d"]
    assert [f["filename"] for f in files] == ["3d_00001_.glb", "3d_00001_.ply", "3d_00002_.glb", "3d_00002_.ply"]
    assert all(f["subfolder"] == "JointDiT" and f["type"] == "output" for f in files)
    cloud = trimesh.load(output_dir / ply_path)
    assert len(cloud.vertices) == 24 * 32
    colours = np.round(image[0].numpy().reshape(-1, 3) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(cloud.colors)[:, :3], colours)
    mesh = next(iter(trimesh.load(output_dir / glb_path, process=False).geometry.values()))
    assert len(mesh.vertices) == 24 * 32 and len(mesh.faces) == 2 * 23 * 31 - 2 * 23  # the step's cells dropped
    assert np.array_equal(np.asarray(mesh.visual.vertex_attributes["color"])[:, :3], colours)  # COLOR_0 beside the unlit material
    again = _run(lift3d, image[:1], depth[:1])  # the counter goes on, as in Save Image
    assert again.args[0] == "JointDiT/3d_00003_.glb"


def test_an_equirectangular_panorama_lifts_to_a_closed_sphere_around_the_viewer(lift3d, output_dir):
    """projection equirectangular: every point at its depth from the centre (a constant map -> one radius), and
    the wrap seam closed (more triangles than the open grid has)."""
    h, w = 16, 32
    image = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(1))
    depth = torch.full((1, h, w, 3), 0.5)
    out = _run(lift3d, image, depth, normalize=False, edge_threshold=0.0, projection="equirectangular")
    cloud = trimesh.load(output_dir / out.args[1])
    radii = np.linalg.norm(np.asarray(cloud.vertices), axis=1)
    assert np.allclose(radii, radii[0], rtol=1e-5)  # disparity 0.5 everywhere: one depth, one sphere
    mesh = next(iter(trimesh.load(output_dir / out.args[0], process=False).geometry.values()))
    assert len(mesh.faces) == 2 * (h - 1) * w  # the grid's 2 (h-1)(w-1) cells plus 2 (h-1) across the seam
    open_grid = _run(lift3d, image, depth, normalize=False, edge_threshold=0.0)  # the default: a perspective photo
    assert len(next(iter(trimesh.load(output_dir / open_grid.args[0], process=False).geometry.values())).faces) == 2 * (h - 1) * (w - 1)


def test_outputs_feed_comfyuis_own_3d_preview(lift3d, output_dir):
    from comfy_extras import nodes_load_3d

    out = _run(lift3d, *_pair())
    preview = nodes_load_3d.Preview3D
    if hasattr(preview, "define_schema"):  # V3 node (0.28.1): model_file takes a STRING or a File3D
        result = preview.execute(out.args[0]).ui.as_dict()["result"]
    else:  # V1 node (0.3.64): model_file is a STRING
        result = preview().process(out.args[0])["ui"]["result"]
    assert result[0] == out.args[0] and (output_dir / result[0]).is_file()
    if lift3d.HAS_FILE3D:
        from comfy_api.latest import io

        names = [o.io_type for o in lift3d.RGBDTo3D.define_schema().outputs]
        assert names == ["STRING", "STRING", io.File3DGLB.io_type, io.File3DPLY.io_type]
        model_3d, point_cloud = out.args[2], out.args[3]
        assert model_3d.format == "glb" and point_cloud.format == "ply"
        assert model_3d.get_bytes() == (output_dir / out.args[0]).read_bytes()
        result = preview.execute(model_3d).ui.as_dict()["result"]  # Preview3D copies a File3D into the output folder
        assert (output_dir / result[0]).read_bytes() == model_3d.get_bytes()
        if hasattr(nodes_load_3d, "PreviewPointCloud"):
            accepted = next(i for i in nodes_load_3d.PreviewPointCloud.define_schema().inputs if i.id == "model_3d").get_io_type()
            assert io.File3DPLY.io_type in accepted.split(",")
    else:
        assert len(out.args) == 2


def test_node_errors_are_clear(lift3d, output_dir):
    image, depth = _pair()
    with pytest.raises(ValueError, match="must be the same size"):
        _run(lift3d, image, depth[:, :, :16])
    nan_depth = depth.clone()
    nan_depth[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _run(lift3d, image, nan_depth)
    with pytest.raises(ValueError, match="equal batches"):
        _run(lift3d, torch.cat([image] * 2), torch.cat([depth] * 3))
    with pytest.raises(ValueError, match="near must be smaller than far"):
        _run(lift3d, image, depth, near=5.0, far=2.0)
    assert not any(os.scandir(output_dir))  # nothing written for a refused input


# ---- the shipped 3D workflows on a headless ComfyUI server (the server fixture of test_comfyui_server)

from test_comfyui_server import _make_workflows_module, adapted_graph, server  # noqa: E402,F401  (server: module-scoped fixture)

from comfyui_harness import REPO  # noqa: E402

WORKFLOWS_3D = ["joint_generation_3d", "depth_estimation_3d"]


@pytest.mark.parametrize("name", WORKFLOWS_3D)
def test_3d_workflow_runs_headless_and_writes_its_files(server, name):  # noqa: F811
    graph = adapted_graph(name)
    lift = next(nid for nid, node in graph.items() if node["class_type"] == "JointDiTRGBDTo3D")
    preview = next(nid for nid, node in graph.items() if node["class_type"] == "Preview3D")
    assert graph[preview]["inputs"]["model_file"] == [lift, 0]
    graph[lift]["inputs"].update(filename_prefix=f"test/{name}", edge_threshold=0.0)  # random test weights: keep every triangle
    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{server.log_tail()}"
    files = entry["outputs"][lift]["3d"]
    assert [f["filename"].rsplit(".", 1)[1] for f in files] == ["glb", "ply"]
    paths = [server.base / "output" / f["subfolder"] / f["filename"] for f in files]
    mesh = next(iter(trimesh.load(paths[0], process=False).geometry.values()))
    assert len(mesh.vertices) == 128 * 128 and len(mesh.faces) == 2 * 127 * 127
    assert len(trimesh.load(paths[1]).vertices) == 128 * 128
    shown = entry["outputs"][preview]["result"][0]  # what Preview 3D's viewer loads from the output folder
    assert shown == f"test/{paths[0].name}" and (server.base / "output" / shown).is_file()


def test_3d_ui_workflows_have_the_3d_preview_linked(server):  # noqa: F811
    import json

    info = server.get("/object_info")
    assert "JointDiTRGBDTo3D" in info and "Preview3D" in info
    templates = _make_workflows_module().TEMPLATES
    for name in WORKFLOWS_3D:
        ui = json.loads((REPO / "example_workflows" / f"{templates[name]}.json").read_text())
        assert ui == json.loads((REPO / "workflows" / "ui" / f"{name}.json").read_text())
        nodes = {node["type"]: node for node in ui["nodes"]}
        assert all(node_type in info for node_type in nodes if node_type != "MarkdownNote")
        socket = next(i for i in nodes["Preview3D"]["inputs"] if i["name"] == "model_file")
        link = next(link for link in ui["links"] if link[0] == socket["link"])
        assert socket["widget"] == {"name": "model_file"}
        assert link[1] == nodes["JointDiTRGBDTo3D"]["id"] and link[2] == 0 and link[5] == "STRING"
        assert (REPO / "example_workflows" / f"{templates[name]}.jpg").is_file()  # the template card's thumbnail
