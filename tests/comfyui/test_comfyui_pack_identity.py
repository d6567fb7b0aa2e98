"""Inside ComfyUI the pack gives ``jointdit_core`` one identity: its own copy, under the top-level name.

A fresh Python with ComfyUI importable and the repository NOT on ``sys.path`` (as in ComfyUI, where a
custom node's folder is not on it) loads the pack the way ComfyUI loads a custom node; then
``import jointdit_core`` must be the pack's copy, no module of that folder may be loaded a second time
under another name (e.g. ``<pack>.jointdit_core.sampler`` through a relative import), and every core
function or class the node modules hold must be the very object ``jointdit_core`` has. (A second copy
already imported is refused: tests/test_registry_archive.py.)
"""

from __future__ import annotations

import subprocess
import sys

from comfyui_harness import REPO, comfyui_path

SCRIPT = r"""
import importlib, inspect, sys
from pathlib import Path

repo = Path(sys.argv[1]).resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != repo]
sys.path.insert(0, str(repo / "tests" / "comfyui"))
assert "jointdit_core" not in sys.modules
from comfyui_harness import load_pack

pack = load_pack()
import jointdit_core

core = repo / "jointdit_core"
assert Path(jointdit_core.__file__).resolve() == core / "__init__.py", jointdit_core.__file__
for name, module in list(sys.modules.items()):
    file = getattr(module, "__file__", None)
    if file and Path(file).resolve().is_relative_to(core):
        assert name == "jointdit_core" or name.startswith("jointdit_core."), f"second identity: {name}"
shared = []
for name, module in list(sys.modules.items()):
    if name.startswith(pack.pack.__name__ + ".nodes"):
        for obj in list(vars(module).values()):
            home = getattr(obj, "__module__", None) or ""
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and home.split(".")[0] == "jointdit_core":
                assert getattr(importlib.import_module(home), obj.__name__) is obj, f"{name}: {home}.{obj.__name__}"
                shared.append(f"{home}.{obj.__name__}")
print("shared", len(set(shared)))
"""


def test_pack_registers_its_own_jointdit_core_once(tmp_path):
    path = comfyui_path()
    env = {"COMFYUI_PATH": str(path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    shared = int(result.stdout.split("shared")[-1])
    assert shared >= 5, result.stdout  # the nodes do use the core (plan_sampling, latents, checkpoint, ...)
