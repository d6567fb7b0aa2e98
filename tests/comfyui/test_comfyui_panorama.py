"""Panoramas in ComfyUI: the JointDiT Window Sampler on ComfyUI's machinery with the golden_tiny model (fixtures of
test_comfyui_golden)."""

from __future__ import annotations

import importlib

import pytest
import torch
from comfyui_harness import PACK_NAME, recorded_progress
from test_comfyui_golden import addon_checkpoint, conditioning, pack, tiny  # noqa: F401  (fixtures)


def _z(seed, width=8):
    return torch.randn(1, 16, 8, width, generator=torch.Generator().manual_seed(seed))


def _windows(pack, model, pos, task, image=None, depth=None, **options):
    node = importlib.import_module(f"{PACK_NAME}.nodes.window_sampler").JointSamplerWindows
    settings = dict(window_width=64, window_height=64, overlap=16, wrap=False, windows_per_batch=1, cfg=1.0) | options
    out = node.execute(model, pos, task, 3, 2, image=image, depth=depth, **settings)
    return out.result[0]["samples"], out.result[1]["samples"]


@pytest.mark.parametrize("task", ["joint_generation", "depth_estimation"])
def test_one_window_equals_plain_joint_sampler_bit_for_bit(pack, golden, tiny, task):
    tensors, meta = golden
    _, patched, _ = tiny
    pos = conditioning(tensors, meta)
    image = {"samples": torch.zeros(1, 16, 8, 8) if task == "joint_generation" else _z(1)}
    plain = pack.sampler.JointSampler.execute(patched, pos, task, 3, 2, image=image).result
    windowed = _windows(pack, patched, pos, task, image, window_width=128, window_height=128)  # larger than the image
    assert torch.equal(plain[0]["samples"], windowed[0]) and torch.equal(plain[1]["samples"], windowed[1])


def test_wide_wrapped_panorama_batched_or_not(pack, golden, tiny):
    tensors, meta = golden
    _, patched, _ = tiny
    pos = conditioning(tensors, meta)
    image = {"samples": torch.zeros(1, 16, 8, 24)}  # 192x64 pixels: three 64-pixel windows, six with wrap and overlap
    one = _windows(pack, patched, pos, "joint_generation", image, wrap=True)
    batched = _windows(pack, patched, pos, "joint_generation", image, wrap=True, windows_per_batch=4)
    assert one[0].shape == (1, 16, 8, 24) and torch.isfinite(one[0]).all()
    torch.testing.assert_close(batched, one, atol=1e-4, rtol=0)
    photo = {"samples": _z(1, 24)}
    rgb, depth = _windows(pack, patched, pos, "depth_estimation", photo, windows_per_batch=2)
    torch.testing.assert_close(rgb, photo["samples"], atol=1e-5, rtol=0)  # the held photo (VAE-space rounding only)
    assert depth.shape == (1, 16, 8, 24) and torch.isfinite(depth).all()


def test_window_sizes_must_be_multiples_of_16_and_the_overlap_smaller(pack):
    with pytest.raises(ValueError, match="window_width is 72 pixels"):
        _windows(pack, None, None, "joint_generation", {"samples": torch.zeros(1, 16, 8, 24)}, window_width=72)
    with pytest.raises(ValueError, match="overlap is 64 pixels but the window is 64x64"):
        _windows(pack, None, None, "joint_generation", {"samples": torch.zeros(1, 16, 8, 24)}, overlap=64)



def test_progress_per_step_and_cancel_between_windows(pack, golden, tiny):
    import comfy.model_management as mm

    tensors, meta = golden
    _, patched, _ = tiny
    pos = conditioning(tensors, meta)
    image = {"samples": torch.zeros(1, 16, 8, 24)}
    calls = []
    with recorded_progress() as seen:
        _windows(pack, patched, pos, "joint_generation", image, wrap=True)
    assert [v for v, _ in seen] == [1, 2] and {t for _, t in seen} == {2}  # per step, not per window
    check = mm.throw_exception_if_processing_interrupted

    def interrupt_at_second_window():
        calls.append(1)
        mm.interrupt_current_processing(len(calls) == 2)
        check()

    mm.throw_exception_if_processing_interrupted = interrupt_at_second_window
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _windows(pack, patched, pos, "joint_generation", image, wrap=True)
    finally:
        mm.throw_exception_if_processing_interrupted = check
        mm.interrupt_current_processing(False)
    assert len(calls) == 2  # stopped before the second window's model call


class BlurVAE:
    """Stands in for ComfyUI's VAE: decodes (B, 3, h, w) latents to (B, 2h, 2w, 3) pixels with a zero-padded 3x3 box blur
    (each pixel depends on its neighbours, as a real decoder's do)."""

    def decode(self, latent):
        blurred = torch.nn.functional.avg_pool2d(latent, 3, 1, 1, count_include_pad=True)
        return torch.nn.functional.interpolate(blurred, scale_factor=2, mode="nearest").permute(0, 2, 3, 1).clamp(-1, 1)


def test_360_decoding_pads_the_latent_circularly(pack):
    from jointdit_core.windows import decode_wrapped

    decode_depth = pack.depth.DecodeDepth.execute
    decode_image = importlib.import_module(f"{PACK_NAME}.nodes.panorama_decode").VAEDecodePanorama.execute
    column = torch.arange(24) * 2 * torch.pi / 24
    latent = {"samples": (0.8 * torch.sin(column)).expand(1, 3, 6, 24).contiguous()}
    vae = BlurVAE()
    (image,) = decode_image(latent, vae).result
    torch.testing.assert_close(image, decode_wrapped(vae.decode, latent["samples"], 8, pixel_dim=-2))
    wrapped, _, _ = decode_depth(vae, latent, "none", "gray", wrap=True).result
    plain, _, _ = decode_depth(vae, latent, "none", "gray").result
    assert wrapped.shape == plain.shape == (1, 12, 48, 3)
    for out in (image, wrapped):
        seam = (out[:, :, 0] - out[:, :, -1]).abs().mean()
        assert seam <= 1.01 * (out[:, :, 2::2] - out[:, :, 1:-1:2]).abs().mean(dim=(0, 1, 3)).max()  # a step between latent columns
    assert (plain[:, :, 0] - plain[:, :, -1]).abs().mean() > 3 * (wrapped[:, :, 0] - wrapped[:, :, -1]).abs().mean()  # zero padding: a seam
