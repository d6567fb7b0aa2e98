"""Window sampling (MultiDiffusion-style) of wide and 360-degree latents."""

import pytest
import torch

from jointdit_core.pipeline import generate
from jointdit_core.sampler import sample
from jointdit_core.schedules import linear_schedule
from jointdit_core.windows import WindowSettings, decode_wrapped, plan_windows, window_weights, windowed_velocity

SIGMAS = linear_schedule(4)


def _t(seed, shape=(2, 4, 6, 16)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _velocity(x_rgb, x_depth, s_rgb, s_depth):
    """A toy joint velocity: mixes the branches, depends on the sigmas and on neighbours (3x3 box)."""
    blur = torch.nn.functional.avg_pool2d
    v_rgb = x_rgb - 0.5 * blur(x_depth, 3, 1, 1) * s_rgb.view(-1, 1, 1, 1)
    v_depth = x_depth + 0.25 * blur(x_rgb, 3, 1, 1) * s_depth.view(-1, 1, 1, 1)
    return v_rgb, v_depth


def _positional(x_rgb, x_depth, s_rgb, s_depth):
    """A velocity that depends on the column inside the window: what a model with position ids does."""
    ramp = torch.linspace(-1.0, 1.0, x_rgb.shape[-1])
    return x_rgb - ramp, x_depth + 2 * ramp


def _run(velocity, **clean):
    return sample(velocity, SIGMAS, SIGMAS, _t(1), _t(2), callback=None, **clean)


@pytest.mark.parametrize("wrap", [False, True])
def test_weights_sum_to_one_everywhere(wrap):
    for height, width, window, overlap in [(6, 16, (6, 8), 2), (10, 30, (4, 6), 3), (8, 8, (8, 8), 0), (12, 40, (6, 10), 4), (4, 8, (16, 16), 12)]:
        grid = plan_windows(height, width, window, overlap, wrap)
        weights = window_weights(grid)
        assert len(weights) == len(grid.windows) and (weights > 0).all()
        total = torch.zeros(height, width, dtype=torch.float64)
        for (row, col), w in zip(grid.windows, weights):
            total[row : row + grid.size[0]].index_add_(1, grid.column_index(col), w)
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)
        assert all(c % 2 == 0 for c in grid.cols) and all(r % 2 == 0 for r in grid.rows)


def test_window_planning_overlaps_and_wraps():
    plain = plan_windows(6, 32, (6, 12), 4)
    assert plain.cols[0] == 0 and plain.cols[-1] == 32 - 12 and len(plain.rows) == 1
    assert all(b - a <= 12 - 4 for a, b in zip(plain.cols, plain.cols[1:]))
    wrapped = plan_windows(6, 32, (6, 12), 4, wrap=True)
    assert len(wrapped.cols) == 4 and max(wrapped.cols) + 12 > 32  # the last window crosses the seam
    assert plan_windows(6, 16, (6, 16), 4, wrap=True).cols == (0, 8)  # a full-width window gets a half-turned twin
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(6, 32, (6, 12), 12)
    with pytest.raises(ValueError, match="even"):
        plan_windows(6, 32, (6, 11), 2)
    with pytest.raises(ValueError, match="windows per batch"):
        windowed_velocity(_velocity, plain, 0)


def test_one_window_covering_the_latent_equals_plain_sampling_bit_for_bit():
    grid = plan_windows(6, 16, (8, 64), 2)  # larger than the latent: cut to one window
    assert grid.windows == [(0, 0)]
    plain = _run(_velocity, clean_rgb=_t(3))
    windowed = _run(windowed_velocity(_velocity, grid), clean_rgb=_t(3))
    assert torch.equal(plain[0], windowed[0]) and torch.equal(plain[1], windowed[1])


def test_windows_batched_or_not_give_the_same_result():
    grid = plan_windows(6, 16, (6, 6), 2, wrap=True)
    assert len(grid.windows) == 4
    one = _run(windowed_velocity(_velocity, grid, 1))
    for per_batch in (2, 3, 4, 9):  # 3: balanced batches of 2; 9: all at once
        batched = _run(windowed_velocity(_velocity, grid, per_batch))
        torch.testing.assert_close(batched, one, atol=1e-6, rtol=0)
    calls = []
    counting = windowed_velocity(lambda *a: calls.append(a[0].shape[0]) or _velocity(*a), plan_windows(6, 20, (6, 6), 2), 3)
    counting(_t(1, (2, 4, 6, 20)), _t(2, (2, 4, 6, 20)), torch.ones(2), torch.ones(2))
    assert calls == [2 * 3, 2 * 3]  # 5 windows in 2 balanced calls of 3 windows (one repeat) x 2 pairs


def _seam_and_steps(x):
    """(mean |first column - last column|, largest mean |neighbouring column difference| elsewhere)."""
    seam = (x[..., 0] - x[..., -1]).abs().mean()
    steps = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(0, 1, 2))
    return float(seam), float(steps.max())


def test_wrap_makes_first_and_last_columns_continuous():
    flat = torch.zeros(2, 4, 6, 16)  # a start without a seam: any seam in the output is made by the windows

    def run(wrap):
        return sample(windowed_velocity(_positional, plan_windows(6, 16, (6, 8), 4, wrap)), SIGMAS, SIGMAS, flat, flat)

    for open_, wrapped in zip(run(False), run(True)):
        seam, steps = _seam_and_steps(open_)
        assert seam > 3 * steps  # without wrap the two edges come from windows at opposite ends
        seam, steps = _seam_and_steps(wrapped)
        assert seam <= steps + 1e-6  # with wrap the seam is like any other neighbouring column


def _latent(seed, width=6):
    return torch.randn(1, 16, 8, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("task", ["joint_generation", "depth_estimation", "depth_to_image"])
def test_pipeline_one_window_equals_plain_generation_bit_for_bit(golden_model, golden, task):
    tensors, _ = golden
    txt, y = tensors["case.txt"], tensors["case.vec"]
    kwargs = dict(rgb_latent=_latent(1) if task == "depth_estimation" else None, depth_latent=_latent(2) if task == "depth_to_image" else None,
                  latent_size=(8, 6), steps=2, seed=4, progress=False)
    plain = generate(golden_model, txt, y, task, **kwargs)
    windowed = generate(golden_model, txt, y, task, windows=WindowSettings((8, 6), overlap=2), **kwargs)
    assert torch.equal(plain[0], windowed[0]) and torch.equal(plain[1], windowed[1])


def test_pipeline_wide_masked_depth_estimation_in_windows(golden_model, golden):
    tensors, _ = golden
    txt, y = tensors["case.txt"], tensors["case.vec"]
    photo, depth = _latent(1, 16), _latent(2, 16)
    mask = torch.zeros(1, 1, 8, 16)
    mask[..., :6] = 1
    calls = []
    windows = WindowSettings((8, 6), overlap=2, wrap=True, per_batch=2)
    rgb, out = generate(golden_model, txt, y, "depth_estimation", rgb_latent=photo, depth_latent=depth, depth_mask=mask, steps=2, seed=4,
                        progress=False, windows=windows, callback=calls.append)
    assert out.shape == (1, 16, 8, 16) and torch.equal(rgb, photo) and torch.equal(out[..., 6:], depth[..., 6:])
    assert (out[..., :6] - depth[..., :6]).abs().max() > 1e-3 and len(calls) == 2


def test_a_window_larger_than_a_small_latent_keeps_a_valid_overlap():
    strip = plan_windows(4, 32, (16, 16), 8)  # 4 rows high: one row of windows 4 high, 16 wide
    assert strip.size == (4, 16) and strip.rows == (0,) and strip.cols == (0, 8, 16)
    around = plan_windows(4, 8, (16, 16), 12, wrap=True)  # cut to the full width: a half-turned second window
    assert around.size == (4, 8) and around.cols == (0, 4)


def test_the_step_cache_is_refused_with_windows(golden_model, golden):
    """Successive calls of one windowed step hold different windows, so a cache comparing them would mix windows."""
    from jointdit_core.step_cache import CacheSettings, JointStepCache

    tensors, _ = golden
    with pytest.raises(ValueError, match="step cache does not work with window sampling"):
        generate(golden_model, tensors["case.txt"], tensors["case.vec"], "joint_generation", latent_size=(8, 16), steps=2, progress=False,
                 windows=WindowSettings((8, 6), overlap=2), cache=JointStepCache(CacheSettings(0.05)))


def _periodic_latent(width=16):
    """(1, 16, 6, width): smooth waves with a whole number of periods across the width, so the columns continue over the seam."""
    column = torch.arange(width) * 2 * torch.pi / width
    phases = torch.rand(16, 6, 1, generator=torch.Generator().manual_seed(0)) * 2 * torch.pi
    return torch.sin(column + phases)[None]


def _seam_over_cell_steps(x, cell):
    """|first - last pixel column| over the mean step between neighbouring latent cells elsewhere."""
    seam = (x[..., 0] - x[..., -1]).abs().mean()
    return float(seam / (x[..., cell::cell] - x[..., cell - 1 : -1 : cell]).abs().mean())


def test_circular_decode_joins_the_edges_of_a_periodic_latent():
    from jointdit_core.autoencoder import AutoEncoder
    from jointdit_core.config import AutoEncoderConfig

    torch.manual_seed(0)
    ae = AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=16)).eval()  # random, cell 2
    z = _periodic_latent()
    with torch.no_grad():
        plain, wrapped = ae.decode(z), decode_wrapped(ae.decode, z, columns=4)
    assert wrapped.shape == plain.shape == (1, 3, 12, 32)
    assert _seam_over_cell_steps(wrapped, 2) < 1.2  # the seam is like a step between any two latent cells (0.88)
    assert _seam_over_cell_steps(plain, 2) > 1.6  # the decoder's zero padding at both edges makes a seam (1.95)


def test_circular_decode_of_a_rolled_latent_is_the_rolled_decode():
    """A decoder of zero-padded convolutions (no global attention): the padded decode commutes with turning the panorama."""
    conv = torch.nn.Conv2d(16, 3, 5, padding=2)
    decode = lambda z: conv(torch.nn.functional.interpolate(z, scale_factor=4, mode="nearest")).permute(0, 2, 3, 1)  # noqa: E731  (B, H, W, 3)
    z = torch.randn(1, 16, 4, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        turned = decode_wrapped(decode, torch.roll(z, 3, dims=-1), columns=2, pixel_dim=-2)
        expected = torch.roll(decode_wrapped(decode, z, columns=2, pixel_dim=-2), 12, dims=-2)
        assert not torch.allclose(torch.roll(decode(z), 12, dims=-2), decode(torch.roll(z, 3, dims=-1)), atol=1e-4)  # plain: the seam moves
    torch.testing.assert_close(turned, expected, atol=1e-5, rtol=0)
    assert torch.equal(decode_wrapped(decode, z, columns=0, pixel_dim=-2), decode(z))
    with pytest.raises(ValueError, match="borrows 11 latent columns"):
        decode_wrapped(decode, z, columns=11)
    with pytest.raises(ValueError, match="not a multiple"):
        decode_wrapped(lambda z: z[..., 1:], z, columns=2)
