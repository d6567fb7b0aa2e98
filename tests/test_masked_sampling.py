"""Masked sampling (inpainting, outpainting, depth completion): the core loop and pipeline.generate."""

import pytest
import torch

from jointdit_core.pipeline import generate
from jointdit_core.sampler import check_mask, sample
from jointdit_core.schedules import linear_schedule


def _t(seed, shape=(2, 4, 6, 6)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _velocity(x_rgb, x_depth, s_rgb, s_depth):
    # a toy velocity coupling both branches and every position, so a mask's effect is visible everywhere
    mix = (x_rgb.mean() + x_depth.mean()) * 0.5
    return torch.tanh(x_rgb) + mix + x_depth.roll(1, -1), torch.sin(x_depth) - mix + x_rgb.roll(1, -2)


SIGMAS = linear_schedule(4)


def _run(**masks):
    return sample(_velocity, SIGMAS, SIGMAS, _t(1), _t(2), _t(3), _t(4), **masks)


def test_all_zero_masks_return_the_given_latents_exactly():
    zeros = torch.zeros(1, 1, 6, 6)
    rgb, depth = _run(rgb_mask=zeros, depth_mask=zeros)
    assert torch.equal(rgb, _t(3)) and torch.equal(depth, _t(4))


def test_all_ones_masks_equal_unmasked_sampling():
    plain = sample(_velocity, SIGMAS, SIGMAS, _t(1), _t(2))
    ones = torch.ones(2, 4, 6, 6)
    masked = _run(rgb_mask=ones, depth_mask=ones)
    assert torch.equal(masked[0], plain[0]) and torch.equal(masked[1], plain[1])


def test_unmasked_region_kept_masked_region_generated_and_influences_flow():
    mask = torch.zeros(2, 1, 6, 6)
    mask[:, :, 2:4, 1:5] = 1
    rgb, depth = _run(depth_mask=mask)
    keep = mask.expand(2, 4, 6, 6) == 0
    assert torch.equal(depth[keep], _t(4)[keep])  # exactly the input outside the mask
    assert (depth[~keep] - _t(4)[~keep]).abs().min() > 0  # regenerated inside
    plain_rgb = sample(_velocity, SIGMAS, SIGMAS, _t(1), _t(2))[0]
    assert (rgb - plain_rgb).abs().max() > 1e-3  # the kept depth steers the unmasked rgb branch
    # the held part really is the clean latent re-noised at each step's level: what the model sees
    seen = []

    def spy(x_rgb, x_depth, s_rgb, s_depth):
        seen.append((x_depth.clone(), float(s_depth[0])))
        return _velocity(x_rgb, x_depth, s_rgb, s_depth)

    sample(spy, SIGMAS, SIGMAS, _t(1), _t(2), _t(3), _t(4), depth_mask=mask)
    for x, s in seen:
        assert torch.allclose(x[keep], ((1 - s) * _t(4) + s * _t(2))[keep])


def test_soft_mask_and_per_branch_batch_mask():
    mask = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)  # pair 0 regenerated, pair 1 kept
    rgb, _ = _run(rgb_mask=mask)
    assert torch.equal(rgb[1], _t(3)[1]) and (rgb[0] - _t(3)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(1, 1, 3, 3), (3, 1, 6, 6), (1, 6, 6), (1, 2, 6, 6)])
def test_wrong_mask_shape_is_a_clear_error(shape):
    with pytest.raises(ValueError, match="rgb mask has shape"):
        _run(rgb_mask=torch.ones(shape))


def test_mask_values_without_latent_or_on_a_held_branch_are_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _run(depth_mask=torch.full((1, 1, 6, 6), 2.0))
    with pytest.raises(ValueError, match="needs the rgb latent"):
        sample(_velocity, SIGMAS, SIGMAS, _t(1), _t(2), rgb_mask=torch.ones(1, 1, 6, 6))
    held = [0.0] * len(SIGMAS)
    with pytest.raises(ValueError, match="rgb branch is held"):
        sample(_velocity, held, SIGMAS, _t(1), _t(2), _t(3), _t(4), rgb_mask=torch.ones(1, 1, 6, 6))
    assert check_mask(None, _t(1), "rgb") is None


def _latent(seed):
    return torch.randn(1, 16, 8, 6, generator=torch.Generator().manual_seed(seed))


def test_pipeline_depth_completion_and_inpainting(golden_model, golden):
    tensors, _ = golden
    txt, y = tensors["case.txt"], tensors["case.vec"]
    common = dict(steps=2, seed=5, progress=False)
    # depth completion: photo held, depth regenerated where missing (left half), kept where valid
    mask = torch.zeros(1, 1, 8, 6)
    mask[..., :3] = 1
    rgb, depth = generate(golden_model, txt, y, "depth_estimation", rgb_latent=_latent(1), depth_latent=_latent(2), depth_mask=mask, **common)
    assert torch.equal(rgb, _latent(1)) and torch.equal(depth[..., 3:], _latent(2)[..., 3:])
    assert (depth[..., :3] - _latent(2)[..., :3]).abs().max() > 1e-3
    # all-zero masks on joint generation: the inputs come back; all-ones: plain joint generation
    zero = torch.zeros(1, 1, 8, 6)
    out = generate(golden_model, txt, y, rgb_latent=_latent(1), depth_latent=_latent(2), rgb_mask=zero, depth_mask=zero, **common)
    assert torch.equal(out[0], _latent(1)) and torch.equal(out[1], _latent(2))
    plain = generate(golden_model, txt, y, latent_size=(8, 6), **common)
    ones = torch.ones(1, 16, 8, 6)
    full = generate(golden_model, txt, y, rgb_latent=_latent(1), depth_latent=_latent(2), rgb_mask=ones, depth_mask=ones, **common)
    assert torch.equal(full[0], plain[0]) and torch.equal(full[1], plain[1])
    with pytest.raises(ValueError, match="depth mask has shape"):
        generate(golden_model, txt, y, "depth_estimation", rgb_latent=_latent(1), depth_latent=_latent(2), depth_mask=torch.ones(1, 1, 4, 3), **common)
