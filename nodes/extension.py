"""The pack's V3 entry point: registers the ``models/jointdit`` folder, provides the depth-completion workflow's
sample file in the input folder and lists the nodes."""

from __future__ import annotations

import logging

import folder_paths
from comfy_api.latest import ComfyExtension, io

from jointdit_core.depth_files import provide_sample_sparse_depth
from .folders import register_folder

register_folder()
try:  # the depth-completion workflow's default file, so that it runs on a fresh install
    provide_sample_sparse_depth(folder_paths.get_input_directory())
except OSError as exc:
    logging.getLogger("ComfyUI-JointDiT").warning("could not write the sample sparse depth into ComfyUI's input folder: %s", exc)

from .depth import DecodeDepth, EncodeDepth  # noqa: E402  (the folder must exist before the node schemas list it)
from .lift3d import RGBDTo3D  # noqa: E402
from .depth_estimation import JointDiTDepthEstimation, JointDiTResize  # noqa: E402
from .depth_files import LoadDepth, SaveDepth  # noqa: E402
from .loader import LoadJointDiT  # noqa: E402
from .panorama_decode import VAEDecodePanorama  # noqa: E402
from .sampler import JointSampler, JointSamplerAdvanced  # noqa: E402
from .step_cache import JointDiTCache  # noqa: E402
from .window_sampler import JointSamplerWindows  # noqa: E402


class JointDiTExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            LoadJointDiT, JointSampler, JointSamplerAdvanced, JointSamplerWindows, EncodeDepth, DecodeDepth, JointDiTDepthEstimation,
            JointDiTResize, SaveDepth, LoadDepth, RGBDTo3D, JointDiTCache, VAEDecodePanorama,
        ]


async def comfy_entrypoint() -> JointDiTExtension:
    """Called by ComfyUI when it loads the pack from ``custom_nodes``."""
    return JointDiTExtension()
