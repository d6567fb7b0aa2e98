"""RGBDTo3D ("JointDiT RGB-D to 3D"): an image + its depth map -> .glb mesh and .ply point cloud in ComfyUI's output.

The math is :mod:`jointdit_core.lift3d`, the files :mod:`jointdit_core.export3d` (trimesh). How the result
reaches ComfyUI's 3D viewer:

* every release (0.3.64 on): the ``glb_path`` STRING output (``<subfolder>/<file>.glb`` relative to the output
  folder) goes into the core node *Preview 3D* (``Preview3D``, input ``model_file``), whose viewer loads
  .glb/.gltf/.obj/.fbx/.stl from the output folder. Its 0.3.64 viewer has no .ply loader; 0.28.1's also shows
  .ply point clouds (``ply_path`` into Preview3D);
* releases with ComfyUI's 3D file types (``comfy_api`` ``File3D``, 0.28.1): also ``model_3d`` (FILE_3D_GLB)
  and ``point_cloud`` (FILE_3D_PLY) outputs, for *Save 3D Model* (SaveGLB), *Preview Point Cloud* and the
  other 3D nodes of that release. They come after the STRING outputs, so workflows stay valid in both.

The node also lists its files as ``3d`` results (the format of SaveGLB's), so they appear in the history.
"""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from jointdit_core.export3d import GLB_CONTENTS, save_glb, save_ply
from jointdit_core.lift3d import DEFAULT_EDGE_THRESHOLD, DEFAULT_FAR, DEFAULT_FOV_DEGREES, DEFAULT_NEAR, MAP_KINDS, PROJECTIONS, lift_rgbd

from .depth_maps import depth_from_comfy
from .folders import output_path
from .node_options import advanced, schema_options

HAS_FILE3D = hasattr(io, "File3DGLB") and hasattr(io, "File3DPLY")  # ComfyUI's 3D file types (0.28.1; not 0.3.64)


def _outputs() -> list:
    outputs = [
        io.String.Output("glb_path", display_name="glb_path", tooltip="The .glb file relative to the output folder: connect to Preview 3D's model_file."),
        io.String.Output("ply_path", display_name="ply_path", tooltip="The .ply point cloud relative to the output folder."),
    ]
    if HAS_FILE3D:
        outputs += [
            io.File3DGLB.Output("model_3d", display_name="model_3d", tooltip="The .glb as a 3D file (Save 3D Model, Preview 3D)."),
            io.File3DPLY.Output("point_cloud", display_name="point_cloud", tooltip="The .ply as a 3D file (Preview Point Cloud)."),
        ]
    return outputs


def _pairs(image: torch.Tensor, depth: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(image_i, depth_i) per batch item; a batch of 1 on either side is repeated. Raises ValueError otherwise."""
    d = depth_from_comfy(depth)
    if image.ndim != 4:
        raise ValueError(f"image must be an IMAGE (B, H, W, C), got shape {tuple(image.shape)}")
    n_image, n_depth = image.shape[0], d.shape[0]
    if n_image != n_depth and 1 not in (n_image, n_depth):
        raise ValueError(f"the image batch has {n_image} images but the depth batch {n_depth} maps: give equal batches (or one of 1)")
    n = max(n_image, n_depth)
    return [(image[min(i, n_image - 1)], d[min(i, n_depth - 1)]) for i in range(n)]


class RGBDTo3D(io.ComfyNode):
    """IMAGE + depth IMAGE -> .glb (mesh) and .ply (points) files in the output folder, for Preview 3D."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTRGBDTo3D",
            display_name="JointDiT RGB-D to 3D",
            category="JointDiT",
            is_output_node=True,
            **schema_options(["depth to 3d", "point cloud", "mesh", "glb", "ply", "3d lifting", "rgbd"]),
            description=(
                "Lifts an image and its depth map (Decode Depth's output, or any depth pack's) to 3D: a mesh over the "
                "pixel grid with the image's colours (.glb) and a coloured point cloud (.ply), written to the output "
                "folder. Relative disparity has no scale: near/far set the depth of the nearest and farthest pixel. "
                "Connect glb_path to Preview 3D to look at it."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The rgb image (B, H, W, 3)."),
                io.Image.Input("depth", tooltip="Depth map IMAGE of the same size, near = bright (Decode Depth, Depth Anything, MiDaS)."),
                io.Float.Input("fov_degrees", default=DEFAULT_FOV_DEGREES, min=1.0, max=170.0, step=0.5,
                               tooltip="Horizontal field of view of the camera in degrees (60: a typical photo; smaller = flatter)."),
                io.Float.Input("near", default=DEFAULT_NEAR, min=0.001, max=10000.0, step=0.01,
                               tooltip="Depth of the nearest pixel (any unit). Only far/near changes the shape."),
                io.Float.Input("far", default=DEFAULT_FAR, min=0.002, max=100000.0, step=0.1,
                               tooltip="Depth of the farthest pixel; larger than near."),
                io.Float.Input("edge_threshold", default=DEFAULT_EDGE_THRESHOLD, min=0.0, max=10.0, step=0.005,
                               tooltip="Drop triangles whose depths differ by more than this fraction (object edges; MoGe uses 0.03). "
                                       "Small images need more (0.1-0.2 at 64 px). 0 keeps every triangle."),
                io.Float.Input("background_threshold", default=0.0, min=0.0, max=0.99, step=0.01,
                               tooltip="Remove pixels whose normalised disparity is below this (sky, far background; try 0.02-0.05). 0 keeps all."),
                io.String.Input("filename_prefix", default="JointDiT/3d", tooltip="Output file prefix (subfolder/name), as in Save Image."),
                io.Combo.Input("depth_kind", options=list(MAP_KINDS), default="disparity", **advanced(),
                               tooltip="disparity: near = bright (JointDiT, Depth Anything, MiDaS). depth: near = dark (Marigold without invert)."),
                io.Boolean.Input("normalize", default=True, **advanced(),
                                 tooltip="Min-max normalise each depth map first, so its nearest pixel is at 'near' and its farthest at 'far'."),
                io.Combo.Input("glb_content", options=list(GLB_CONTENTS), default="mesh", **advanced(),
                               tooltip="What the .glb holds: the mesh, the points, or both."),
                io.Boolean.Input("texture", default=False, **advanced(),
                                 tooltip="Colour the mesh with the image as a texture instead of per-vertex colours."),
                io.Int.Input("stride", default=1, min=1, max=16, **advanced(),
                             tooltip="Keep every n-th pixel row and column (2 for images over 1 megapixel keeps files small)."),
                io.Combo.Input("projection", options=list(PROJECTIONS), default="perspective", optional=True, **advanced(),
                               tooltip="perspective: a photo seen through fov_degrees. equirectangular: a 360-degree panorama "
                                       "(width = 2 x height, e.g. from the JointDiT Window Sampler with wrap) lifted onto a "
                                       "sphere around the viewer, the wrap seam closed; fov_degrees is not used."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, image, depth, fov_degrees, near, far, edge_threshold, background_threshold, filename_prefix,
                depth_kind="disparity", normalize=True, glb_content="mesh", texture=False, stride=1, projection="perspective") -> io.NodeOutput:
        import folder_paths

        pairs = _pairs(image, depth)
        lifted = [
            lift_rgbd(rgb, d, kind=depth_kind, fov_degrees=fov_degrees, near=near, far=far, normalize=normalize,
                      edge_threshold=edge_threshold, background_threshold=background_threshold, stride=stride, projection=projection)
            for rgb, d in pairs
        ]
        height, width = pairs[0][1].shape
        folder, name, counter, subfolder = output_path(filename_prefix, width, height)
        results, glb_paths, ply_paths = [], [], []
        for i, item in enumerate(lifted):
            stem = f"{name}_{counter + i:05}_"
            save_glb(os.path.join(folder, stem + ".glb"), item, content=glb_content, texture=texture)
            save_ply(os.path.join(folder, stem + ".ply"), item)
            for ext, paths in ((".glb", glb_paths), (".ply", ply_paths)):
                results.append({"filename": stem + ext, "subfolder": subfolder, "type": "output"})
                paths.append(f"{subfolder}/{stem}{ext}" if subfolder else stem + ext)
        values = [glb_paths[0], ply_paths[0]]
        if HAS_FILE3D:
            from comfy_api.latest import Types

            values += [Types.File3D(os.path.join(folder_paths.get_output_directory(), glb_paths[0])),
                       Types.File3D(os.path.join(folder_paths.get_output_directory(), ply_paths[0]))]
        return io.NodeOutput(*values, ui={"3d": results})
