"""ComfyUI-JointDiT: ComfyUI loads this file from ``custom_nodes/ComfyUI-JointDiT``.

``jointdit_core`` has one identity everywhere: the top-level package ``jointdit_core``. The trainer, the
demo and the tests import it from the repository (or from ``pip install -e .``); inside ComfyUI, where
the pack's folder is not on ``sys.path``, this file registers the pack's own ``jointdit_core`` under that
name before the nodes import it. Outside ComfyUI (plain pytest, the trainer) importing this file does
nothing else: the nodes are only imported when ComfyUI's ``comfy_api`` is importable. ``jointdit_core``
never imports ComfyUI.
"""

import importlib.util
import sys
from pathlib import Path

_CORE = Path(__file__).resolve().parent / "jointdit_core"


def _register_core() -> None:
    """Make ``import jointdit_core`` give this pack's copy (raises ImportError if another copy is loaded)."""
    loaded = sys.modules.get("jointdit_core")
    if loaded is not None:
        where = Path(getattr(loaded, "__file__", "") or "").resolve().parent
        if where != _CORE:
            raise ImportError(
                f"another jointdit_core is already imported from {where}; ComfyUI-JointDiT needs its own at {_CORE}: "
                "uninstall the other copy (pip uninstall comfyui-jointdit) or remove the duplicate custom node"
            )
        return
    spec = importlib.util.spec_from_file_location("jointdit_core", _CORE / "__init__.py", submodule_search_locations=[str(_CORE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["jointdit_core"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["jointdit_core"]
        raise


try:
    import comfy_api.latest  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    pass
else:
    _register_core()
    from .nodes.extension import comfy_entrypoint  # noqa: F401

    WEB_DIRECTORY = None
    __all__ = ["comfy_entrypoint"]
