"""LoadJointDiT's file choice, through ComfyUI's own prompt validation and IS_CHANGED cache.

* a name that is not in the node's list (unknown, or ``../../`` out of the folder) is refused when
  ComfyUI validates the prompt, with a message naming the folders searched;
* the node's cache key follows the file: ComfyUI's ``IsChangedCache`` (what decides whether a cached
  output is reused) sees a new value when the addon file is replaced or its sidecar edited under the
  same name, and the same value when nothing changed.

The ``jointdit`` model folder is pointed at a temporary folder (nothing is written into ComfyUI).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import torch
from comfyui_harness import PACK_NAME, load_pack


@pytest.fixture(scope="module")
def loader():
    import importlib

    load_pack()
    return importlib.import_module(f"{PACK_NAME}.nodes.loader")


@pytest.fixture
def addon_folder(loader, golden, tmp_path, monkeypatch):
    """models/jointdit -> tmp_path holding the golden addon as jointdit_addons.safetensors + .json."""
    import folder_paths
    import nodes

    from jointdit_core.checkpoint import save_addons

    tensors, _ = golden
    addon = {k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")}
    folder = tmp_path / "jointdit"
    save_addons(folder / "jointdit_addons.safetensors", addon, {"depth_transform": "none"}, dtype=torch.float32)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "jointdit", ([str(folder)], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "LoadJointDiT", loader.LoadJointDiT)
    return folder, addon


def _prompt(addon_name: str) -> dict:
    return {"1": {"class_type": "LoadJointDiT", "inputs": {"model": ["2", 0], "addon_name": addon_name}}}


def _validation_errors(addon_name: str) -> list[dict]:
    """ComfyUI's validation errors for LoadJointDiT's addon_name (its ``validate_inputs`` of execution.py)."""
    import execution

    prompt = _prompt(addon_name)
    del prompt["1"]["inputs"]["model"]  # a missing MODEL is its own error; only addon_name's are kept
    validated: dict = {}
    valid, errors, _ = asyncio.run(execution.validate_inputs("test", prompt, "1", validated))
    return [e for e in errors if e.get("extra_info", {}).get("input_name") == "addon_name"]


@pytest.mark.parametrize("name", ["missing.safetensors", "../../jointdit_addons.safetensors", "../jointdit/jointdit_addons.safetensors"])
def test_a_name_not_in_the_list_is_refused_at_validation(addon_folder, name):
    folder, _ = addon_folder
    errors = _validation_errors(name)
    assert errors, f"ComfyUI accepted addon_name={name!r}"
    text = " ".join(str(e.get("details", "")) + " " + str(e.get("message", "")) for e in errors)
    assert repr(name) in text and str(folder) in text and "jointdit_addons.safetensors" in text


def test_a_listed_name_passes_validation(addon_folder):
    assert _validation_errors("jointdit_addons.safetensors") == []


def test_execute_refuses_a_name_not_in_the_list(loader, addon_folder):
    folder, _ = addon_folder
    with pytest.raises(ValueError, match="not one of the addon files") as err:
        loader.LoadJointDiT.execute(None, "../../etc/passwd")
    assert str(folder) in str(err.value)


def _is_changed(addon_name: str):
    """The value ComfyUI's IsChangedCache holds for the node (part of its output cache key)."""
    import execution
    from comfy_execution.graph import DynamicPrompt

    cache = execution.IsChangedCache("test", DynamicPrompt(_prompt(addon_name)), None)
    return asyncio.run(cache.get("1"))


def _touch_later(path) -> None:
    """Move the file's mtime forward by 2 s (file systems with coarse timestamps would hide a rewrite)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_cache_key_follows_the_addon_file_and_its_sidecar(addon_folder):
    from jointdit_core.checkpoint import save_addons

    folder, addon = addon_folder
    name = "jointdit_addons.safetensors"
    first = _is_changed(name)
    assert first == _is_changed(name)  # nothing changed: the cached output is reused
    assert first is not None and first == first  # a value, not None (no fingerprint) or NaN (always re-run)

    sidecar = folder / "jointdit_addons.json"
    sidecar.write_text(json.dumps({"depth_transform": "inverse"}))
    _touch_later(sidecar)
    after_sidecar = _is_changed(name)
    assert after_sidecar != first

    save_addons(folder / name, {k: v * 2 for k, v in addon.items()}, {"depth_transform": "inverse"}, dtype=torch.float32)
    _touch_later(folder / name)
    _touch_later(sidecar)
    after_file = _is_changed(name)
    assert after_file != after_sidecar
    assert after_file == _is_changed(name)


def test_a_new_sidecar_next_to_the_file_changes_the_cache_key(addon_folder):
    folder, _ = addon_folder
    name = "jointdit_addons.safetensors"
    (folder / "jointdit_addons.json").unlink()
    without = _is_changed(name)
    (folder / "jointdit_addons.json").write_text(json.dumps({"depth_transform": "inverse"}))
    assert _is_changed(name) != without
