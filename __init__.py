"""ComfyUI-JointDiT: ComfyUI loads this file from ``custom_nodes/ComfyUI-JointDiT``.

Outside ComfyUI (plain pytest, the trainer) importing it does nothing: the nodes are only imported
when ComfyUI's ``comfy_api`` is importable. ``jointdit_core`` never imports ComfyUI.
"""

try:
    import comfy_api.latest  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    pass
else:
    from .nodes.extension import comfy_entrypoint  # noqa: F401

    WEB_DIRECTORY = None
    __all__ = ["comfy_entrypoint"]
