"""Helpers and fixtures for the tests that need a real ComfyUI (checkout path in COMFYUI_PATH).

Run them with ComfyUI's Python (its requirements installed), e.g.::

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfyui-python -m pytest -q tests/comfyui

Without COMFYUI_PATH every test here is skipped with the reason. The pack is imported the way ComfyUI
imports a custom node (its ``__init__.py`` as a package under a unique name), never as top-level
``nodes`` (that name is ComfyUI's own ``nodes.py``).

Test modules import their helpers from here: this folder has no conftest.py, so the project's
``tests/conftest.py`` stays the only module named ``conftest``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

PINNED_COMFYUI = "0.3.64"  # the ComfyUI release these tests were written and run against
REPO = Path(__file__).resolve().parents[2]


def comfyui_path() -> Path:
    """The ComfyUI checkout from COMFYUI_PATH; skips the calling test with the reason if it is unusable."""
    value = os.environ.get("COMFYUI_PATH")
    if not value:
        pytest.skip("COMFYUI_PATH is not set: these tests need a ComfyUI checkout (pinned: ComfyUI " + PINNED_COMFYUI + ")")
    path = Path(value).expanduser().resolve()
    if not (path / "main.py").is_file() or not (path / "comfy").is_dir():
        pytest.skip(f"COMFYUI_PATH={value} is not a ComfyUI checkout (no main.py / comfy/)")
    for module in ("aiohttp", "torchsde", "comfyui_frontend_package"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is missing: run these tests with the Python that runs ComfyUI (pip install -r requirements.txt there)")
    return path


def comfyui_version(path: Path) -> str:
    namespace: dict = {}
    exec((path / "comfyui_version.py").read_text(), namespace)
    return namespace.get("__version__", "unknown")


PACK_NAME = "comfyui_jointdit_under_test"


def load_pack() -> SimpleNamespace:
    """ComfyUI importable in this process (CPU when no CUDA device) and the pack's modules.

    Skips the calling test (see :func:`comfyui_path`) when ComfyUI is not usable here.

    Returns a namespace with ``path``, ``version`` and the pack modules ``model_patch``, ``sampler``,
    ``depth``, ``depth_maps``, ``core`` (the pack's ``jointdit_core``).
    """
    path = comfyui_path()
    version = comfyui_version(path)
    if version != PINNED_COMFYUI:
        warnings.warn(f"ComfyUI {version} at COMFYUI_PATH; the pack is pinned to and tested with {PINNED_COMFYUI}", stacklevel=2)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import torch
    from comfy.cli_args import args

    if not torch.cuda.is_available():
        args.cpu = True
    pack = sys.modules.get(PACK_NAME)
    if pack is None:
        spec = importlib.util.spec_from_file_location(PACK_NAME, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = pack
        spec.loader.exec_module(pack)
    load = lambda name: importlib.import_module(f"{PACK_NAME}.{name}")  # noqa: E731
    return SimpleNamespace(
        path=path,
        version=version,
        pack=pack,
        model_patch=load("nodes.model_patch"),
        sampler=load("nodes.sampler"),
        depth=load("nodes.depth"),
        depth_maps=load("nodes.depth_maps"),
        core=SimpleNamespace(
            latents=importlib.import_module("jointdit_core.latents"),
            checkpoint=importlib.import_module("jointdit_core.checkpoint"),
            model=importlib.import_module("jointdit_core.model"),
            sampler=importlib.import_module("jointdit_core.sampler"),
            schedules=importlib.import_module("jointdit_core.schedules"),
        ),
    )
