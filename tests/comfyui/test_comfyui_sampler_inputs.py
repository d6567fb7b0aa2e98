"""JointSampler / JointSamplerAdvanced / EncodeDepth / DecodeDepth refuse unusable inputs with a message that names them.

The checks run before any model evaluation, so no model is loaded: the MODEL and CONDITIONING arguments
are placeholders that the refused calls never reach. Also: the schemas (what a user sees in the node)
and old API prompts of the 20-input JointSampler.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
import torch
from comfyui_harness import load_pack


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def _simple(pack, task="depth_estimation", **latents):
    return pack.sampler.JointSampler.execute(None, None, task, 0, 2, **latents)


def _advanced(pack, task="custom", **inputs):
    kwargs = dict(schedule="flux_shifted", cfg=1.0, asw_strength=1.0, rgb_start=1.0, rgb_end=0.0, depth_start=1.0, depth_end=0.0)
    return pack.sampler.JointSamplerAdvanced.execute(None, None, task, 0, 2, **(kwargs | inputs))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_latents_are_refused_naming_the_input(pack, bad):
    z = torch.zeros(1, 16, 8, 8)
    z[0, 3, 2, 2] = bad
    with pytest.raises(ValueError, match="image LATENT contains NaN or Inf"):
        _simple(pack, "depth_estimation", image={"samples": z})
    with pytest.raises(ValueError, match="depth LATENT contains NaN or Inf"):
        _simple(pack, "depth_to_image", depth={"samples": z})
    with pytest.raises(ValueError, match="depth LATENT contains NaN or Inf"):
        _advanced(pack, image={"samples": torch.zeros(1, 16, 8, 8)}, depth={"samples": z}, depth_start=0.5)


def test_empty_and_tiny_latents_are_refused(pack):
    with pytest.raises(ValueError, match="image LATENT has a batch of 0"):
        _simple(pack, "joint_generation", image={"samples": torch.zeros(0, 16, 8, 8)})
    with pytest.raises(ValueError, match="depth LATENT has a batch of 0"):
        _simple(pack, "depth_to_image", depth={"samples": torch.zeros(0, 16, 8, 8)})
    with pytest.raises(ValueError, match="8x8 pixels; the smallest size JointDiT works with is 16x16"):
        _simple(pack, "depth_estimation", image={"samples": torch.zeros(1, 16, 1, 1)})
    with pytest.raises(ValueError, match="0x0 pixels; the smallest"):
        _simple(pack, "depth_estimation", image={"samples": torch.zeros(1, 16, 0, 0)})


def test_sd_latent_and_missing_empty_latent_say_what_to_connect(pack):
    with pytest.raises(ValueError, match="4-channel Stable Diffusion latent.*EmptySD3LatentImage"):
        _simple(pack, "joint_generation", image={"samples": torch.zeros(1, 4, 64, 64)})
    with pytest.raises(ValueError, match="connect EmptySD3LatentImage"):
        _simple(pack, "joint_generation")
    with pytest.raises(ValueError, match="connect an image LATENT"):
        _simple(pack, "depth_estimation")
    with pytest.raises(ValueError, match="connect a depth LATENT"):
        _simple(pack, "depth_to_image", image={"samples": torch.zeros(1, 16, 8, 8)})


def test_depth_nodes_refuse_empty_tiny_and_non_finite_maps(pack):
    class NoVAE:  # the refused calls never reach the VAE; 8x8-pixel cells like FLUX's ae.safetensors
        downscale_ratio = 8

        def spacial_compression_encode(self):
            return self.downscale_ratio

        def encode(self, pixels):
            raise AssertionError("the VAE must not be reached")

        decode = encode

    encode, decode = pack.depth.EncodeDepth.execute, pack.depth.DecodeDepth.execute
    with pytest.raises(ValueError, match="depth map is empty"):
        encode(NoVAE(), "none", True, True, depth=torch.zeros(0, 64, 64, 3))
    with pytest.raises(ValueError, match="depth map is empty"):
        encode(NoVAE(), "none", True, True, depth_mask=torch.zeros(1, 0, 0))
    with pytest.raises(ValueError, match="1x1 pixels; the smallest size that works is 16x16"):
        encode(NoVAE(), "none", True, True, depth=torch.rand(1, 1, 1, 3))
    nan = torch.zeros(1, 16, 8, 8)
    nan[..., 0, 0] = float("nan")
    with pytest.raises(ValueError, match="depth LATENT at DecodeDepth's 'samples' contains NaN or Inf"):
        decode(NoVAE(), {"samples": nan}, "none", "turbo")
    with pytest.raises(ValueError, match="batch of 0"):
        decode(NoVAE(), {"samples": torch.zeros(0, 16, 8, 8)}, "none", "turbo")

    class NanVAE:  # a decoder that overflowed: DecodeDepth says so instead of an IndexError in the colormap
        def decode(self, latent):
            return torch.full((latent.shape[0], 16, 16, 3), float("nan"))

    with pytest.raises(ValueError, match="VAE decoded NaN or Inf"):
        decode(NanVAE(), {"samples": torch.zeros(1, 16, 2, 2)}, "none", "turbo")


def _inputs(info: dict) -> list[str]:
    return [name for group in ("required", "optional") for name in info["input"].get(group, {})]


def test_simple_node_shows_what_most_users_need_and_advanced_the_rest(pack):
    simple = pack.sampler.JointSampler.GET_NODE_INFO_V1()
    advanced = pack.sampler.JointSamplerAdvanced.GET_NODE_INFO_V1()
    assert _inputs(simple) == ["model", "positive", "task", "seed", "steps", "image", "depth"]
    assert set(_inputs(advanced)) == {
        "model", "positive", "task", "seed", "steps", "schedule", "cfg", "asw_strength", "rgb_start", "rgb_end", "depth_start",
        "depth_end", "negative", "image", "depth", "rgb_sigmas", "depth_sigmas",
    }
    assert simple["input"]["required"]["task"][1]["options"] == ["joint_generation", "depth_estimation", "depth_to_image"]
    assert "custom" in advanced["input"]["required"]["task"][1]["options"]
    assert advanced["input"]["required"]["schedule"][1]["options"] == list(pack.core.sampler.SCHEDULES)
    for info in (simple, advanced):
        for name in ("task", "seed"):
            assert len(info["input"]["required"][name][1]["tooltip"]) > 40
    options = importlib.import_module(f"{pack.pack.__name__}.nodes.node_options")
    level = advanced["input"]["required"]["rgb_start"][1]
    assert level.get("advanced") is (True if options.HAS_ADVANCED_INPUTS else None)
    assert ("depth estimation" in simple.get("search_aliases", [])) == options.HAS_SEARCH_ALIASES


def test_old_api_prompt_inputs_run_or_say_how_to_migrate(pack):
    sampler = pack.sampler
    old = {"task": "joint_generation", "seed": 1, "steps": 2, "schedule": "linear", "cfg": 1.0, "asw_strength": 0.5,
           "width": 64, "height": 32, "batch_size": 3, "rgb_start": 1.0, "rgb_end": 0.0, "depth_start": 1.0, "depth_end": 0.0}
    hidden = SimpleNamespace(prompt={"7": {"class_type": "JointSampler", "inputs": old}}, unique_id="7")
    negative = [[torch.zeros(1, 2, 8), {}]]
    kwargs = sampler.old_inputs(hidden, {"negative": negative})
    assert kwargs == {"schedule": "linear", "negative": negative, "cfg": 1.0, "asw_strength": 0.5, "shape": (3, 16, 4, 8)}
    assert sampler.old_inputs(SimpleNamespace(prompt={"7": {"inputs": {"task": "joint_generation"}}}, unique_id="7"), {}) == {}
    assert sampler.old_inputs(None, {}) == {}
    with pytest.raises(ValueError, match="no input sigmas.*JointSamplerAdvanced"):
        sampler.old_inputs(None, {"sigmas": torch.ones(2)})
    bad = SimpleNamespace(prompt={"7": {"inputs": old | {"width": 60}}}, unique_id="7")
    with pytest.raises(ValueError, match="multiples of 16"):
        sampler.old_inputs(bad, {})
