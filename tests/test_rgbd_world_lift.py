"""3D lifting on the RGB-D world (rgbd_world.evaluation.lift) and the software rasteriser of its picture (rgbd_world.world.render3d)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jointdit_core.lift3d import unproject
from rgbd_world.evaluation.lift import point_error, scene_errors
from rgbd_world.figures.lift_world import write_demo_lifts
from rgbd_world.world.render3d import orbit, render_mesh
from rgbd_world.world.scenes import HFOV_DEG, scene, split_indices


def test_point_error_is_scale_free_and_measures_distance():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 3)) + [0, 0, -5]
    mask = np.ones(50, bool)
    exact = point_error(reference * 0.25, reference, mask)
    assert exact["mean_error"] < 1e-12 and abs(exact["scale"] - 4) < 1e-12
    shifted = point_error(reference + [0.1, 0, 0], reference, mask)
    assert 0.05 < shifted["mean_error"] < 0.15 and shifted["relative_error"] > 0
    with pytest.raises(ValueError, match="no valid pixel"):
        point_error(reference, reference, np.zeros(50, bool))


def test_ground_truth_pair_lifts_to_the_exact_points_of_the_world_camera():
    from rgbd_world.world.dataset import normalized_disparity

    s = scene(split_indices("test")[0], size=32)
    # the scene's own ray directions (rgbd_world.world.scenes.camera_rays, forward component 1) times z-depth
    rays = np.stack(np.meshgrid((np.arange(32) + 0.5 - 16) / s.camera.focal, -(np.arange(32) + 0.5 - 16) / s.camera.focal), -1)
    expected = np.concatenate([rays * s.depth[..., None], -s.depth[..., None]], -1)
    assert np.abs(unproject(torch.from_numpy(s.depth), HFOV_DEG).numpy() - expected).max() < 1e-5
    errors = scene_errors(s.rgb, normalized_disparity(s.depth), s.depth)
    assert errors["range"]["mean_error"] < 1e-4 and errors["least_squares"]["mean_error"] < 1e-4
    flat = scene_errors(s.rgb, np.full((32, 32), 0.5) + np.linspace(0, 0.1, 32)[None, :], s.depth)  # a wrong map
    assert flat["range"]["mean_error"] > 0.1


def test_demo_lifts_write_files_that_load(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    s = scene(split_indices("test")[1], size=32)
    disparity = 1.0 / s.depth
    names = write_demo_lifts(tmp_path, (s.rgb, disparity), (s.rgb, disparity))
    assert names == ["3d/joint_generation_00.glb", "3d/joint_generation_00.ply", "3d/depth_estimation_00.glb", "3d/depth_estimation_00.ply"]
    cloud = trimesh.load(tmp_path / names[1])
    sky = (s.depth >= 20.0).sum()
    assert 0 < len(cloud.vertices) <= 32 * 32 - sky  # the sky is removed
    assert len(trimesh.load(tmp_path / names[0], process=False).geometry) == 1


def test_render_mesh_draws_the_nearer_triangle_and_leaves_the_background():
    # two overlapping squares (two triangles each) at depths 2 (red) and 4 (blue), camera looking along -z
    square = np.array([[-1, -1, 0], [1, -1, 0], [-1, 1, 0], [1, 1, 0]], float)
    points = np.concatenate([square + [0, 0, -2], square * 3 + [0, 0, -4]])
    faces = np.array([[0, 1, 2], [2, 1, 3], [4, 5, 6], [6, 5, 7]])
    colors = np.array([[255, 0, 0]] * 4 + [[0, 0, 255]] * 4, np.uint8)
    for order in (faces, faces[::-1]):
        image = render_mesh(points, order, colors, size=64, fov_degrees=90.0, background=(0, 0, 0))
        assert (image[32, 32] == [255, 0, 0]).all()  # centre: the near red square wins whatever the order
        assert (image[10, 10] == [0, 0, 255]).all()  # outside the red square (pixels 16-47): the large blue one (8-55)
        assert (image[2, 2] == 0).all()  # outside both: the background
    # a point moved by orbit keeps its distance from the pivot
    pivot = np.array([0.0, 0.0, -3.0])
    moved = orbit(points, 30.0, 10.0, pivot)
    assert np.allclose(np.linalg.norm(moved - pivot, axis=1), np.linalg.norm(points - pivot, axis=1))
