"""RGB-D world scenes: determinism, splits, exact depth, captions."""

import numpy as np
import pytest

from rgbd_world.world import scenes as W


def _unit_rays(cam):
    """Independent pinhole model: unit ray per pixel centre and its cosine to the optical axis."""
    right, up, forward = cam.rotation[:, 0], cam.rotation[:, 1], cam.rotation[:, 2]
    j = np.arange(cam.width) + 0.5
    i = np.arange(cam.height) + 0.5
    x = (j[None, :] - cam.width / 2) / cam.focal
    y = -(i[:, None] - cam.height / 2) / cam.focal
    d = forward + x[..., None] * right + y[..., None] * up
    u = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return u, u @ forward


def _world_points(s):
    """Unproject the z-depth map: (H, W, 3) world points."""
    u, cos = _unit_rays(s.camera)
    return s.camera.position + (s.depth / cos)[..., None] * u


def _first(pred, n=2000):
    for i in range(n):
        s = W.scene(i, size=64, supersample=1)
        if pred(s):
            return s
    raise AssertionError("no scene found")


def test_same_index_same_scene_and_indices_differ():
    a, b, c = W.scene(7), W.scene(7), W.scene(8)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth) and a.caption == b.caption
    assert not np.array_equal(a.depth, c.depth)


def test_splits_are_fixed_and_disjoint():
    train, test = W.split_indices("train"), W.split_indices("test")
    assert len(train) >= 10_000 and len(test) >= 500
    assert not set(test) & set(train)
    with pytest.raises(ValueError, match="unknown split"):
        W.split_indices("val")


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_dtypes_and_finite_positive_depth(size):
    s = W.scene(W.split_indices("test")[3], size=size, supersample=1 if size == 128 else 2)
    assert s.rgb.shape == (size, size, 3) and s.rgb.dtype == np.uint8
    assert s.depth.shape == (size, size) and s.depth.dtype == np.float32
    assert np.isfinite(s.depth).all() and (s.depth > 0).all() and s.depth.max() <= W.FAR
    assert set(np.unique(s.labels)) <= {-2, -1, *range(len(s.objects))}


def test_ground_and_backdrop_depth_are_exact():
    s = W.scene(11, size=64, supersample=1)
    p = _world_points(s)
    ground = s.labels == -1
    assert ground.sum() > 500
    np.testing.assert_allclose(p[ground][:, 1], 0.0, atol=1e-4)  # on the plane y = 0
    assert (s.depth[s.labels == -2] == W.FAR).all()


def test_sphere_depth_equals_analytic_ray_sphere_distance_at_centre_pixel():
    def has_visible_sphere(s):
        return any(o.shape == "sphere" for o in s.objects)

    s = _first(has_visible_sphere)
    k, sph = next((k, o) for k, o in enumerate(s.objects) if o.shape == "sphere")
    cam = s.camera
    centre = np.array([sph.x, sph.radius, sph.z])
    xc, yc, zc = (centre - cam.position) @ cam.rotation
    col = int(np.floor(cam.width / 2 + cam.focal * xc / zc))
    row = int(np.floor(cam.height / 2 - cam.focal * yc / zc))
    assert s.labels[row, col] == k
    u, cos = _unit_rays(cam)
    oc = cam.position - centre
    b = u[row, col] @ oc
    dist = -b - np.sqrt(b * b - (oc @ oc - sph.radius**2))
    assert s.depth[row, col] == pytest.approx(dist * cos[row, col], rel=1e-6)
    # an object in front: nearer than the ground (or backdrop) the same ray would hit
    assert s.depth[row, col] < min(cam.position[1] / max(-u[row, col, 1], 1e-9) * cos[row, col], W.FAR)


def _surface_residual(o, p):
    """Distance-like residual of world points p (N, 3) from the surface of object o."""
    q = p - np.array([o.x, 0.0, o.z])
    r = np.hypot(q[:, 0], q[:, 2])
    if o.shape == "sphere":
        return np.abs(np.linalg.norm(q - [0, o.radius, 0], axis=1) - o.radius)
    if o.shape == "cube":
        c, s = np.cos(o.yaw), np.sin(o.yaw)
        lx, lz = c * q[:, 0] - s * q[:, 2], s * q[:, 0] + c * q[:, 2]
        linf = np.max(np.abs(np.stack([lx, q[:, 1] - o.radius, lz], 1)), axis=1)
        return np.abs(linf - o.radius)
    if o.shape == "cylinder":
        side = np.where((q[:, 1] > -1e-4) & (q[:, 1] < o.height + 1e-4), np.abs(r - o.radius), np.inf)
        top = np.where(r <= o.radius + 1e-4, np.abs(q[:, 1] - o.height), np.inf)
        return np.minimum(side, top)
    if o.shape == "cone":
        return np.abs(r - o.radius / o.height * (o.height - q[:, 1]))
    raise AssertionError(o.shape)


def _inside(o, p):
    """True for world points p (N, 3) strictly inside object o."""
    q = p - np.array([o.x, 0.0, o.z])
    r = np.hypot(q[:, 0], q[:, 2])
    up = (q[:, 1] > 0) & (q[:, 1] < o.height)
    if o.shape == "sphere":
        return np.linalg.norm(q - [0, o.radius, 0], axis=1) < o.radius
    if o.shape == "cube":
        c, s = np.cos(o.yaw), np.sin(o.yaw)
        lx, lz = c * q[:, 0] - s * q[:, 2], s * q[:, 0] + c * q[:, 2]
        return up & (np.abs(lx) < o.radius) & (np.abs(lz) < o.radius)
    if o.shape == "cylinder":
        return up & (r < o.radius)
    return up & (r < o.radius / o.height * (o.height - q[:, 1]))


@pytest.mark.parametrize("shape", W.SHAPES)
def test_object_pixels_unproject_onto_the_object_surface(shape):
    s = _first(lambda s: any(o.shape == shape and (s.labels == k).sum() > 30 for k, o in enumerate(s.objects)))
    p = _world_points(s)
    for k, o in enumerate(s.objects):
        mask = s.labels == k
        assert mask.any()
        assert _surface_residual(o, p[mask]).max() < 2e-4 * o.z, (o, _surface_residual(o, p[mask]).max())
        # occlusion order: every object pixel is nearer than the ground/backdrop behind it
        u, cos = _unit_rays(s.camera)
        ground_z = np.where(u[..., 1] < 0, s.camera.position[1] / np.maximum(-u[..., 1], 1e-12) * cos, np.inf)
        assert (s.depth[mask] <= np.minimum(ground_z, W.FAR)[mask] + 1e-5).all()
    # nearest hit: the ray is outside every object before it reaches the recorded depth
    for frac in (0.5, 0.9, 0.99, 0.999):
        before = s.camera.position + (p - s.camera.position) * frac
        for o in s.objects:
            assert not _inside(o, before.reshape(-1, 3)).any(), (o, frac)


def test_every_object_is_visible_and_colours_match():
    for i in range(60):
        s = W.scene(i, size=64)
        for k, o in enumerate(s.objects):
            mask = s.labels == k
            assert mask.sum() >= 10, (i, o)
            if o.texture == "" and o.colour in ("red", "green", "blue"):
                mean = s.rgb[mask].astype(float).mean(axis=0)
                assert np.argmax(mean) == ("red", "green", "blue").index(o.colour), (i, o, mean)


def test_captions_follow_the_grammar_and_describe_the_objects():
    seen = set()
    for i in list(range(150)) + list(W.split_indices("test")[:50]):
        s = W.scene(i, size=16, supersample=1)
        words = s.caption.split()
        assert set(words) <= set(W.VOCABULARY), s.caption
        parsed = W.parse_caption(s.caption)
        assert len(parsed["objects"]) == len(s.objects)
        for (size, texture, colour, shape), o in zip(parsed["objects"], s.objects):
            assert (colour, shape) == (o.colour, o.shape)
            if size is not None:
                assert (size, texture) == (o.size, o.texture)
        rel = parsed["relation"]
        if rel:
            a, b = s.objects[0], s.objects[1]
            assert {"left of": a.x < b.x, "right of": a.x > b.x, "in front of": a.z < b.z, "behind": a.z > b.z}[rel]
        seen.update({rel, words[0], len(s.objects)})
    assert {"left of", "right of", "in front of", "behind", "two", "a", "an", 1, 2, 3} <= seen


def test_parse_caption_rejects_text_outside_the_grammar():
    assert W.parse_caption("an orange cone left of a small blue cube on a striped floor")["relation"] == "left of"
    for bad in ("a red", "a red sphere near a blue cube", "a pink sphere", "two red sphere", "a red sphere on a floor"):
        with pytest.raises(ValueError, match="caption"):
            W.parse_caption(bad)
