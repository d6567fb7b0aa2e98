"""The pack's V3 entry point: registers the ``models/jointdit`` folder and lists the nodes."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .folders import register_folder

register_folder()

from .depth import DecodeDepth, EncodeDepth  # noqa: E402  (the folder must exist before the node schemas list it)
from .lift3d import RGBDTo3D  # noqa: E402
from .depth_estimation import JointDiTDepthEstimation, JointDiTResize  # noqa: E402
from .depth_files import LoadDepth, SaveDepth  # noqa: E402
from .loader import LoadJointDiT  # noqa: E402
from .sampler import JointSampler, JointSamplerAdvanced  # noqa: E402
from .step_cache import JointDiTCache  # noqa: E402


class JointDiTExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LoadJointDiT, JointSampler, JointSamplerAdvanced, EncodeDepth, DecodeDepth, JointDiTDepthEstimation, JointDiTResize, SaveDepth, LoadDepth, RGBDTo3D, JointDiTCache]


async def comfy_entrypoint() -> JointDiTExtension:
    """Called by ComfyUI when it loads the pack from ``custom_nodes``."""
    return JointDiTExtension()
