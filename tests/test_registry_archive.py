"""The Comfy Registry archive holds the pack, not its lab; LICENSE and the ComfyUI requirement match pyproject.

``comfy node publish`` (comfy-cli's ``zip_files``) packs the git-tracked files that no ``.comfyignore`` line
matches (pathspec's gitwildmatch patterns, blank and ``#`` lines dropped), plus the folders of
``[tool.comfy].includes`` (which win over ``.comfyignore``). :func:`archive_files` repeats that rule, so these
tests see the file list the registry gets without comfy-cli installed.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("nodes", "jointdit_core", "jointdit_trainer", "workflows", "example_workflows")
PRODUCT_FILES = ("__init__.py", "pyproject.toml", "requirements.txt", "README.md", "LICENSE")
LAB = ("rgbd_world", "tests", "benchmarks", "scripts", ".ci")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml (tomllib)")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (the registry archive is built from the git-tracked files)")
    return [line for line in out.splitlines() if line.strip()]


def archive_files() -> list[str]:
    """Repository-relative paths of the files ``comfy node publish`` puts in the archive (tracked files only)."""
    pathspec = pytest.importorskip("pathspec", reason="pip install pathspec (the project's test extra)")
    lines = (ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    with warnings.catch_warnings():  # pathspec >= 1.0 deprecates the name comfy-cli uses; same matcher
        warnings.simplefilter("ignore", DeprecationWarning)
        spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    includes = [item.strip("/") for item in _pyproject()["tool"]["comfy"].get("includes", [])]
    forced = lambda path: any(path == item or path.startswith(item + "/") for item in includes)  # noqa: E731
    return [path for path in _tracked() if forced(path) or not spec.match_file(path)]


def test_archive_leaves_out_the_lab_and_keeps_the_pack():
    files = archive_files()
    tracked = _tracked()
    for folder in LAB:
        assert not [f for f in files if f.startswith(folder + "/")], f"{folder}/ must not be in the registry archive"
    assert any(f.startswith("rgbd_world/model/") for f in tracked) and any(f.startswith("tests/data/") for f in tracked)
    for folder in PRODUCT:
        in_repo = {f for f in tracked if f.startswith(folder + "/")}
        assert in_repo and in_repo <= set(files), f"every tracked file of {folder}/ belongs in the archive"
    assert set(PRODUCT_FILES) <= set(files)
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < 2**21, f"the archive's files add up to {size} bytes: something large slipped in"


def test_archived_python_imports_nothing_left_out():
    """The pack works from the archive: no archived module imports a folder that .comfyignore leaves out."""
    for path in (f for f in archive_files() if f.endswith(".py")):
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] in LAB], f"{path}:{node.lineno} imports {names}"


def _harness():
    """tests/comfyui/comfyui_harness.py (imports nothing of ComfyUI at module level)."""
    spec = importlib.util.spec_from_file_location("comfyui_harness_for_pyproject", ROOT / "tests" / "comfyui" / "comfyui_harness.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    return harness


def test_license_and_comfyui_requirement_match_pyproject_and_the_test_matrix():
    project = _pyproject()
    assert project["project"]["license"] == "Apache-2.0"
    assert "LICENSE" in project["project"]["license-files"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    harness = _harness()
    assert project["tool"]["comfy"]["requires-comfyui"] == f">={harness.OLDEST_COMFYUI}"
    readme = (ROOT / "README.md").read_text()
    assert harness.OLDEST_COMFYUI in readme and harness.NEWEST_TESTED_COMFYUI in readme


def test_comfyui_outside_the_tested_range_is_skipped_or_warned_about():
    harness = _harness()
    for inside in (harness.OLDEST_COMFYUI, "0.10.0", "v0.28.1", harness.NEWEST_TESTED_COMFYUI):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            harness.check_supported(inside)  # numeric order: 0.3.64 < 0.10.0 < 0.33.0
    for older in ("0.3.63", "0.2.7", "unknown", ""):
        with pytest.raises(pytest.skip.Exception, match="supported"):
            harness.check_supported(older)
    with pytest.warns(UserWarning, match="newer than the newest release"):
        harness.check_supported("0.34.0")


def test_a_second_jointdit_core_is_refused_naming_both_copies(tmp_path):
    """Inside ComfyUI (``comfy_api.latest`` importable) the pack registers its own jointdit_core; if another
    copy is already imported it raises ImportError naming both folders and leaves the other copy in place."""
    other = tmp_path / "site" / "jointdit_core"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    script = f"""
import importlib.util, sys, types
sys.path.insert(0, {str(tmp_path / "site")!r})
import jointdit_core
for name in ("comfy_api", "comfy_api.latest"):
    sys.modules[name] = types.ModuleType(name)  # what the pack's __init__ takes as 'inside ComfyUI'
spec = importlib.util.spec_from_file_location("ComfyUI-JointDiT", {str(ROOT / "__init__.py")!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
try:
    spec.loader.exec_module(module)
except ImportError as error:
    print("ImportError:", error)
print("kept:", sys.modules["jointdit_core"].__file__)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    error = next(line for line in result.stdout.splitlines() if line.startswith("ImportError:"))
    assert str(other) in error and str(ROOT / "jointdit_core") in error
    assert f"kept: {other / '__init__.py'}" in result.stdout
