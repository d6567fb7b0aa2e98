"""The task pipeline (seeds, step counts, errors) and the Flux autoencoder file layout."""

import pytest
import torch
from safetensors.torch import save_file

from jointdit_core.autoencoder import AutoEncoder
from jointdit_core.checkpoint import WeightFileError, load_autoencoder
from jointdit_core.config import AutoEncoderConfig
from jointdit_core.pipeline import generate
from jointdit_core.sampler import BranchLevels


@pytest.fixture(scope="module")
def cond(golden):
    tensors, _ = golden
    return tensors["case.txt"], tensors["case.vec"]


def _latent(seed):
    return torch.randn(1, 16, 8, 6, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("task", ["joint_generation", "depth_estimation", "depth_to_image"])
@pytest.mark.parametrize("steps", [2, 5])
def test_seed_is_honoured_in_every_task_and_step_count(golden_model, cond, task, steps):
    txt, y = cond
    kwargs = dict(rgb_latent=_latent(1) if task == "depth_estimation" else None,
                  depth_latent=_latent(2) if task == "depth_to_image" else None,
                  latent_size=(8, 6), steps=steps, progress=False)
    a = generate(golden_model, txt, y, task, seed=11, **kwargs)
    b = generate(golden_model, txt, y, task, seed=11, **kwargs)
    c = generate(golden_model, txt, y, task, seed=12, **kwargs)
    generated = {"joint_generation": (0, 1), "depth_estimation": (1,), "depth_to_image": (0,)}[task]
    for i in generated:
        assert torch.equal(a[i], b[i])
        assert (a[i] - c[i]).abs().max() > 1e-3
    if task == "depth_estimation":
        assert torch.equal(a[0], _latent(1))  # the condition comes back unchanged


def test_pairs_in_one_batch_are_independent(golden_model, cond):
    txt, y = cond
    images = torch.cat([_latent(1), _latent(2)])
    both = generate(golden_model, txt, y, "depth_estimation", rgb_latent=images, steps=2, seed=3, progress=False)[1]
    assert both.shape == (2, 16, 8, 6)
    # pairs never attend to each other: pair 0's depth ignores what pair 1 holds
    noise_fixed = generate(golden_model, txt, y, "depth_estimation", rgb_latent=torch.cat([_latent(1), _latent(5)]), steps=2, seed=3, progress=False)[1]
    assert torch.allclose(both[0], noise_fixed[0], atol=1e-5)
    assert (both[1] - noise_fixed[1]).abs().max() > 1e-3


def test_callback_and_custom_levels(golden_model, cond):
    txt, y = cond
    seen = []
    generate(golden_model, txt, y, rgb_latent=_latent(1), latent_size=(8, 6), steps=3, progress=False,
             levels=(BranchLevels(0.6, 0.0), BranchLevels(1.0, 0.0)), callback=seen.append)
    assert [s.step for s in seen] == [0, 1, 2] and seen[-1].sigma_rgb == 0.0 and seen[-1].sigma_depth == 0.0


@pytest.mark.parametrize("task", ["joint_generation", "depth_to_image"])
def test_classifier_free_guidance_mixes_the_two_predictions(golden_model, cond, task):
    """v = v_neg + cfg (v_pos - v_neg): cfg 1 is the unguided run, cfg 0 is the negative prompt's own run,
    and a scale above 1 moves the result past the positive one, away from the negative."""
    txt, y = cond
    neg = (torch.zeros_like(txt), torch.zeros_like(y))
    kwargs = dict(depth_latent=_latent(2) if task == "depth_to_image" else None, latent_size=(8, 6), steps=3, seed=5, progress=False)
    plain = generate(golden_model, txt, y, task, **kwargs)[0]
    assert torch.equal(generate(golden_model, txt, y, task, cfg=1.0, negative=neg, **kwargs)[0], plain)
    negative_only = generate(golden_model, *neg, task, **kwargs)[0]
    torch.testing.assert_close(generate(golden_model, txt, y, task, cfg=0.0, negative=neg, **kwargs)[0], negative_only, atol=1e-5, rtol=0)
    guided = generate(golden_model, txt, y, task, cfg=3.0, negative=neg, **kwargs)[0]
    step_away = ((guided - negative_only) - (plain - negative_only)).flatten()
    assert step_away.abs().max() > 1e-3 and torch.dot(step_away, (plain - negative_only).flatten()) > 0
    with pytest.raises(ValueError, match="needs a negative prompt"):
        generate(golden_model, txt, y, task, cfg=3.0, **kwargs)


def test_pipeline_errors(golden_model, cond):
    txt, y = cond
    with pytest.raises(ValueError, match="needs an image latent"):
        generate(golden_model, txt, y, "depth_estimation", latent_size=(8, 6), steps=2, progress=False)
    with pytest.raises(ValueError, match="differ in size"):
        generate(golden_model, txt, y, rgb_latent=_latent(1), depth_latent=torch.zeros(1, 16, 8, 8), steps=2, progress=False)
    with pytest.raises(ValueError, match="must be even"):
        generate(golden_model, txt, y, latent_size=(7, 6), steps=2, progress=False)
    with pytest.raises(ValueError, match="unknown schedule"):
        generate(golden_model, txt, y, latent_size=(8, 6), schedule="karras", progress=False)


SMALL_AE = AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=16)


def test_autoencoder_file_roundtrip_scale_and_shift(tmp_path):
    torch.manual_seed(0)
    ae = AutoEncoder(SMALL_AE).eval()
    path = tmp_path / "ae.safetensors"
    save_file(ae.state_dict(), str(path))
    loaded = load_autoencoder(path)
    assert loaded.config.ch == 32 and loaded.config.ch_mult == (1, 2) and loaded.config.downscale == 2
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = loaded.encode(x)
        mean = loaded.encoder(x).chunk(2, dim=1)[0]
        assert torch.allclose(z, 0.3611 * (mean - 0.1159), atol=1e-6)
        assert torch.allclose(loaded.decode(z), ae.decoder(mean), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 2"):
        loaded.encode(torch.zeros(1, 3, 15, 16))


def test_full_size_autoencoder_layout():
    with torch.device("meta"):
        ae = AutoEncoder()
    state = ae.state_dict()
    assert round(sum(v.numel() for v in state.values()) / 1e6) == 84
    assert AutoEncoderConfig.from_state_dict(state) == AutoEncoderConfig()
    for key in ("encoder.down.3.block.1.conv2.weight", "encoder.mid.attn_1.proj_out.weight", "decoder.up.3.upsample.conv.weight",
                "decoder.up.0.block.0.nin_shortcut.weight", "encoder.conv_out.weight"):
        assert key in state, key
    assert tuple(state["encoder.conv_out.weight"].shape) == (32, 512, 3, 3)


def test_autoencoder_refuses_other_files(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"img_in.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(WeightFileError, match="not a Flux autoencoder"):
        load_autoencoder(path)
