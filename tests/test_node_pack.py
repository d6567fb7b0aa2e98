"""The ComfyUI pack without ComfyUI: safe import, depth-map conventions of the depth nodes, shipped workflows.

The pack is imported the way ComfyUI imports a custom node (its ``__init__.py`` as a package), under a
unique name: its ``nodes`` folder must never shadow ComfyUI's top-level ``nodes`` module.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACK = "comfyui_jointdit_plain"
TASK_WORKFLOWS = ("joint_generation", "depth_estimation", "depth_to_image")  # one per sampler task
OFFICIAL_FILES = {"flux1-dev.safetensors", "ae.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "jointdit.safetensors"}


def _make_workflows():
    spec = importlib.util.spec_from_file_location("make_workflows", ROOT / "scripts" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make_workflows()
WORKFLOWS = tuple(MAKE.WORKFLOWS)


@pytest.fixture(scope="module")
def pack():
    if importlib.util.find_spec("comfy_api") is not None:
        pytest.skip("ComfyUI is importable here; tests/comfy covers the pack inside ComfyUI")
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def maps(pack):
    return importlib.import_module(f"{PACK}.nodes.depth_maps")


def test_pack_imports_without_comfyui_and_registers_nothing(pack):
    assert not hasattr(pack, "comfy_entrypoint")
    assert "comfy" not in sys.modules and "comfy_api" not in sys.modules
    assert f"{PACK}.nodes.extension" not in sys.modules


def test_encode_depth_pixels_follow_the_training_convention(maps):
    disparity = torch.tensor([[[2.0, 4.0], [6.0, 10.0]]])  # any range, near = large
    image = disparity[..., None].expand(1, 2, 2, 3) / 10  # a ComfyUI IMAGE from a depth pack
    pixels = maps.depth_to_vae_pixels(maps.depth_from_comfy(image))
    assert pixels.shape == (1, 2, 2, 3)
    assert torch.allclose(pixels[..., 0], torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))  # min-max, near = 1
    assert torch.equal(pixels[..., 0], pixels[..., 2])
    inverse = maps.depth_to_vae_pixels(maps.depth_from_comfy(image), depth_transform="inverse")
    assert torch.allclose(inverse, 1 - pixels)
    depth_like = maps.depth_to_vae_pixels(maps.depth_from_comfy(1 - image), near_is_bright=False)  # near = dark input
    assert torch.allclose(depth_like, pixels, atol=1e-6)
    mask = maps.depth_to_vae_pixels(maps.depth_from_comfy(disparity[0]))  # a MASK without batch dim
    assert torch.allclose(mask, pixels)
    with pytest.raises(ValueError, match="normalize"):
        maps.depth_to_vae_pixels(disparity, normalize=False)
    with pytest.raises(ValueError, match="IMAGE"):
        maps.depth_from_comfy(torch.zeros(1, 2, 2, 2, 2))


def test_encode_depth_with_a_valid_mask_fills_holes_from_known_pixels(maps):
    depth = torch.tensor([[[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 6.0]]])  # sparse: 0 = missing
    valid = (depth > 0).float()
    pixels = maps.depth_to_vae_pixels(depth, valid=valid)[..., 0]
    # normalised over the known values only (2 -> 0, 6 -> 1), holes take the nearest known value
    assert torch.allclose(pixels, torch.tensor([[[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]]]))
    two = maps.depth_to_vae_pixels(depth.expand(2, -1, -1), valid=valid)  # a batch-1 mask serves the whole batch
    assert torch.equal(two[0], two[1])
    with pytest.raises(ValueError, match="valid mask"):
        maps.depth_to_vae_pixels(depth, valid=torch.ones(1, 3, 4))


def test_decode_depth_inverts_encode_and_undoes_the_transform(maps):
    d = torch.rand(2, 5, 7)
    for transform in ("none", "inverse"):
        pixels = maps.depth_to_vae_pixels(d, normalize=False, depth_transform=transform)
        assert torch.allclose(maps.vae_pixels_to_depth(pixels, transform), d, atol=1e-6)
    noisy = torch.stack([torch.full((4, 4), 0.2), torch.full((4, 4), 0.4), torch.full((4, 4), 0.9)], dim=-1)[None]
    assert torch.allclose(maps.vae_pixels_to_depth(noisy), torch.full((1, 4, 4), 0.5))  # channel mean


def test_colormap_is_turbo_and_gray(maps):
    d = torch.tensor([[[0.0, 0.5, 1.0]]])
    turbo = maps.colorize(d, "turbo")
    assert turbo.shape == (1, 1, 3, 3)
    assert torch.allclose(turbo[0, 0, 0], torch.tensor([0.1900, 0.0718, 0.2322]))  # dark blue: far
    assert torch.allclose(turbo[0, 0, 2], torch.tensor([0.4796, 0.0158, 0.0106]))  # dark red: near
    assert turbo[0, 0, 1, 1] > 0.95  # green-yellow middle
    assert torch.equal(maps.colorize(d, "gray")[..., 1], d)
    with pytest.raises(ValueError, match="colormap"):
        maps.colorize(d, "jet")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", WORKFLOWS)
def test_ui_and_api_workflows_describe_the_same_graph(name):
    api = _load(ROOT / "workflows" / "api" / f"{name}.json")
    ui = _load(ROOT / "workflows" / "ui" / f"{name}.json")
    assert _load(ROOT / "example_workflows" / f"{MAKE.TEMPLATES[name]}.json") == ui
    notes = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
    assert len(notes) == 1 and "huggingface.co" in notes[0]["widgets_values"][0]  # where the model files come from
    nodes = {str(n["id"]): n for n in ui["nodes"] if n["type"] != "MarkdownNote"}
    assert {k: n["type"] for k, n in nodes.items()} == {k: n["class_type"] for k, n in api.items()}
    api_links = {(k, name_, tuple(v)) for k, n in api.items() for name_, v in n["inputs"].items() if isinstance(v, list)}
    ui_links = set()
    for link_id, source, slot, target, target_slot, kind in ui["links"]:
        entry = nodes[str(target)]["inputs"][target_slot]
        assert entry["link"] == link_id and kind in entry["type"].split(",")  # an input may take several types
        assert link_id in nodes[str(source)]["outputs"][slot]["links"]
        ui_links.add((str(target), entry["name"], (str(source), slot)))
    assert ui_links == api_links
    for k, node in api.items():  # every widget value of the API graph is in the UI node
        values = nodes[k]["widgets_values"]
        for value in (v for v in node["inputs"].values() if not isinstance(v, list)):
            assert value in values, (name, node["class_type"], value)


def test_workflows_use_the_official_files_and_the_pack_nodes():
    used, types = set(), set()
    for name in WORKFLOWS:
        for node in _load(ROOT / "workflows" / "api" / f"{name}.json").values():
            types.add(node["class_type"])
            used |= {v for v in node["inputs"].values() if isinstance(v, str) and v.endswith(".safetensors")}
    assert used == OFFICIAL_FILES
    assert {"LoadJointDiT", "JointSampler", "EncodeDepth", "DecodeDepth", "UNETLoader", "DualCLIPLoader", "VAELoader"} <= types
    tasks = {n["inputs"]["task"] for w in TASK_WORKFLOWS for n in _load(ROOT / "workflows" / "api" / f"{w}.json").values() if n["class_type"] == "JointSampler"}
    assert tasks == set(TASK_WORKFLOWS)


LOADER_FOLDERS = {"UNETLoader": "diffusion_models", "DualCLIPLoader": "text_encoders", "VAELoader": "vae", "LoadJointDiT": "jointdit"}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_loader_of_every_ui_workflow_carries_its_download(name):
    """The frontend's Errors panel offers a Download button for a missing file only from ``properties.models``."""
    loaders = [n for n in _load(ROOT / "workflows" / "ui" / f"{name}.json")["nodes"] if n["type"] in LOADER_FOLDERS]
    assert {n["type"] for n in loaders} == set(LOADER_FOLDERS)
    for node in loaders:
        files = [v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")]
        models = {m["name"]: m for m in node["properties"].get("models", [])}
        assert files and set(models) == set(files), (name, node["type"], files, models)
        for model in models.values():  # the frontend downloads only from these hosts and file types
            assert model["url"].startswith("https://huggingface.co/") and "/resolve/" in model["url"] and model["url"].endswith("/" + model["name"]), model
            assert model["directory"] == LOADER_FOLDERS[node["type"]]
    addon = next(n for n in loaders if n["type"] == "LoadJointDiT")["properties"]["models"]
    assert addon == [{"name": "jointdit.safetensors", "url": "https://huggingface.co/byungki-kwon/JointDiT/resolve/main/jointdit.safetensors", "directory": "jointdit"}]


def _overlaps(a: dict, b: dict) -> bool:
    (ax, ay), (aw, ah), (bx, by), (bw, bh) = a["pos"], a["size"], b["pos"], b["size"]
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


@pytest.mark.parametrize("name", WORKFLOWS)
def test_ui_workflows_are_compact_and_leave_room_for_titles_badges_and_results(name):
    ui = _load(ROOT / "workflows" / "ui" / f"{name}.json")
    nodes = ui["nodes"]
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    assert right <= MAKE.MAX_WIDTH and bottom <= MAKE.MAX_HEIGHT, (name, right, bottom)  # readable at the zoom a template opens at
    grown = lambda n: {"pos": [n["pos"][0], n["pos"][1] - 50], "size": [n["size"][0], n["size"][1] + 50]}  # noqa: E731
    for i, a in enumerate(nodes):  # no two nodes overlap, nor a node's title bar (30 px) and badges (20 px) above it
        for b in nodes[i + 1 :]:
            assert not _overlaps(grown(a), grown(b)), (name, a["title"], b["title"])
    for node in nodes:  # a title fits the node (about 7 px a character at the title font, 60 px for the badge)
        assert 7 * len(node["title"]) + 60 <= node["size"][0], (name, node["title"])
    outputs = [n for n in nodes if n["type"] in ("SaveImage", "PreviewImage", "Preview3D")]
    assert outputs
    for out in outputs:  # an output node grows downwards when it shows an image: nothing may stand below it
        assert out["size"][0] >= 340 and out["size"][1] >= 300
        below = [n for n in nodes if n is not out and n["pos"][1] > out["pos"][1] and n["pos"][0] < out["pos"][0] + out["size"][0]
                 and out["pos"][0] < n["pos"][0] + n["size"][0] and n["type"] not in ("SaveImage", "PreviewImage", "Preview3D", "MarkdownNote")]
        assert not below, (name, out["title"], [n["title"] for n in below])
    note = next(n for n in nodes if n["type"] == "MarkdownNote")["widgets_values"][0]
    assert "`" not in note  # inline code is blue on blue in the Nodes 2.0 rendering
    assert "jointdit.safetensors" in note and "optional" in note


def test_templates_have_readable_titles_in_reading_order_and_thumbnails():
    names = [MAKE.TEMPLATES[name] for name in WORKFLOWS]
    assert sorted(p.stem for p in (ROOT / "example_workflows").glob("*.json")) == sorted(names)
    assert sorted(names) == [MAKE.TEMPLATES[n] for n in MAKE.TEMPLATES]  # A to Z is the reading order
    for title in names:
        assert "_" not in title and title.startswith("JointDiT ")  # the frontend shows the file name as the title
        assert (ROOT / "example_workflows" / f"{title}.jpg").is_file()  # the template card's thumbnail


def test_depth_completion_opens_with_the_sample_the_pack_writes_into_the_input_folder(tmp_path):
    from jointdit_core.depth_files import SAMPLE_SPARSE_DEPTH, provide_sample_sparse_depth, read_depth

    api = _load(ROOT / "workflows" / "api" / "depth_completion.json")
    load = next(n for n in api.values() if n["class_type"] == "JointDiTLoadDepth")
    assert load["inputs"]["file"] == SAMPLE_SPARSE_DEPTH == MAKE.SAMPLE_SPARSE_DEPTH
    path = provide_sample_sparse_depth(tmp_path)
    assert path == tmp_path / SAMPLE_SPARSE_DEPTH
    loaded = read_depth(path, zero_is_missing=True)
    assert loaded.values.shape == (512, 512) and 0.03 < loaded.valid.mean() < 0.1  # sparse
    assert 0.03 < loaded.valid[2::4, 2::4].mean() < 0.1  # still sparse, not empty, after a nearest-neighbour resize
    rows = loaded.values.max(axis=1)
    assert rows[-4] > rows[4] > 0  # near (bright) at the bottom
    path.write_bytes(b"a user's own file")
    assert provide_sample_sparse_depth(tmp_path) is None and path.read_bytes() == b"a user's own file"  # never replaced


def test_depth_to_image_gets_its_depth_map_from_the_photo_not_from_a_sample_picture():
    api = _load(ROOT / "workflows" / "api" / "depth_to_image.json")
    encode = next(n for n in api.values() if n["class_type"] == "EncodeDepth")
    source = api[encode["inputs"]["depth"][0]]
    assert source["class_type"] == "DecodeDepth"
    sampler = api[source["inputs"]["samples"][0]]
    assert sampler["class_type"] == "JointSampler" and sampler["inputs"]["task"] == "depth_estimation"


def test_depth_maps_refuse_empty_and_tiny_images(maps):
    with pytest.raises(ValueError, match="empty"):
        maps.check_depth_size(maps.depth_from_comfy(torch.zeros(0, 32, 32, 3)), 8)
    with pytest.raises(ValueError, match="empty"):
        maps.check_depth_size(maps.depth_from_comfy(torch.zeros(0, 0)))
    with pytest.raises(ValueError, match="1x1 pixels; the smallest size that works is 16x16"):
        maps.check_depth_size(maps.depth_from_comfy(torch.rand(1, 1, 1, 3)), 8)
    with pytest.raises(ValueError, match="7x40 pixels"):
        maps.check_depth_size(torch.rand(2, 40, 7), 8)
    assert maps.check_depth_size(torch.rand(1, 8, 8), 8).shape == (1, 8, 8)
    with pytest.raises(ValueError, match="VAE decoded NaN"):
        maps.vae_pixels_to_depth(torch.full((1, 16, 16, 3), float("nan")))
