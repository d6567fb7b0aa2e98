"""Save Depth / Load Depth: depth maps in 16-bit PNG, float EXR, float TIFF and .npy files (thin nodes over
:mod:`jointdit_core.depth_files`, which says which library writes which format and why)."""

from __future__ import annotations

import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui

from jointdit_core.depth_files import FORMATS, READ_SUFFIXES, grey_map, read_depth, write_depth
from jointdit_core.depth import normalize_disparity
from .depth_maps import depth_from_comfy
from .folders import input_file, input_files, output_path
from .node_options import schema_options


class SaveDepth(io.ComfyNode):
    """Write depth maps into ComfyUI's output folder (prefix + counter) at full precision, with a preview."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTSaveDepth",
            display_name="Save Depth (JointDiT)",
            category="JointDiT",
            description=(
                "Saves depth maps without the 8-bit loss of Save Image: png16 (16-bit grey PNG, values in [0, 1] in steps of "
                "1/65535), exr (32-bit float OpenEXR, channel Y), tiff (32-bit float TIFF), npy (float32 numpy array). "
                "Files go to ComfyUI's output folder as <prefix>_<counter>_.<ext>; the node shows an 8-bit preview."
            ),
            inputs=[
                io.Image.Input("depth", tooltip="Depth IMAGE (B, H, W, 3), e.g. from JointDiT Depth Estimation or DecodeDepth (mean of channels saved)."),
                io.String.Input("filename_prefix", default="JointDiT/depth", tooltip="Prefix of the files; may contain a subfolder."),
                io.Combo.Input("format", options=list(FORMATS), default="png16", tooltip="png16, exr, tiff or npy (all lossless at their precision)."),
            ],
            outputs=[],
            is_output_node=True,
            **schema_options(["save depth", "16-bit depth", "exr depth", "depth file"]),
        )

    @classmethod
    def execute(cls, depth, filename_prefix, format) -> io.NodeOutput:
        maps = depth_from_comfy(depth) if depth.ndim != 4 else torch.from_numpy(np.stack([grey_map(one) for one in depth.float().cpu().numpy()]))
        if maps.ndim != 3:
            raise ValueError(f"Save Depth needs an IMAGE (B, H, W, 3) or MASK (B, H, W), got shape {tuple(depth.shape)}")
        height, width = maps.shape[-2:]
        folder, filename, counter, _subfolder = output_path(filename_prefix, width, height)
        for batch_number, one in enumerate(maps):
            name = filename.replace("%batch_num%", str(batch_number))
            write_depth(os.path.join(folder, f"{name}_{counter:05}_"), one, format)
            counter += 1
        preview = maps.clamp(0, 1)[..., None].expand(*maps.shape, 3).contiguous()
        return io.NodeOutput(ui=ui.PreviewImage(preview, cls=cls))


class LoadDepth(io.ComfyNode):
    """Read a depth file from ComfyUI's input folder into a float depth IMAGE and a validity MASK."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTLoadDepth",
            display_name="Load Depth (JointDiT)",
            category="JointDiT",
            description=(
                "Loads a depth map from ComfyUI's input folder: 16-bit or 8-bit PNG, JPEG, EXR, TIFF or .npy (upload PNG/JPEG/TIFF "
                "here; copy EXR/.npy files into the input folder). For EncodeDepth (depth-to-image) and depth tools."
            ),
            inputs=[
                io.Combo.Input("file", options=input_files(READ_SUFFIXES), upload=io.UploadType.image, tooltip="A depth file in ComfyUI's input folder."),
                io.Boolean.Input(
                    "normalize", default=True,
                    tooltip="Min-max normalise the valid pixels to [0, 1] (what IMAGE nodes and previews expect). Off: values as stored "
                    "(16/8-bit files as value / max code).",
                ),
                io.Boolean.Input(
                    "zero_is_missing", default=False, optional=True,
                    tooltip="Treat pixels of value 0 as missing (sparse depth such as LiDAR PNGs stores 'no measurement' as 0): "
                    "they get valid = 0, e.g. for depth completion. Off: only inf is missing.",
                ),
            ],
            outputs=[
                io.Image.Output("depth_image", display_name="depth", tooltip="(1, H, W, 3) float depth; invalid pixels 0."),
                io.Mask.Output("valid_mask", display_name="valid", tooltip="(1, H, W): 1 where the file holds a depth, 0 where it is missing (inf; also 0 with zero_is_missing). Invert it (InvertMask) for a depth-completion noise mask."),
            ],
            **schema_options(["load depth", "16-bit depth", "exr depth", "depth file"]),
        )

    @classmethod
    def execute(cls, file, normalize, zero_is_missing=False) -> io.NodeOutput:
        loaded = read_depth(input_file(file, "depth file"), zero_is_missing=zero_is_missing)
        values = torch.from_numpy(loaded.values)[None]
        valid = torch.from_numpy(loaded.valid)[None]
        if normalize:
            lo, hi = values[valid].min(), values[valid].max()
            values = torch.where(valid, normalize_disparity(values.clamp(lo, hi)), torch.zeros_like(values))
        return io.NodeOutput(values[..., None].expand(*values.shape, 3).contiguous(), valid.float())

    @classmethod
    def validate_inputs(cls, file=None):
        """True, or why ``file`` cannot be read: not inside ComfyUI's input folder, or not there at all.

        Only ``file`` is declared, so ComfyUI still checks the other inputs itself and shows this message once.
        """
        try:
            path = input_file(file, "depth file")
        except ValueError as e:
            return str(e)
        if not path.is_file():
            return f"depth file {file!r} not found in ComfyUI's input folder {folder_paths.get_input_directory()}: upload it there (or copy it in) and pick it from the list"
        return True

    @classmethod
    def fingerprint_inputs(cls, file=None, **kwargs):
        try:
            path = input_file(file, "depth file")
            stat = os.stat(path)
        except (ValueError, OSError) as e:  # validation reports it; never touch a refused path
            return f"unreadable:{e}"
        return f"{path}:{stat.st_mtime_ns}:{stat.st_size}"

