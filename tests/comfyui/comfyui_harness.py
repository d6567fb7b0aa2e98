"""Helpers and fixtures for the tests that need a real ComfyUI (checkout path in COMFYUI_PATH).

Run them with ComfyUI's Python (its requirements installed), e.g.::

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfyui-python -m pytest -q tests/comfyui
    bash scripts/test_comfyui.sh /path/to/ComfyUI /path/to/comfyui-python     # the same

The supported ComfyUI range is ``OLDEST_COMFYUI`` .. ``NEWEST_TESTED_COMFYUI`` (both ends are run: see the
README's test matrix). Without COMFYUI_PATH, or with a ComfyUI older than the range, every test here is
skipped with the reason; a newer ComfyUI runs the tests with a warning that it is untested. The pack is imported the way ComfyUI
imports a custom node (its ``__init__.py`` as a package under a unique name), never as top-level
``nodes`` (that name is ComfyUI's own ``nodes.py``).

Test modules import their helpers from here: this folder has no conftest.py, so the project's
``tests/conftest.py`` stays the only module named ``conftest``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

OLDEST_COMFYUI = "0.3.64"  # the oldest release the pack supports (V3 node schema); pyproject's requires-comfyui
NEWEST_TESTED_COMFYUI = "0.33.0"  # the newest release the ComfyUI tests were run against
REPO = Path(__file__).resolve().parents[2]
SUPPORTED = f"{OLDEST_COMFYUI} .. {NEWEST_TESTED_COMFYUI}"


def comfyui_path() -> Path:
    """The ComfyUI checkout from COMFYUI_PATH; skips the calling test with the reason if it is unusable.

    Unusable: COMFYUI_PATH unset or not a ComfyUI checkout, this Python lacks ComfyUI's requirements, or the
    checkout is older than :data:`OLDEST_COMFYUI` (or its version cannot be read). A checkout newer than
    :data:`NEWEST_TESTED_COMFYUI` is used, with a warning.
    """
    value = os.environ.get("COMFYUI_PATH")
    if not value:
        pytest.skip(f"COMFYUI_PATH is not set: these tests need a ComfyUI checkout (supported: ComfyUI {SUPPORTED})")
    path = Path(value).expanduser().resolve()
    if not (path / "main.py").is_file() or not (path / "comfy").is_dir():
        pytest.skip(f"COMFYUI_PATH={value} is not a ComfyUI checkout (no main.py / comfy/)")
    check_supported(comfyui_version(path), path)
    for module in ("aiohttp", "torchsde", "comfyui_frontend_package"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is missing: run these tests with the Python that runs ComfyUI (pip install -r requirements.txt there)")
    if importlib.util.find_spec("requests") is None:  # main.py -> server -> app.frontend_management imports it
        pytest.skip("requests is missing: ComfyUI's server imports it, and ComfyUI 0.3.x's requirements.txt does not list it (pip install requests)")
    return path


def comfyui_version(path: Path) -> str:
    """``__version__`` of the checkout's ``comfyui_version.py`` ("unknown" if it has none)."""
    file = path / "comfyui_version.py"
    if not file.is_file():
        return "unknown"
    namespace: dict = {}
    exec(file.read_text(), namespace)
    return namespace.get("__version__", "unknown")


def version_tuple(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a release string such as "0.3.64" or "v0.28.1"; None if it is not one."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+.].*)?", version.strip())
    return tuple(int(part) for part in match.groups()) if match else None


def check_supported(version: str, path: Path | str = "COMFYUI_PATH") -> None:
    """Skip (older than the range, or no readable version) or warn (newer than the range) about a ComfyUI version."""
    found = version_tuple(version)
    if found is None:
        pytest.skip(f"cannot read the ComfyUI version at {path} (comfyui_version.py says {version!r}); supported: ComfyUI {SUPPORTED}")
    if found < version_tuple(OLDEST_COMFYUI):
        pytest.skip(
            f"ComfyUI {version} at {path} is older than the oldest supported release {OLDEST_COMFYUI} "
            f"(the pack needs ComfyUI {SUPPORTED}: update ComfyUI)"
        )
    if found > version_tuple(NEWEST_TESTED_COMFYUI):
        warnings.warn(
            f"ComfyUI {version} at {path} is newer than the newest release these tests were run against "
            f"({NEWEST_TESTED_COMFYUI}; supported and tested: {SUPPORTED}): failures may be ComfyUI changes",
            stacklevel=2,
        )


# FLUX.1 values of the FluxParams fields that ComfyUI added after OLDEST_COMFYUI (what comfy.model_detection
# sets for a FLUX.1 checkpoint): v0.4.0 made ``txt_ids_dims`` a required field, [] for FLUX.1.
FLUX1_NEWER_FIELDS = {"txt_ids_dims": []}


def flux_unet_config(**fields) -> dict:
    """A ``unet_config`` for ``comfy.supported_models.Flux`` of a FLUX.1-structured model in the running ComfyUI.

    ``fields`` are FluxParams values (``hidden_size``, ``depth``, ``axes_dim``, ...); ``image_model`` "flux",
    16 latent channels and patch size 2 are filled in unless given. The FLUX.1 values of fields newer
    ComfyUI releases require (:data:`FLUX1_NEWER_FIELDS`) are added when this ComfyUI's ``FluxParams``
    declares them and left out when it does not, so one config works on every supported release. Other
    fields pass through unchanged (a misspelt one still fails in ``FluxParams``).
    """
    from comfy.ldm.flux.model import FluxParams

    declared = {field.name for field in dataclasses.fields(FluxParams)}
    config = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, **fields}
    for name, value in FLUX1_NEWER_FIELDS.items():
        if name in declared:
            config.setdefault(name, value)
        else:
            config.pop(name, None)
    return config


PACK_NAME = "comfyui_jointdit_under_test"


def load_pack() -> SimpleNamespace:
    """ComfyUI importable in this process (CPU when no CUDA device) and the pack's modules.

    Skips the calling test (see :func:`comfyui_path`) when ComfyUI is not usable here.

    Returns a namespace with ``path``, ``version`` and the pack modules ``model_patch``, ``sampler``,
    ``depth``, ``depth_maps``, ``core`` (the pack's ``jointdit_core``).
    """
    path = comfyui_path()
    version = comfyui_version(path)
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


@contextlib.contextmanager
def recorded_progress():
    """Within the block every ``comfy.utils.ProgressBar.update_absolute`` call is recorded as (value, total) in the
    yielded list (all updates a node makes: newer ComfyUI throttles what reaches the frontend's hook)."""
    import comfy.utils

    seen = []
    update_absolute = comfy.utils.ProgressBar.update_absolute

    def spy(bar, value, total=None, preview=None):
        seen.append((value, total))
        return update_absolute(bar, value, total, preview)

    comfy.utils.ProgressBar.update_absolute = spy
    try:
        yield seen
    finally:
        comfy.utils.ProgressBar.update_absolute = update_absolute
