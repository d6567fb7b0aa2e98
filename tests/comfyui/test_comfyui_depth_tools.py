"""The depth-tool nodes inside ComfyUI: one-node depth estimation at any photo size, ensembling, depth files.

The golden_tiny JointDiT (as in test_comfyui_golden) stands in for FLUX.1-dev; a small fixed linear
"VAE" (8x8 average pooling into 16 channels and back, the FLUX autoencoder's shapes) stands in for
ae.safetensors, so the nodes' own work (resizing, sampling through JointSampler's code, decoding,
ensembling, files) is what is tested.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from comfyui_harness import REPO, load_pack, recorded_progress
from PIL import Image
from test_comfyui_golden import addon_checkpoint, conditioning, tiny  # noqa: F401  (fixtures)

PHOTO = REPO / "tests" / "data" / "astronaut_128.png"


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture(scope="module")
def nodes(pack):
    import importlib

    return importlib.import_module(f"{pack.pack.__name__}.nodes.depth_estimation"), importlib.import_module(f"{pack.pack.__name__}.nodes.depth_files")


class LinearVAE:
    """encode: IMAGE (B, H, W, 3) -> (B, 16, H/8, W/8) (8x8 mean, fixed 3 -> 16 map); decode: the way back (clamped)."""

    def __init__(self):
        g = torch.Generator().manual_seed(7)
        self.up = torch.randn(16, 3, generator=g) * 0.5
        self.down = torch.linalg.pinv(self.up)

    def encode(self, pixels):
        x = F.avg_pool2d(pixels[..., :3].movedim(-1, 1).float() * 2 - 1, 8)
        return torch.einsum("oc,bchw->bohw", self.up, x)

    def decode(self, z):
        x = torch.einsum("co,bohw->bchw", self.down, z.float())
        return ((F.interpolate(x, scale_factor=8, mode="bilinear") + 1) / 2).clamp(0, 1).movedim(1, -1)


def _photo(width, height):
    img = Image.open(PHOTO).convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img)).float()[None] / 255.0


def test_odd_size_photo_comes_back_at_its_size(pack, nodes, golden, tiny):
    estimation, _ = nodes
    tensors, meta = golden
    _, patched, _ = tiny
    photo = _photo(700, 467)
    out = estimation.JointDiTDepthEstimation.execute(patched, LinearVAE(), photo, 128, 2, 3, 2, "median", "turbo", positive=conditioning(tensors, meta))
    depth, mask, colours, uncertainty, view = out.result
    assert depth.shape == (1, 467, 700, 3) and mask.shape == (1, 467, 700) and colours.shape == (1, 467, 700, 3)
    assert uncertainty.shape == (1, 467, 700) and view.shape == (1, 467, 700, 3)
    assert torch.isfinite(depth).all() and depth.min() >= 0 and depth.max() <= 1 and depth.max() > depth.min()
    assert uncertainty.min() >= 0 and uncertainty.max() > 0  # two seeds disagree somewhere


def test_official_size_one_member_equals_the_joint_sampler_path(pack, nodes, golden, tiny):
    estimation, _ = nodes
    tensors, meta = golden
    _, patched, _ = tiny
    vae = LinearVAE()
    photo = _photo(256, 256).repeat(2, 1, 1, 1)  # processing resolution 256 = the photo's size: no resize
    photo[1] = photo[1].flip(1)
    cond = conditioning(tensors, meta)
    out = estimation.JointDiTDepthEstimation.execute(patched, vae, photo, 256, 1, 5, 2, "median", "gray", positive=cond)
    # today's path: VAEEncode -> JointSampler (depth_estimation) -> DecodeDepth
    latent = {"samples": vae.encode(photo)}
    _, depth_latent = pack.sampler.JointSampler.execute(patched, cond, "depth_estimation", 5, 2, image=latent).result
    reference = pack.depth.DecodeDepth.execute(vae, depth_latent, "auto", "gray", model=patched).result
    assert torch.equal(out.result[0], reference[0]) and torch.equal(out.result[1], reference[1])
    assert torch.equal(out.result[3], torch.zeros_like(out.result[3]))


def test_progress_counts_every_member_and_cancel_stops(pack, nodes, golden, tiny):
    import comfy.model_management as mm

    estimation, _ = nodes
    tensors, meta = golden
    _, patched, _ = tiny
    with recorded_progress() as seen:
        estimation.JointDiTDepthEstimation.execute(patched, LinearVAE(), _photo(64, 48), 64, 3, 0, 2, "mean", "turbo", positive=conditioning(tensors, meta))
    assert [v for v, _ in seen] == list(range(1, 7)) and {t for _, t in seen} == {6}
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            estimation.JointDiTDepthEstimation.execute(patched, LinearVAE(), _photo(64, 48), 64, 3, 0, 2, "mean", "turbo", positive=conditioning(tensors, meta))
    finally:
        mm.interrupt_current_processing(False)


def test_no_prompt_is_a_clear_error(pack, nodes, tiny):
    estimation, _ = nodes
    with pytest.raises(ValueError, match="connect a prompt"):
        estimation.JointDiTDepthEstimation.execute(tiny[1], LinearVAE(), _photo(64, 48), 64, 1, 0, 2, "median", "turbo")


def test_resize_node_to_processing_size_and_back(pack, nodes):
    estimation, _ = nodes
    photo = _photo(700, 467)
    small = estimation.JointDiTResize.execute(photo, 512).result[0]
    assert small.shape == (1, 336, 512, 3)
    back = estimation.JointDiTResize.execute(small, 512, size_of=photo).result[0]
    assert back.shape == photo.shape


@pytest.mark.parametrize("fmt", ["png16", "exr", "tiff", "npy"])
def test_save_and_load_depth_nodes_round_trip(pack, nodes, tmp_path, monkeypatch, fmt):
    import folder_paths

    _, files = nodes
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "output" / "JointDiT"))
    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path / "temp"))
    (tmp_path / "output").mkdir()
    ramp = torch.linspace(0, 1, 37 * 53).reshape(1, 37, 53)
    image = ramp[..., None].expand(1, 37, 53, 3).contiguous()
    out = files.SaveDepth.execute(image, "JointDiT/depth", fmt)
    written = sorted((tmp_path / "output" / "JointDiT").iterdir())
    assert [p.name for p in written] == ["depth_00001_" + {"png16": ".png", "exr": ".exr", "tiff": ".tif", "npy": ".npy"}[fmt]]
    assert out.ui is not None
    loaded, valid = files.LoadDepth.execute(written[0].name, False).result
    assert loaded.shape == (1, 37, 53, 3) and valid.shape == (1, 37, 53) and bool(valid.all())
    step = 1 / 65535 / 2 + 1e-7 if fmt == "png16" else 0
    assert (loaded[..., 0] - ramp).abs().max().item() <= step


def test_sparse_depth_file_valid_mask_feeds_encode_depth(pack, nodes, tmp_path, monkeypatch):
    """Load Depth with zero_is_missing marks LiDAR-style zeros invalid; Encode Depth fills them from known pixels."""
    import folder_paths
    from PIL import Image

    _, files = nodes
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path))
    sparse = np.zeros((16, 24), np.uint16)
    sparse[::4, ::4] = np.arange(1, 25).reshape(4, 6) * 2000
    Image.fromarray(sparse).save(tmp_path / "sparse.png")
    depth, valid = files.LoadDepth.execute("sparse.png", True, zero_is_missing=True).result
    assert torch.equal(valid[0].bool(), torch.from_numpy(sparse > 0))
    assert files.LoadDepth.execute("sparse.png", True).result[1].all()  # off: only inf is missing

    class PixelsVAE:  # records what Encode Depth hands the VAE
        def encode(self, pixels):
            self.pixels = pixels
            return torch.zeros(1, 16, 2, 3)

    vae = PixelsVAE()
    pack.depth.EncodeDepth.execute(vae, "none", True, True, depth=depth, valid_mask=valid)
    filled = vae.pixels[0, ..., 0]
    known = torch.from_numpy(sparse > 0)
    assert torch.allclose(filled[known], depth[0, ..., 0][known])  # known values kept (already in [0, 1])
    assert filled[1, 1] == filled[0, 0] and filled[3, 3] == filled[4, 4]  # holes copy their nearest known pixel
    assert set(filled.unique().tolist()) <= set(filled[known].unique().tolist())


def test_presets_replace_the_steps_and_the_deterministic_one_ignores_the_seed(pack, nodes, golden, tiny):
    estimation, _ = nodes
    tensors, meta = golden
    _, patched, _ = tiny
    photo, cond = _photo(64, 48), conditioning(tensors, meta)

    def run(seed, steps, preset, ensemble=1):
        return estimation.JointDiTDepthEstimation.execute(patched, LinearVAE(), photo, 64, ensemble, seed, steps, "median", "gray", positive=cond, preset=preset).result

    assert torch.equal(run(0, 4, "custom")[1], run(0, 9, "4 steps")[1])
    one = run(0, 20, "1 step, deterministic", ensemble=3)
    assert torch.equal(one[1], run(5, 2, "1 step, deterministic")[1])
    assert one[3].abs().max() == 0  # a single member: no spread
    assert not torch.equal(one[1], run(0, 1, "custom")[1])  # from zeros, not from the seed's noise
    with pytest.raises(ValueError, match="unknown preset"):
        run(0, 4, "fastest")
