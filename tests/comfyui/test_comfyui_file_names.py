"""File names from a prompt stay inside ComfyUI's folders, on every supported release (ComfyUI 0.3.64's own
``get_annotated_filepath`` does not check them), and the messages a prompt's mistakes get.

* Load Depth reads only from the input folder: ``..``, absolute paths, URL-encoded forms, symbolic links that
  lead out and ``[output]`` names are refused when ComfyUI validates the prompt and again at execution, and
  the file is never opened;
* Save Depth and RGB-D to 3D write only into the output folder;
* Load JointDiT: a prompt without ``addon_name``, or with a name outside its list, gets a message naming the
  addon files; JointSampler's old task "custom" points to JointDiT Sampler (Advanced).

ComfyUI's input, output and ``jointdit`` folders are pointed at temporary folders.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
import torch
from comfyui_harness import PACK_NAME, load_pack

SECRET = "secret_depth.npy"


@pytest.fixture(scope="module")
def pack_nodes():
    import importlib

    load_pack()
    return {name: importlib.import_module(f"{PACK_NAME}.nodes.{name}") for name in ("depth_files", "lift3d", "loader", "sampler")}


@pytest.fixture
def folders(pack_nodes, tmp_path, monkeypatch):
    """input/ with depth.npy and sub/depth.npy; a secret depth file beside input/; output/; the nodes registered."""
    import folder_paths
    import nodes

    inside, output = tmp_path / "input", tmp_path / "output"
    (inside / "sub").mkdir(parents=True)
    output.mkdir()
    ramp = np.linspace(0, 1, 16 * 24, dtype=np.float32).reshape(16, 24)
    np.save(inside / "depth.npy", ramp)
    np.save(inside / "sub" / "depth.npy", ramp)
    np.save(tmp_path / SECRET, np.full((16, 24), 0.25, np.float32))
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(inside))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(output))
    for module, cls in (("depth_files", "LoadDepth"), ("loader", "LoadJointDiT"), ("sampler", "JointSampler")):
        node = getattr(pack_nodes[module], cls)
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, node.define_schema().node_id, node)
    return inside, output, tmp_path


def _errors(node: dict) -> list[str]:
    """ComfyUI's validation errors (message + details) for one node of a prompt (execution.validate_inputs)."""
    import execution

    valid, errors, _ = asyncio.run(execution.validate_inputs("test", {"1": node}, "1", {}))
    return [f"{e.get('message', '')}: {e.get('details', '')}" for e in errors]


def _load_depth(name: str) -> dict:
    return {"class_type": "JointDiTLoadDepth", "inputs": {"file": name, "normalize": False}}


def _outside_names(tmp_path) -> dict[str, str]:
    return {
        "dot-dot": f"../{SECRET}",
        "dot-dot in a subfolder": f"sub/../../{SECRET}",
        "absolute": str(tmp_path / SECRET),
        "URL-encoded": f"..%2F{SECRET}",
        "URL-encoded dots": f"%2e%2e/{SECRET}",
        "annotated dot-dot": f"../{SECRET} [input]",
        "output annotation": "depth.npy [output]",
    }


@pytest.mark.parametrize("kind", list(_outside_names(__import__("pathlib").Path("/x"))))
def test_load_depth_refuses_names_outside_the_input_folder_at_validation_and_execution(pack_nodes, folders, kind, monkeypatch):
    inside, _, tmp_path = folders
    name = _outside_names(tmp_path)[kind]
    opened = []
    read_depth = pack_nodes["depth_files"].read_depth
    monkeypatch.setattr(pack_nodes["depth_files"], "read_depth", lambda path, **kw: opened.append(path) or read_depth(path, **kw))
    errors = _errors(_load_depth(name))
    assert errors and any("is refused" in e and str(inside) in e for e in errors), (name, errors)
    with pytest.raises(ValueError, match="is refused"):
        pack_nodes["depth_files"].LoadDepth.execute(name, False)
    assert opened == []  # the secret file was never opened


def test_load_depth_refuses_a_symbolic_link_leading_out_and_leaves_it_out_of_its_list(pack_nodes, folders):
    inside, _, tmp_path = folders
    os.symlink(tmp_path / SECRET, inside / "innocent.npy")
    os.symlink(inside / "depth.npy", inside / "alias.npy")  # a link that stays inside is fine
    errors = _errors(_load_depth("innocent.npy"))
    assert any("through a symbolic link" in e for e in errors), errors
    with pytest.raises(ValueError, match="through a symbolic link"):
        pack_nodes["depth_files"].LoadDepth.execute("innocent.npy", False)
    listed = pack_nodes["depth_files"].input_files((".npy",))
    assert "innocent.npy" not in listed and {"alias.npy", "depth.npy"} <= set(listed)


@pytest.mark.parametrize("name", ["depth.npy", "depth.npy [input]", "sub/depth.npy", "alias.npy"])
def test_load_depth_reads_names_inside_the_input_folder(pack_nodes, folders, name):
    inside, _, _ = folders
    if name == "alias.npy":
        os.symlink(inside / "depth.npy", inside / "alias.npy")
    assert _errors(_load_depth(name)) == []
    depth, valid = pack_nodes["depth_files"].LoadDepth.execute(name, False).result
    assert depth.shape == (1, 16, 24, 3) and bool(valid.all())
    assert torch.allclose(depth[0, ..., 0], torch.from_numpy(np.load(inside / "depth.npy")))


def test_load_depth_names_a_missing_file_and_where_to_put_it(folders):
    inside, _, _ = folders
    errors = _errors(_load_depth("nowhere.npy"))
    assert any("'nowhere.npy' not found" in e and str(inside) in e for e in errors), errors


@pytest.mark.parametrize("prefix", ["../escaped/depth", "ABSOLUTE", "..%2Fescaped/depth", "linked/depth"])
def test_save_nodes_write_only_into_the_output_folder(pack_nodes, folders, prefix):
    _, output, tmp_path = folders
    (tmp_path / "escaped").mkdir()
    os.symlink(tmp_path / "escaped", output / "linked")
    if prefix == "ABSOLUTE":  # an absolute path outside the output folder
        prefix = str(tmp_path / "escaped" / "depth")
    image = torch.rand(1, 16, 16, 3)
    with pytest.raises(ValueError, match="filename_prefix .* is refused"):
        pack_nodes["depth_files"].SaveDepth.execute(image, prefix, "npy")
    with pytest.raises(ValueError, match="filename_prefix .* is refused"):
        pack_nodes["lift3d"].RGBDTo3D.execute(image, image, 50.0, 1.0, 10.0, 0.0, 0.0, prefix)
    assert list((tmp_path / "escaped").iterdir()) == []


def test_load_jointdit_without_addon_name_says_what_it_needs(folders, tmp_path, monkeypatch):
    import folder_paths

    (tmp_path / "jointdit").mkdir()
    (tmp_path / "jointdit" / "jointdit.safetensors").write_bytes(b"")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "jointdit", ([str(tmp_path / "jointdit")], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    import execution

    # the sampler links the loader: ComfyUI validates the loader as its inner node and shows what it raised
    prompt = {"1": {"class_type": "LoadJointDiT", "inputs": {}}, "2": {"class_type": "JointSampler", "inputs": {"model": ["1", 0]}}}
    validated: dict = {}
    asyncio.run(execution.validate_inputs("test", prompt, "2", validated))
    errors = [f"{e.get('message', '')}: {e.get('details', '')}" for e in validated["1"][1]]  # what /prompt reports for node 1
    assert any("Load JointDiT needs addon_name" in e and "'jointdit.safetensors'" in e for e in errors), errors
    assert not any("positional argument" in e for e in errors), errors
    for name in ("%2e%2e/jointdit/jointdit.safetensors", str(tmp_path / "jointdit" / "jointdit.safetensors")):
        assert any("is not one of the addon files" in e for e in _errors({"class_type": "LoadJointDiT", "inputs": {"addon_name": name}}))


def test_an_old_custom_task_on_joint_sampler_points_to_the_advanced_node(pack_nodes, folders):
    errors = _errors({"class_type": "JointSampler", "inputs": {"task": "custom", "seed": 0, "steps": 2}})
    assert any("'JointDiT Sampler (Advanced)'" in e and "rgb_start" in e and "JointSamplerAdvanced" in e for e in errors), errors
    errors = _errors({"class_type": "JointSampler", "inputs": {"task": "depth_estimatoin", "seed": 0, "steps": 2}})
    assert any("no task 'depth_estimatoin'" in e and "depth_estimation" in e for e in errors), errors
    ok = _errors({"class_type": "JointSampler", "inputs": {"task": "depth_estimation", "seed": 0, "steps": 2}})
    assert not any("task" in e for e in ok), ok
