"""3D lifting (jointdit_core.lift3d) and its .ply / .glb export (jointdit_core.export3d)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jointdit_core.lift3d import disparity_to_depth, edge_mask, focal_from_fov, grid_faces, lift_rgbd, unproject


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_plane_at_known_depth_lands_on_the_plane_at_the_field_of_view_positions():
    h, w, fov = 48, 64, 70.0
    # disparity 0.5 between near 1 and far 3: 1/z = 1/3 + 0.5 * (1 - 1/3) -> z = 1.5
    lifted = lift_rgbd(_rgb(h, w), np.full((h, w), 0.5), fov_degrees=fov, near=1.0, far=3.0, normalize=False, edge_threshold=0)
    z = 1.5
    points = lifted.points.reshape(h, w, 3)
    assert np.abs(points[..., 2] + z).max() < 1e-5  # on the plane z = -1.5 (camera looks along -z)
    half_width = z * math.tan(math.radians(fov / 2))  # the image's left/right edges at depth z
    pixel = 2 * half_width / w
    expected_x = -half_width + (np.arange(w) + 0.5) * pixel
    expected_y = (h / 2 - np.arange(h) - 0.5) * pixel  # square pixels, rows go down, y up
    assert np.abs(points[..., 0] - expected_x[None, :]).max() < 1e-5
    assert np.abs(points[..., 1] - expected_y[:, None]).max() < 1e-5
    assert np.array_equal(lifted.colors.reshape(h, w, 3), lifted.image)  # vertex colours are the pixels
    assert len(lifted.faces) == 2 * (h - 1) * (w - 1)


def test_tilted_plane_stays_a_plane():
    h, w, fov = 40, 56, 50.0
    normal, offset = np.array([0.3, -0.8, 0.5]), -2.0  # plane n . P = c, seen in front of the camera
    f = focal_from_fov(w, fov)
    u = (np.arange(w) + 0.5 - w / 2) / f
    v = (np.arange(h) + 0.5 - h / 2) / f
    rays = np.stack(np.broadcast_arrays(u[None, :], -v[:, None], -np.ones((h, 1))), -1)  # P = z * ray
    depth = offset / (rays @ normal)
    assert (depth > 0).all()
    points = unproject(torch.from_numpy(depth), fov).numpy()
    assert np.abs(points @ normal - offset).max() < 1e-5
    assert np.allclose(-points[..., 2], depth)


def test_depth_step_drops_the_triangles_across_it_only_with_the_threshold_on():
    h, w = 16, 20
    disparity = np.where(np.arange(w)[None, :] < w // 2, 1.0, 0.0) * np.ones((h, 1))  # left half near (1), right half far (4)
    cells = 2 * (h - 1) * (w - 1)
    on = lift_rgbd(_rgb(h, w), disparity, near=1.0, far=4.0, edge_threshold=0.03)
    off = lift_rgbd(_rgb(h, w), disparity, near=1.0, far=4.0, edge_threshold=0)
    side = lambda lifted: (lifted.pixels % w)[lifted.faces] < w // 2  # noqa: E731  (per vertex: on the near side?)
    crossing_on = side(on).any(1) & ~side(on).all(1)
    crossing_off = side(off).any(1) & ~side(off).all(1)
    assert not crossing_on.any()
    assert len(on.faces) == cells - 2 * (h - 1)  # exactly the column of cells across the step is gone
    assert crossing_off.sum() == 2 * (h - 1) and len(off.faces) == cells
    assert len(on.points) == len(off.points) == h * w  # the threshold removes triangles, not points


def test_edge_threshold_is_relative():
    faces = grid_faces(2, 2)
    near_pair = torch.tensor([[1.00, 1.02], [1.00, 1.02]])  # 2 % spread
    far_pair = near_pair * 100  # same ratio far away
    assert edge_mask(near_pair, faces, 0.03).all() and edge_mask(far_pair, faces, 0.03).all()
    assert not edge_mask(near_pair, faces, 0.01).any() and not edge_mask(far_pair, faces, 0.01).any()


def test_disparity_to_depth_interpolates_inverse_depth():
    z = disparity_to_depth(torch.tensor([0.0, 0.25, 1.0]), near=2.0, far=20.0)
    assert torch.allclose(z, torch.tensor([20.0, 1 / (1 / 20 + 0.25 * (1 / 2 - 1 / 20)), 2.0], dtype=torch.float64))
    # a depth-like map (near = 0) is affine in depth
    z = disparity_to_depth(torch.tensor([0.0, 0.5, 1.0]), near=2.0, far=20.0, kind="depth")
    assert torch.allclose(z, torch.tensor([2.0, 11.0, 20.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="kind must be one of"):
        disparity_to_depth(torch.zeros(2), kind="inverse")


def test_normalize_maps_nearest_to_near_and_farthest_to_far():
    disparity = np.random.default_rng(1).uniform(0.2, 0.7, (8, 8))
    lifted = lift_rgbd(_rgb(8, 8), disparity, near=0.5, far=5.0)
    assert math.isclose(float(lifted.depth.min()), 0.5, rel_tol=1e-6) and math.isclose(float(lifted.depth.max()), 5.0, rel_tol=1e-6)
    assert lifted.depth.flat[disparity.argmax()] == lifted.depth.min()


def test_background_threshold_removes_the_sky_and_its_triangles():
    h, w = 12, 10
    disparity = np.linspace(1, 0.2, h)[:, None] * np.ones((1, w))
    disparity[:4] = 0.0  # sky rows
    lifted = lift_rgbd(_rgb(h, w), disparity, background_threshold=0.05, edge_threshold=0)
    assert len(lifted.points) == (h - 4) * w
    assert (lifted.pixels // w >= 4).all()
    assert len(lifted.faces) == 2 * (h - 5) * (w - 1) and lifted.faces.max() < len(lifted.points)
    assert np.array_equal(lifted.colors, lifted.image[4:].reshape(-1, 3))


def test_stride_keeps_the_camera():
    h, w = 9, 13
    full = lift_rgbd(_rgb(h, w), np.random.default_rng(2).random((h, w)), edge_threshold=0)
    half = lift_rgbd(_rgb(h, w), np.random.default_rng(2).random((h, w)), edge_threshold=0, stride=2)
    grid = np.arange(h * w).reshape(h, w)[::2, ::2].reshape(-1)
    assert np.array_equal(half.pixels, grid)
    assert np.allclose(half.points, full.points[grid])
    assert len(half.faces) == 2 * (len(range(0, h, 2)) - 1) * (len(range(0, w, 2)) - 1)


def test_float_image_and_torch_inputs():
    rgb = torch.rand(6, 7, 3)
    lifted = lift_rgbd(rgb, torch.rand(6, 7))
    assert lifted.colors.dtype == np.uint8
    assert np.array_equal(lifted.colors, np.round(rgb.numpy().reshape(-1, 3) * 255).astype(np.uint8))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rgb=np.zeros((8, 8, 3)), disparity=np.zeros((8, 6))), "must be the same size"),
        (dict(disparity=np.where(np.eye(8, dtype=bool), np.nan, 0.5)), "NaN"),
        (dict(disparity=np.full((8, 8), np.inf)), "NaN or infinite"),
        (dict(near=2.0, far=1.0), "near must be smaller than far"),
        (dict(near=0.0), "near must be a finite number > 0"),
        (dict(fov_degrees=180.0), "fov_degrees"),
        (dict(normalize=False, disparity=np.full((8, 8), 1.5)), "switch normalize on"),
        (dict(edge_threshold=-0.1), "edge_threshold"),
        (dict(background_threshold=1.0), "background_threshold"),
        (dict(stride=0), "stride"),
        (dict(rgb=np.zeros((8, 8))), "the image must be"),
    ],
)
def test_bad_inputs_get_clear_errors(kwargs, message):
    args = dict(rgb=np.zeros((8, 8, 3), np.uint8), disparity=np.random.default_rng(0).random((8, 8)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        lift_rgbd(args.pop("rgb"), args.pop("disparity"), **args)


# ---- export: the files load back through trimesh's own reader


def _vertex_colors(mesh) -> np.ndarray:
    """COLOR_0 as trimesh's glTF reader gives it: vertex colours, or a vertex attribute next to a material."""
    if mesh.visual.kind == "vertex":
        return np.asarray(mesh.visual.vertex_colors)
    return np.asarray(mesh.visual.vertex_attributes["color"])


@pytest.fixture
def lifted():
    h, w = 10, 12
    disparity = np.where(np.arange(w)[None, :] < 5, 0.9, 0.1) * np.ones((h, 1))
    disparity[:2] = 0.0
    return lift_rgbd(_rgb(h, w, 3), disparity, background_threshold=0.05)


def test_ply_loads_back_with_its_points_and_colours(tmp_path, lifted):
    trimesh = pytest.importorskip("trimesh")
    from jointdit_core.export3d import save_ply

    cloud = trimesh.load(save_ply(tmp_path / "cloud.ply", lifted))
    assert isinstance(cloud, trimesh.PointCloud)
    assert len(cloud.vertices) == len(lifted.points) == 8 * 12
    assert np.allclose(cloud.vertices, lifted.points)
    assert np.array_equal(np.asarray(cloud.colors)[:, :3], lifted.colors)


@pytest.mark.parametrize("content", ["mesh", "points", "mesh+points"])
def test_glb_loads_back_with_its_vertices_faces_and_colours(tmp_path, lifted, content):
    trimesh = pytest.importorskip("trimesh")
    from jointdit_core.export3d import save_glb

    scene = trimesh.load(save_glb(tmp_path / "scene.glb", lifted, content=content), process=False)
    geometry = list(scene.geometry.values())
    meshes = [g for g in geometry if isinstance(g, trimesh.Trimesh)]
    clouds = [g for g in geometry if isinstance(g, trimesh.PointCloud)]
    assert len(meshes) == ("mesh" in content) and len(clouds) == ("points" in content)
    assert 0 < len(lifted.faces) < 2 * 7 * 11  # sky and the step removed some triangles
    for mesh in meshes:
        assert len(mesh.vertices) == len(lifted.points) and np.allclose(mesh.vertices, lifted.points)
        assert np.array_equal(mesh.faces, lifted.faces)
        assert np.array_equal(_vertex_colors(mesh)[:, :3], lifted.colors)
    for cloud in clouds:
        assert len(cloud.vertices) == len(lifted.points) and np.allclose(cloud.vertices, lifted.points)
        assert np.array_equal(np.asarray(cloud.colors)[:, :3], lifted.colors)


def test_glb_stands_on_the_ground_facing_the_3d_preview_camera(tmp_path, lifted):
    trimesh = pytest.importorskip("trimesh")
    from jointdit_core.export3d import save_glb

    scene = trimesh.load(save_glb(tmp_path / "posed.glb", lifted, content="mesh+points"), process=False)
    for name in scene.graph.nodes_geometry:  # mesh and points share one pose
        pose, _ = scene.graph[name]
        world = trimesh.transform_points(lifted.points, pose)
        lo, hi = world.min(axis=0), world.max(axis=0)
        assert np.isclose(lo[1], 0, atol=1e-5)  # on the viewer's ground grid
        turned_back = trimesh.transform_points(world, trimesh.transformations.rotation_matrix(np.radians(-45), [0, 1, 0]))
        centre = (turned_back.min(axis=0) + turned_back.max(axis=0)) / 2
        assert np.allclose(centre[[0, 2]], 0, atol=1e-5)  # the bounding box centred on the vertical axis
        toward_camera = pose[:3, :3] @ np.array([0.0, 0.0, 1.0])  # the photo's viewing direction, reversed
        assert np.allclose(toward_camera, [np.sqrt(0.5), 0, np.sqrt(0.5)])  # Preview 3D's camera: the +x +z diagonal
        assert np.allclose(np.linalg.det(pose[:3, :3]), 1)  # a rotation: no scaling, no mirroring


def test_glb_materials_are_unlit_and_not_metallic(tmp_path, lifted):
    pytest.importorskip("trimesh")
    import json
    import struct

    from jointdit_core.export3d import save_glb

    for texture in (False, True):
        data = save_glb(tmp_path / "m.glb", lifted, content="mesh+points", texture=texture).read_bytes()
        length = struct.unpack_from("<I", data, 12)[0]
        assert struct.unpack_from("<I", data, 8)[0] == len(data)  # the header's total length is right
        tree = json.loads(data[20 : 20 + length])
        assert "KHR_materials_unlit" in tree["extensionsUsed"]
        primitives = [p for m in tree["meshes"] for p in m["primitives"]]
        assert sorted(p["mode"] for p in primitives) == [0, 4]  # POINTS and TRIANGLES
        for primitive in primitives:
            material = tree["materials"][primitive["material"]]
            assert "KHR_materials_unlit" in material["extensions"] and material["pbrMetallicRoughness"]["metallicFactor"] == 0


def test_textured_glb_carries_the_image(tmp_path, lifted):
    trimesh = pytest.importorskip("trimesh")
    from jointdit_core.export3d import save_glb

    mesh = next(iter(trimesh.load(save_glb(tmp_path / "tex.glb", lifted, texture=True), process=False).geometry.values()))
    assert len(mesh.vertices) == len(lifted.points)
    assert np.allclose(mesh.visual.uv, lifted.uvs, atol=1e-6)
    assert np.array_equal(np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")), lifted.image)


def test_a_mesh_without_triangles_is_refused(tmp_path):
    pytest.importorskip("trimesh")
    from jointdit_core.export3d import save_glb

    empty = lift_rgbd(_rgb(4, 4), np.zeros((4, 4)) + np.arange(4) * 0.3, edge_threshold=1e-6)
    with pytest.raises(ValueError, match="no triangles"):
        save_glb(tmp_path / "x.glb", empty)
    save_glb(tmp_path / "x.glb", empty, content="points")


@pytest.mark.parametrize("size, stride", [((1, 1), 1), ((1, 9), 1), ((4, 4), 4)])
def test_a_map_too_small_for_a_triangle_says_so_instead_of_raise_edge_threshold(tmp_path, size, stride):
    pytest.importorskip("trimesh")
    from jointdit_core.export3d import save_glb

    lifted = lift_rgbd(_rgb(*size), np.linspace(0, 1, size[0] * size[1]).reshape(size), stride=stride, edge_threshold=0)
    with pytest.raises(ValueError, match="too small for a mesh.*at least 2x2 pixels") as info:
        save_glb(tmp_path / "x.glb", lifted)
    assert "edge_threshold" not in str(info.value)
    save_glb(tmp_path / "x.glb", lifted, content="points")



def test_equirectangular_sphere_of_known_radius_lifts_to_that_radius_with_a_closed_seam():
    h, w, radius = 16, 32, 2.5
    image = np.zeros((h, w, 3), np.uint8)
    lifted = lift_rgbd(image, np.ones((h, w)), near=radius, far=4 * radius, normalize=False, projection="equirectangular", edge_threshold=0.03)
    points = lifted.points.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), radius, rtol=1e-6)
    assert lifted.projection == "equirectangular" and lifted.fov_degrees == 360.0
    # longitude 0 / latitude 0 (between the middle pixels) lies straight ahead along -z; up is +y
    ahead = points.reshape(h, w, 3)[h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1].mean(axis=(0, 1))
    np.testing.assert_allclose(ahead / np.linalg.norm(ahead), [0, 0, -1], atol=1e-9)
    assert points.reshape(h, w, 3)[0, :, 1].min() > 0.99 * radius * np.cos(np.pi / (2 * h))
    # every row of cells is closed around the sphere, the seam (column W-1 to column 0) included
    faces = lifted.faces
    assert len(faces) == 2 * (h - 1) * w
    columns = lifted.pixels[faces] % w
    seam = (columns == 0).any(axis=1) & (columns == w - 1).any(axis=1)
    assert seam.sum() == 2 * (h - 1)
    # counter-clockwise seen from the centre: every normal points back at the viewer inside
    a, b, c = (points[faces[:, k]] for k in range(3))
    assert (np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3) < 0).all()


def test_equirectangular_edges_cut_the_seam_like_any_column():
    h, w = 8, 16
    distance = np.ones((h, w))
    distance[:, -1] = 0.2  # a near object on the last column: its triangles to both neighbours are cut
    lifted = lift_rgbd(np.zeros((h, w, 3)), distance, kind="depth", near=1.0, far=5.0, projection="equirectangular", edge_threshold=0.1)
    columns = lifted.pixels[lifted.faces] % w
    assert not ((columns == w - 1).any(axis=1) & ((columns == 0) | (columns == w - 2)).any(axis=1)).any()
    assert len(lifted.faces) == 2 * (h - 1) * (w - 2)
    with pytest.raises(ValueError, match="projection must be one of"):
        lift_rgbd(np.zeros((h, w, 3)), distance, projection="fisheye")
