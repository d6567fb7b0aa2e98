"""JointSampler honours a LATENT's noise_mask (SetLatentNoiseMask) per branch: inpainting and depth completion.

Runs the golden_tiny model (fixtures of test_comfyui_golden) through the sampler nodes on ComfyUI's machinery.
"""

from __future__ import annotations

import pytest
import torch
from test_comfyui_golden import addon_checkpoint, conditioning, pack, tiny  # noqa: F401  (fixtures)

SIZE = (8, 8)  # latent h, w: 64x64 pixels


def _z(seed, batch=1):
    return torch.randn(batch, 16, *SIZE, generator=torch.Generator().manual_seed(seed))


def _run(pack, model, pos, task, image=None, depth=None, seed=3):
    out = pack.sampler.JointSampler.execute(model, pos, task, seed, 2, image=image, depth=depth)
    return out.result[0]["samples"], out.result[1]["samples"]


def _left_half(batch=1, pixels=True):
    h, w = (SIZE[0] * 8, SIZE[1] * 8) if pixels else SIZE
    mask = torch.zeros(batch, h, w)
    mask[..., : w // 2] = 1
    return mask


def test_all_zero_masks_return_the_input_latents(pack, golden, tiny):
    tensors, meta = golden
    _, patched, _ = tiny
    pos = conditioning(tensors, meta)
    zero = torch.zeros(1, SIZE[0] * 8, SIZE[1] * 8)
    rgb, depth = _run(pack, patched, pos, "joint_generation", {"samples": _z(1), "noise_mask": zero}, {"samples": _z(2), "noise_mask": zero})
    assert torch.equal(rgb, _z(1)) and torch.equal(depth, _z(2))


def test_all_ones_mask_equals_plain_joint_generation(pack, golden, tiny):
    tensors, meta = golden
    _, patched, _ = tiny
    pos = conditioning(tensors, meta)
    plain = _run(pack, patched, pos, "joint_generation", {"samples": torch.zeros(1, 16, *SIZE)})
    ones = torch.ones(1, 1, SIZE[0] * 8, SIZE[1] * 8)  # SetLatentNoiseMask's (B, 1, H, W) layout
    masked = _run(pack, patched, pos, "joint_generation", {"samples": _z(1), "noise_mask": ones}, {"samples": _z(2), "noise_mask": ones})
    assert torch.equal(masked[0], plain[0]) and torch.equal(masked[1], plain[1])


def test_masks_are_honoured_per_branch(pack, golden, tiny):
    tensors, meta = golden
    _, patched, _ = tiny
    pos = conditioning(tensors, meta)
    left = slice(0, SIZE[1] // 2)
    right = slice(SIZE[1] // 2, None)
    # depth completion: photo held, depth regenerated where the mask is 1 (left), kept exactly on the right
    rgb, depth = _run(pack, patched, pos, "depth_estimation", {"samples": _z(1)}, {"samples": _z(2), "noise_mask": _left_half()})
    assert torch.allclose(rgb, _z(1), atol=1e-5)
    assert torch.equal(depth[..., right], _z(2)[..., right])
    assert (depth[..., left] - _z(2)[..., left]).abs().max() > 1e-3
    plain_depth = _run(pack, patched, pos, "depth_estimation", {"samples": _z(1)})[1]
    assert (depth[..., left] - plain_depth[..., left]).abs().max() > 1e-4  # the kept depth steers the filled part
    # a mask at another size of the same aspect ratio (the photo before resizing) is resized like KSampler does
    big = torch.nn.functional.interpolate(_left_half()[None], size=(96, 96), mode="nearest")[0]
    assert torch.equal(_run(pack, patched, pos, "depth_estimation", {"samples": _z(1)}, {"samples": _z(2), "noise_mask": big})[1], depth)
    # inpainting the image only (latent-size mask, batch of 2): the depth branch is generated from noise everywhere
    rgb, depth = _run(pack, patched, pos, "joint_generation", {"samples": _z(1, 2), "noise_mask": _left_half(1, pixels=False)})
    assert torch.equal(rgb[..., right], _z(1, 2)[..., right]) and (rgb[..., left] - _z(1, 2)[..., left]).abs().max() > 1e-3
    assert depth.shape == (2, 16, *SIZE)


@pytest.mark.parametrize(
    "mask, match",
    [
        (torch.ones(1, 40, 64), "aspect ratio"),  # another shape than the image
        (torch.ones(64, 64, 64, 1), "noise_mask has shape"),
        (torch.ones(3, 64, 64), "batch 1 or 2"),  # batch 3 for a batch of 2
        (torch.ones(1, 2, 64, 64), "noise_mask has shape"),
        (torch.full((1, 64, 64), 1.5), r"\[0, 1\]"),
    ],
)
def test_bad_masks_are_clear_errors(pack, mask, match):
    # refused before any model evaluation: no MODEL needed
    with pytest.raises(ValueError, match=match):
        pack.sampler.JointSampler.execute(None, None, "joint_generation", 0, 2, image={"samples": torch.zeros(2, 16, *SIZE), "noise_mask": mask})


def test_mask_on_a_held_branch_is_refused(pack):
    with pytest.raises(ValueError, match="holds the rgb branch"):
        pack.sampler.JointSampler.execute(None, None, "depth_estimation", 0, 2, image={"samples": torch.zeros(1, 16, *SIZE), "noise_mask": _left_half()})
