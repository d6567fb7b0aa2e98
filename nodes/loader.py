"""LoadJointDiT: FLUX.1-dev MODEL + addon file from ``models/jointdit`` -> MODEL that runs JointDiT.

The node checks the chosen name against its own file list (an unknown or ``../`` name is refused at
validation, naming the folders searched), and its cache key follows the file: ComfyUI re-runs it
when the addon file or its sidecar is replaced or edited under the same name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from comfy_api.latest import io

from jointdit_core.checkpoint import find_sidecar, load_addons
from .folders import addon_files, addon_folders, addon_path
from .model_patch import WEIGHT_DTYPES, apply_jointdit, check_flux, flux_config

log = logging.getLogger("ComfyUI-JointDiT")


def unknown_addon_message(name: str | None) -> str | None:
    """None if ``name`` is one of the LoadJointDiT dropdown's files, else a message saying where addons are looked for.

    Only listed names load: ``..``, absolute paths and URL-encoded forms can never be one (ComfyUI lists files
    found under the model folders, following the links an administrator put there, as its own loaders do).
    """
    files = addon_files()
    if name in files:
        return None
    listed = ", ".join(repr(f) for f in files[:8]) + (f" ... ({len(files)} files)" if len(files) > 8 else "")
    where = f"the addon files in the jointdit model folders {addon_folders()}: {listed or 'none found'}"
    if name is None or name == "":
        return (
            f"Load JointDiT needs addon_name, the JointDiT addon file to load (e.g. jointdit.safetensors); the prompt gives "
            f"none. Pick one of {where}"
        )
    return (
        f"JointDiT addon {name!r} is not one of {where}. Put the addon file (and its .json, if it has one) into "
        "models/jointdit and pick it from the list"
    )


def _stat(path) -> tuple | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_size, st.st_mtime_ns)


def addon_fingerprint(name: str) -> tuple:
    """What LoadJointDiT's output depends on besides its inputs: (path, size, mtime_ns) of the addon file and
    of the sidecar it would read (None if it has none); ``name`` alone for a name that is not in the list."""
    if unknown_addon_message(name) is not None:
        return (name,)
    path = Path(addon_path(name))
    return (_stat(path), _stat(find_sidecar(path)))


class LoadJointDiT(io.ComfyNode):
    """MODEL (FLUX.1-dev) + JointDiT addon file -> MODEL that runs JointDiT (input MODEL unchanged)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LoadJointDiT",
            display_name="Load JointDiT",
            category="JointDiT",
            description=(
                "Adds the JointDiT addons (depth-branch LoRAs and joint attention layers) to a FLUX.1-dev MODEL. "
                "Sample the result with JointSampler."
            ),
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1-dev from UNETLoader (flux1-dev.safetensors) or a Flux checkpoint loader."),
                io.Combo.Input(
                    "addon_name",
                    options=addon_files(),
                    tooltip="JointDiT addon file in models/jointdit (the official download: jointdit.safetensors; its .json sidecar is optional).",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="default",
                    optional=True,  # older API prompts lack it
                    tooltip="How the addon weights are kept in memory: default = as in the file (bf16 official, 4.7 GB); "
                    "fp8_e4m3fn / fp8_e5m2 = half of that, computed in the model's dtype (as UNETLoader's weight_dtype).",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The FLUX.1 model running JointDiT.")],
        )

    @classmethod
    def validate_inputs(cls, addon_name: str | None = None) -> bool | str:
        """True, or the message for an addon name that is not in the node's list (checked before the run).

        Raises:
            ValueError: the prompt has no ``addon_name`` at all. ComfyUI does not show a message returned for an
                input the prompt lacks, but it shows an exception's text in place of its own "Required input is missing".
        """
        if addon_name is None:
            raise ValueError(unknown_addon_message(None))
        return unknown_addon_message(addon_name) or True

    @classmethod
    def fingerprint_inputs(cls, addon_name: str, **kwargs) -> tuple:
        """Changes when the addon file or its sidecar changes (ComfyUI then re-runs the node): see :func:`addon_fingerprint`."""
        return addon_fingerprint(addon_name)

    @classmethod
    def execute(cls, model, addon_name: str, weight_dtype: str = "default") -> io.NodeOutput:
        message = unknown_addon_message(addon_name)
        if message is not None:
            raise ValueError(message)
        dm = check_flux(model)
        checkpoint = load_addons(addon_path(addon_name), flux_config(dm))
        log.info("JointDiT: %s (depth_transform=%s)", addon_name, checkpoint.depth_transform)
        return io.NodeOutput(apply_jointdit(model, checkpoint, addon_name, weight_dtype))
