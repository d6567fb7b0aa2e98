"""Schedules, seeded noise, sampler validation and the depth conventions."""

import math

import pytest
import torch

from jointdit_core.depth import disparity_to_model_input, model_output_to_disparity, normalize_disparity
from jointdit_core.sampler import BranchLevels, branch_schedules, sample, seeded_noise, task_levels
from jointdit_core.schedules import custom_schedule, flux_mu, flux_shifted_schedule, linear_schedule


def test_flux_schedule_shift_endpoints():
    assert flux_mu(256) == pytest.approx(0.5) and flux_mu(4096) == pytest.approx(1.15)
    s = flux_shifted_schedule(20, 4096)
    assert len(s) == 21 and s[0] == 1.0 and s[-1] == 0.0
    t = 0.5
    assert s[10] == pytest.approx(math.exp(1.15) / (math.exp(1.15) + (1 / t - 1)))
    assert all(a > b for a, b in zip(s, s[1:]))
    assert linear_schedule(4) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_custom_schedule_validation():
    assert custom_schedule([1.0, 0.5, 0.0]) == [1.0, 0.5, 0.0]
    for bad in ([1.0], [1.2, 0.0], [0.2, 0.5], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            custom_schedule(bad)


def test_seeded_noise_is_reproducible_and_seed_dependent():
    a = seeded_noise(7, (1, 4, 8))
    b = seeded_noise(7, (1, 4, 8))
    c = seeded_noise(8, (1, 4, 8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])


def _linear_velocity(target_rgb, target_depth):
    """Exact velocity field of a flow towards fixed targets: v = (x - target) / t (t > 0)."""

    def velocity(x_rgb, x_depth, t_rgb, t_depth):
        v = lambda x, tgt, t: (x - tgt) / t.clamp_min(1e-8).view(-1, *[1] * (x.ndim - 1))  # noqa: E731
        return v(x_rgb, target_rgb, t_rgb), v(x_depth, target_depth, t_depth)

    return velocity


@pytest.mark.parametrize("steps", [1, 3, 20])
def test_euler_reaches_target_for_every_task_and_step_count(steps):
    target_rgb, target_depth = torch.randn(2, 5), torch.randn(2, 5)
    noise_rgb, noise_depth = seeded_noise(0, (2, 5))
    for task in ("joint_generation", "depth_estimation", "depth_to_image"):
        rgb_s, depth_s = branch_schedules(flux_shifted_schedule(steps, 64), *task_levels(task))
        x_rgb, x_depth = sample(_linear_velocity(target_rgb, target_depth), rgb_s, depth_s, noise_rgb, noise_depth, target_rgb, target_depth)
        assert torch.allclose(x_rgb, target_rgb, atol=1e-5) and torch.allclose(x_depth, target_depth, atol=1e-5)


def test_sampler_errors():
    n = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="needs a depth latent"):
        sample(lambda *a: (n, n), [1, 0], [0, 0], n, n)
    with pytest.raises(ValueError, match="same length"):
        sample(lambda *a: (n, n), [1, 0], [1, 0.5, 0], n, n)
    with pytest.raises(ValueError, match="unknown task"):
        task_levels("inpaint")
    with pytest.raises(ValueError, match="end <= start"):
        branch_schedules([1.0, 0.0], BranchLevels(0.2, 0.5), BranchLevels())


def test_normalize_disparity_per_image_and_constant_map():
    d = torch.stack([torch.linspace(2, 10, 16).view(4, 4), torch.full((4, 4), 3.0)])
    out = normalize_disparity(d)
    assert out[0].min() == 0 and out[0].max() == 1 and torch.equal(out[1], torch.zeros(4, 4))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\[1\] contain NaN"):
        normalize_disparity(torch.stack([torch.ones(2, 2), torch.full((2, 2), float("nan"))]))


@pytest.mark.parametrize("transform", ["none", "inverse"])
def test_depth_encoding_roundtrip(transform):
    d = 0.1 + 0.8 * torch.rand(2, 8, 8)  # interior values: the channel offsets below stay unclamped
    x = disparity_to_model_input(d, transform)
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    if transform == "inverse":
        assert torch.allclose(x[:, 0], 1 - 2 * d, atol=1e-6)  # near (large disparity) becomes dark
    assert torch.allclose(model_output_to_disparity(x, transform), d, atol=1e-6)
    noisy = x + torch.tensor([0.1, -0.1, 0.0]).view(1, 3, 1, 1)  # channel mean removes channel offsets
    assert torch.allclose(model_output_to_disparity(noisy, transform), d, atol=1e-6)
    assert model_output_to_disparity(torch.full((1, 3, 2, 2), 5.0)).max() <= 1  # clamped
    with pytest.raises(ValueError, match="normalised"):
        disparity_to_model_input(d * 3)


@pytest.mark.parametrize("colormap", ["turbo", "viridis", "gray"])
def test_colorize_never_fails_on_non_finite_values(colormap):
    from jointdit_core.depth import colorize

    d = torch.tensor([[0.0, float("nan"), 1.0, float("inf"), float("-inf"), 0.5]])
    c = colorize(d, colormap)
    assert c.shape == (1, 6, 3) and torch.isfinite(c).all()
    assert torch.equal(c[0, 1], torch.zeros(3))  # NaN: black
    assert torch.equal(c[0, 3], c[0, 2]) and torch.equal(c[0, 4], c[0, 0])  # +Inf as near (1), -Inf as far (0)
    assert torch.equal(c[0, [0, 2, 5]], colorize(torch.tensor([[0.0, 1.0, 0.5]]), colormap)[0])  # finite values unchanged
