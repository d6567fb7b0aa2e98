"""A headless ComfyUI with the pack installed serves the shipped API workflows over HTTP.

The server is started like ComfyUI's own tests start it (``python main.py`` on 127.0.0.1 and a free
port), with ``--base-directory`` pointing at a temporary folder holding:

* ``custom_nodes/ComfyUI-JointDiT`` -> this repository, and a test-only node emitting fixed text
  embeddings of FLUX.1's widths (T5-XXL cannot be made small for ComfyUI's loaders);
* random models in the official file layouts under the official names: ``flux1-dev.safetensors``
  (full width, 1 double + 1 single block: the smallest FLUX that UNETLoader's detection accepts),
  ``ae.safetensors`` (full-size autoencoder), ``jointdit.safetensors`` (the official addon file's
  block-0 subset under the official download's name, without a JSON sidecar: the official defaults), a
  kohya-format LoRA;
* ``input/astronaut_128.png`` (tests/data, public domain).

The depth-estimation workflow from ``workflows/api`` is queued through ``/prompt`` with the text
nodes swapped for the test node, a 128x128 size and 2 steps; then with a LoRA, with CFG > 1, and an
interrupted run followed by a normal one.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from comfyui_harness import REPO, comfyui_path
from PIL import Image
from safetensors.torch import save_file

DATA = REPO / "tests" / "data"
BLOCK = re.compile(r"(double|single)_blocks\.(\d+)\.")
TEST_NODE = '''
import torch

class JointDiTTestConditioning:
    """Test only: fixed random FLUX.1 text conditioning (T5-XXL tokens 4096 wide, CLIP-L pooled 768)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}), "tokens": ("INT", {"default": 8, "min": 1, "max": 512})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed, tokens):
        g = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, tokens, 4096, generator=g), {"pooled_output": torch.randn(1, 768, generator=g)}]],)

NODE_CLASS_MAPPINGS = {"JointDiTTestConditioning": JointDiTTestConditioning}
'''


def _first_block_only(shapes: dict) -> dict:
    return {k: v for k, v in shapes.items() if not (m := BLOCK.match(k)) or m.group(2) == "0"}


def _random(shapes: dict, seed: int, kind: str) -> dict:
    """Random bf16 tensors: linear/conv weights ~ N(0, 1/fan_in), norms 1, biases 0; addons all non-zero."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith(".scale") or (kind == "ae" and "norm" in name and name.endswith(".weight")):
            t = torch.ones(shape)
        elif name.endswith(".bias"):
            t = torch.zeros(shape)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
            if kind == "addon":
                t *= 0.5
        out[name] = t.to(torch.bfloat16)
    return out


def _write_models(models: Path) -> None:
    keys = json.loads((DATA / "official_keys.json").read_text())
    for folder in ("diffusion_models", "vae", "jointdit", "loras", "text_encoders"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    save_file(_random(_first_block_only(keys["flux_dev_base"]), 0, "flux"), str(models / "diffusion_models" / "flux1-dev.safetensors"))
    save_file(_random(_first_block_only(keys["jointdit_addons"]), 1, "addon"), str(models / "jointdit" / "jointdit.safetensors"))
    from jointdit_core.autoencoder import AutoEncoder
    from jointdit_core.config import AutoEncoderConfig

    with torch.device("meta"):
        ae_shapes = {k: list(v.shape) for k, v in AutoEncoder(AutoEncoderConfig()).state_dict().items()}
    save_file(_random(ae_shapes, 2, "ae"), str(models / "vae" / "ae.safetensors"))
    g = torch.Generator().manual_seed(3)
    lora = {}
    for key, out_features in (("double_blocks_0_img_attn_qkv", 9216), ("single_blocks_0_linear1", 21504)):
        lora[f"lora_unet_{key}.lora_down.weight"] = (torch.randn(8, 3072, generator=g) / math.sqrt(3072)).to(torch.bfloat16)
        lora[f"lora_unet_{key}.lora_up.weight"] = (torch.randn(out_features, 8, generator=g) * 0.3).to(torch.bfloat16)
        lora[f"lora_unet_{key}.alpha"] = torch.tensor(8.0)
    save_file(lora, str(models / "loras" / "test_lora.safetensors"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Minimal HTTP client of a ComfyUI server (the /prompt, /history, /interrupt, /object_info API)."""

    def __init__(self, url: str, base: Path, log: Path):
        self.url, self.base, self.log = url, base, log

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, data: dict):
        request = urllib.request.Request(self.url + path, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                return json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode()[:2000]}") from exc

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": "jointdit-tests"})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] in ("success", "error"):
                    return entry
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s; server log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def images(self, entry: dict, node_id: str) -> list[Path]:
        found = []
        for image in entry["outputs"].get(node_id, {}).get("images", []):
            folder = {"output": "output", "temp": "temp"}[image["type"]]
            found.append(self.base / folder / image["subfolder"] / image["filename"])
        return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = comfyui_path()
    base = tmp_path_factory.mktemp("comfy_base")
    _write_models(base / "models")
    extra = base / "extra" / "jointdit_models"
    extra.mkdir(parents=True)
    os.link(base / "models" / "jointdit" / "jointdit.safetensors", extra / "extra_addons.safetensors")
    (base / "extra_model_paths.yaml").write_text(f"jointdit_test:\n    base_path: {base / 'extra'}\n    jointdit: jointdit_models\n")
    custom = base / "custom_nodes"
    custom.mkdir()
    try:
        (custom / "ComfyUI-JointDiT").symlink_to(REPO, target_is_directory=True)
    except OSError:  # no symlinks (e.g. Windows without privileges): copy what ComfyUI loads
        shutil.copytree(REPO, custom / "ComfyUI-JointDiT", ignore=shutil.ignore_patterns(".git", "tests", "__pycache__"))
    (custom / "jointdit_test_nodes.py").write_text(TEST_NODE)
    (base / "input").mkdir()
    shutil.copy(DATA / "astronaut_128.png", base / "input" / "astronaut_128.png")
    holes = Image.open(DATA / "astronaut_128.png").convert("RGBA")
    alpha = np.full((holes.height, holes.width), 255, np.uint8)
    alpha[:, : holes.width // 2] = 0  # transparent = missing: LoadImage's MASK is 1 there (regenerate)
    holes.putalpha(Image.fromarray(alpha))
    holes.save(base / "input" / "astronaut_128_holes.png")
    sparse = np.zeros((128, 128), np.uint16)  # 16-bit sparse depth: every 4th pixel of a ramp, 0 = missing
    sparse[::4, ::4] = np.linspace(1000, 60000, 128)[None, ::4].astype(np.uint16)
    Image.fromarray(sparse).save(base / "input" / "sparse_depth_128.png")
    port = _free_port()
    log = base / "server.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(path / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
             "--base-directory", str(base), "--extra-model-paths-config", str(base / "extra_model_paths.yaml")],
            cwd=str(path), stdout=log_file, stderr=subprocess.STDOUT,
        )
    client = Client(f"http://127.0.0.1:{port}", base, log)
    try:
        end = time.time() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"ComfyUI exited with {process.returncode}:\n{client.log_tail()}")
            try:
                client.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > end:
                    pytest.fail(f"ComfyUI did not start in 300 s:\n{client.log_tail()}")
                time.sleep(1)
        yield client
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _make_workflows_module():
    spec = importlib.util.spec_from_file_location("make_workflows", REPO / "scripts" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MASKED_WORKFLOWS = ("inpaint_rgbd", "depth_completion", "outpaint_rgbd")
PANORAMAS = ("panorama_360_3d",)
PANORAMA = (128, 64)  # a 360-degree panorama's (width, height) in the test: 2:1, two test windows wide
OUTPAINT_PAD = 32  # pixels added left and right by the adapted outpainting workflow


def adapted_graph(name: str, variant: str = "plain", steps: int = 2, seed: int = 42) -> dict:
    """A shipped API workflow adapted to the test models: test conditioning, the 128x128 photo, few steps."""
    graph = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    by_type = {node["class_type"]: nid for nid, node in graph.items()}
    del graph[by_type["DualCLIPLoader"]]
    for nid, node in list(graph.items()):
        if node["class_type"] == "CLIPTextEncode":
            graph[nid] = {"class_type": "JointDiTTestConditioning", "inputs": {"seed": 0, "tokens": 8}}
        elif node["class_type"] == "JointSampler":
            node["inputs"].update(steps=steps, seed=seed)
        elif node["class_type"] == "JointSamplerWindows":  # windows of the test size, as 1024 px are FLUX.1-dev's
            node["inputs"].update(steps=steps, seed=seed, window_width=PANORAMA[0] // 2, window_height=PANORAMA[0] // 2, overlap=32)
        elif node["class_type"] == "EmptySD3LatentImage" and name in PANORAMAS:
            node["inputs"].update(width=PANORAMA[0], height=PANORAMA[1])
        elif node["class_type"] in ("ImageScale", "EmptySD3LatentImage"):
            node["inputs"].update(width=128, height=128)
        elif node["class_type"] == "ImagePadForOutpaint":
            node["inputs"].update(left=OUTPAINT_PAD, right=OUTPAINT_PAD)
        elif node["class_type"] == "JointDiTLoadDepth":
            node["inputs"]["file"] = "sparse_depth_128.png"
    for node in graph.values():
        if node["class_type"] == "LoadImage":  # the masked workflows' photo / sparse depth: the left half transparent
            node["inputs"]["image"] = "astronaut_128_holes.png" if name in MASKED_WORKFLOWS else "astronaut_128.png"
    sampler = graph[by_type.get("JointSampler") or by_type["JointSamplerWindows"]]["inputs"]
    for node in graph.values():
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = f"test/{name}_{variant}_{node['inputs']['filename_prefix'].split('/')[-1]}"
    if variant == "lora":
        joint = by_type["LoadJointDiT"]
        for node in graph.values():
            for key, value in node["inputs"].items():
                if value == [joint, 0]:
                    node["inputs"][key] = ["90", 0]
        graph["90"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": [joint, 0], "lora_name": "test_lora.safetensors", "strength_model": 1.0}}
    if variant == "cfg":
        graph["91"] = {"class_type": "JointDiTTestConditioning", "inputs": {"seed": 1, "tokens": 8}}
        sampler.update(cfg=2.5, negative=["91", 0])
    return graph


def depth_graph(variant: str = "plain", steps: int = 2, seed: int = 42) -> tuple[dict, str]:
    """The depth-estimation workflow adapted to the test; returns (graph, id of its SaveImage node)."""
    graph = adapted_graph("depth_estimation", variant, steps, seed)
    return graph, next(nid for nid, node in graph.items() if node["class_type"] == "SaveImage")


def _png(client: Client, entry: dict, save: str) -> np.ndarray:
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{client.log_tail()}"
    paths = client.images(entry, save)
    assert len(paths) == 1 and paths[0].is_file(), entry["outputs"]
    return np.asarray(Image.open(paths[0]).convert("RGB"))


def _depth_png(client: Client, entry: dict, save: str) -> np.ndarray:
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{client.log_tail()}"
    paths = client.images(entry, save)
    assert len(paths) == 1 and paths[0].is_file(), entry["outputs"]
    image = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert image.shape == (128, 128, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()  # grey depth map
    return image[..., 0]


def test_nodes_folders_and_templates_are_served(server):
    info = server.get("/object_info")
    for name in ("LoadJointDiT", "JointSampler", "EncodeDepth", "DecodeDepth"):
        assert name in info, name
    addons = info["LoadJointDiT"]["input"]["required"]["addon_name"][1]["options"]
    assert "jointdit.safetensors" in addons  # models/jointdit under --base-directory
    assert "extra_addons.safetensors" in addons  # a jointdit folder from extra_model_paths.yaml
    assert info["JointSampler"]["output_name"] == info["JointSamplerAdvanced"]["output_name"] == ["rgb", "depth"]
    make = _make_workflows_module()
    templates = server.get("/workflow_templates")
    assert sorted(templates["ComfyUI-JointDiT"]) == sorted(make.TEMPLATES.values())
    title = make.TEMPLATES["depth_estimation"]  # the frontend fetches a template by its title, URL-encoded
    shipped = server.get("/api/workflow_templates/ComfyUI-JointDiT/" + urllib.parse.quote(title) + ".json")
    assert shipped == json.loads((REPO / "example_workflows" / f"{title}.json").read_text())
    with urllib.request.urlopen(server.url + "/api/workflow_templates/ComfyUI-JointDiT/" + urllib.parse.quote(title) + ".jpg") as response:
        assert response.read() == (REPO / "example_workflows" / f"{title}.jpg").read_bytes()  # the card's thumbnail
    # the depth-completion workflow's default depth file: written into the input folder by the pack
    assert make.SAMPLE_SPARSE_DEPTH in info["JointDiTLoadDepth"]["input"]["required"]["file"][1]["options"]
    # the UI files carry the widget values of the API files, in the order this ComfyUI lays widgets out
    for name, graph in make.WORKFLOWS.items():
        ui = json.loads((REPO / "workflows" / "ui" / f"{name}.json").read_text())
        for node in (n for n in ui["nodes"] if n["type"] != "MarkdownNote"):
            api = graph[str(node["id"])]
            assert node["type"] == api["class_type"] and node["type"] in info
            assert node["widgets_values"] == make.widget_values(info[node["type"]], api["inputs"]), (name, node["type"])


def test_depth_estimation_workflow_plain_lora_and_cfg(server):
    outputs = {}
    for variant in ("plain", "lora", "cfg"):
        graph, save = depth_graph(variant)
        started = time.time()
        entry = server.wait(server.queue(graph))
        outputs[variant] = _depth_png(server, entry, save)
        print(f"{variant}: {time.time() - started:.1f} s")
    assert "lora key not loaded" not in server.log.read_text()
    assert np.abs(outputs["lora"].astype(int) - outputs["plain"]).max() > 0
    assert np.abs(outputs["cfg"].astype(int) - outputs["plain"]).max() > 0
    assert outputs["plain"].std() > 0  # a depth map, not a constant image


def test_interrupted_run_leaves_the_server_serving(server):
    graph, _ = depth_graph("long", steps=500, seed=7)
    loads_before = server.log.read_text().count("Requested to load Flux")
    prompt_id = server.queue(graph)
    end = time.time() + 120
    while server.log.read_text().count("Requested to load Flux") == loads_before:  # JointSampler is loading the model
        assert time.time() < end, f"the long prompt never reached the sampler:\n{server.log_tail()}"
        time.sleep(0.2)
    time.sleep(3)  # into the 500 steps (seconds each on a CPU)
    started = time.time()
    server.post("/interrupt", {})
    entry = server.wait(prompt_id, timeout=300)
    assert entry["status"]["status_str"] == "error"
    interrupted = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_type"] == "JointSampler", entry["status"]["messages"]
    assert time.time() - started < 60
    graph, save = depth_graph("after_interrupt", seed=8)
    _depth_png(server, server.wait(server.queue(graph)), save)


@pytest.mark.parametrize("name", ["joint_generation", "depth_to_image", *MASKED_WORKFLOWS])
def test_other_shipped_workflows_run(server, name):
    graph = adapted_graph(name)
    entry = server.wait(server.queue(graph))
    saves = sorted((nid for nid, node in graph.items() if node["class_type"] == "SaveImage"), key=int)
    images = [_png(server, entry, nid) for nid in saves]
    width = 128 + 2 * OUTPAINT_PAD if name == "outpaint_rgbd" else 128
    assert all(image.shape == (128, width, 3) for image in images)
    if name == "joint_generation":  # an rgb image and a grey depth map
        rgb, depth = images
        assert (depth[..., 0] == depth[..., 2]).all() and not (rgb[..., 0] == rgb[..., 2]).all()


def test_360_panorama_workflow_runs_in_windows_and_lifts_to_a_closed_sphere(server):
    trimesh = pytest.importorskip("trimesh", reason="the 3D node writes files with trimesh: pip install trimesh in ComfyUI's Python")
    graph = adapted_graph("panorama_360_3d")
    by_type = {node["class_type"]: nid for nid, node in graph.items()}
    assert graph[by_type["JointSamplerWindows"]]["inputs"]["wrap"] and graph[by_type["DecodeDepth"]]["inputs"]["wrap"]
    lift = by_type["JointDiTRGBDTo3D"]
    assert graph[lift]["inputs"]["projection"] == "equirectangular"
    graph[lift]["inputs"].update(filename_prefix="test/panorama", edge_threshold=0.0)  # random test weights: keep every triangle
    entry = server.wait(server.queue(graph))
    saves = sorted((nid for nid, node in graph.items() if node["class_type"] == "SaveImage"), key=int)
    assert [_png(server, entry, nid).shape for nid in saves] == [(PANORAMA[1], PANORAMA[0], 3)] * 2
    glb = next(f for f in entry["outputs"][lift]["3d"] if f["filename"].endswith(".glb"))
    mesh = next(iter(trimesh.load(server.base / "output" / glb["subfolder"] / glb["filename"], process=False).geometry.values()))
    assert len(mesh.faces) == 2 * (PANORAMA[1] - 1) * PANORAMA[0]  # the wrap seam closed
    assert entry["outputs"][by_type["Preview3D"]]["result"][0] == f"test/{glb['filename']}"


def test_depth_completion_runs_with_the_sample_file_a_fresh_install_has(server):
    graph = adapted_graph("depth_completion", "sample_file")
    load = next(node for node in graph.values() if node["class_type"] == "JointDiTLoadDepth")
    load["inputs"]["file"] = _make_workflows_module().SAMPLE_SPARSE_DEPTH  # the shipped workflow's default
    entry = server.wait(server.queue(graph))
    save = next(nid for nid, node in graph.items() if node["class_type"] == "SaveImage")
    assert _png(server, entry, save).shape == (128, 128, 3)


def test_old_api_prompt_of_the_20_input_sampler_still_runs(server):
    """An API prompt written for the JointSampler with width/height/batch_size/cfg/negative keeps working."""
    graph = adapted_graph("joint_generation", "old_prompt")
    by_type = {node["class_type"]: nid for nid, node in graph.items()}
    del graph[by_type["EmptySD3LatentImage"]]
    sampler = graph[by_type.get("JointSampler") or by_type["JointSamplerWindows"]]["inputs"]
    del sampler["image"]
    graph["91"] = {"class_type": "JointDiTTestConditioning", "inputs": {"seed": 1, "tokens": 8}}
    sampler.update(schedule="flux_shifted", cfg=2.0, asw_strength=1.0, width=128, height=64, batch_size=2,
                   rgb_start=1.0, rgb_end=0.0, depth_start=1.0, depth_end=0.0, negative=["91", 0])
    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{server.log_tail()}"
    saves = sorted((nid for nid, node in graph.items() if node["class_type"] == "SaveImage"), key=int)
    for nid in saves:
        paths = server.images(entry, nid)
        assert len(paths) == 2 and all(Image.open(p).size == (128, 64) for p in paths)
    assert "running an old workflow's inputs" in server.log.read_text()


def test_a_prompt_naming_a_depth_file_outside_the_input_folder_is_refused_and_nothing_is_read(server):
    """Over /prompt, as anyone who can reach the server would send it (issue: Load Depth read any file)."""
    secret = server.base / "secret_depth.npy"  # beside the input folder, inside the server's base directory
    np.save(secret, np.full((16, 16), 0.25, np.float32))
    graph = adapted_graph("depth_completion")
    load_depth = next(nid for nid, node in graph.items() if node["class_type"] == "JointDiTLoadDepth")
    for name in ("../secret_depth.npy", str(secret), "..%2Fsecret_depth.npy"):
        graph[load_depth]["inputs"]["file"] = name
        with pytest.raises(AssertionError, match=r"-> 400: .*is refused") as refused:
            server.queue(graph)
        assert "Only files inside" in str(refused.value), str(refused.value)


def test_a_one_pixel_photo_runs_through_the_shipped_depth_estimation_workflow(server):
    """The workflows scale the photo before VAEEncode, so even a 1x1 photo reaches the VAE at a size it takes."""
    Image.new("RGB", (1, 1), (200, 120, 40)).save(server.base / "input" / "one_pixel.png")
    graph, save = depth_graph()
    for node in graph.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = "one_pixel.png"
    depth = _depth_png(server, server.wait(server.queue(graph)), save)
    assert np.isfinite(depth).all()
