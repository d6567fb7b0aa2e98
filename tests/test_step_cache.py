"""The joint-aware step cache (jointdit_core.step_cache) alone and inside the core pipeline."""

import pytest
import torch

import jointdit_core.step_cache as step_cache
from jointdit_core.pipeline import generate
from jointdit_core.step_cache import CacheSettings, JointStepCache, pair_chunk, reuse_decision


def _spy(monkeypatch):
    """Record the keys of every decision's inputs (the (chunk, branch) pairs that decide)."""
    seen = []
    real = step_cache.reuse_decision

    def spy(changes, threshold):
        seen.append(set(changes))
        return real(changes, threshold)

    monkeypatch.setattr(step_cache, "reuse_decision", spy)
    return seen


def _golden_run(golden, golden_model, task, cache=None, steps=8, **kwargs):
    tensors, meta = golden
    h, w = meta["latent_hw"]
    z = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(3))
    latents = {"depth_estimation": {"rgb_latent": z}, "depth_to_image": {"depth_latent": z}}.get(task, {"latent_size": (h, w)})
    return generate(golden_model, tensors["case.txt"], tensors["case.vec"], task, steps=steps, seed=1, progress=False, cache=cache, **latents, **kwargs)


@pytest.mark.parametrize("task", ["joint_generation", "depth_estimation", "depth_to_image"])
def test_threshold_zero_is_the_uncached_output_bit_for_bit(golden, golden_model, task):
    cache = JointStepCache(CacheSettings(threshold=0.0, start_percent=0.0, end_percent=1.0))
    plain = _golden_run(golden, golden_model, task)
    cached = _golden_run(golden, golden_model, task, cache)
    assert all(torch.equal(a, b) for a, b in zip(plain, cached))
    assert cache.computed == 8 and cache.reused == 0


@pytest.mark.parametrize("task, deciding", [("joint_generation", {"rgb", "depth"}), ("depth_estimation", {"depth"}), ("depth_to_image", {"rgb"})])
def test_only_denoising_branches_decide(golden, golden_model, monkeypatch, task, deciding):
    seen = _spy(monkeypatch)
    cache = JointStepCache(CacheSettings(threshold=10.0, start_percent=0.0, end_percent=1.0))
    _golden_run(golden, golden_model, task, cache)
    assert seen and all({branch for _, branch in keys} == deciding for keys in seen)
    assert cache.reused > 0  # the cache engages (with a held rgb branch too, which EasyCache never could)


def test_skips_stay_close_and_state_resets_between_runs(golden, golden_model):
    plain = _golden_run(golden, golden_model, "depth_estimation", steps=12)
    cache = JointStepCache(CacheSettings(threshold=0.3, start_percent=0.0, end_percent=1.0))
    first = _golden_run(golden, golden_model, "depth_estimation", cache, steps=12)
    counts = (cache.computed, cache.reused)
    again = _golden_run(golden, golden_model, "depth_estimation", cache, steps=12)
    assert counts == (cache.computed, cache.reused) and counts[1] > 0 and sum(counts) == 12
    assert torch.equal(first[1], again[1])  # nothing of the first run leaks into the second
    assert not torch.equal(first[1], plain[1])
    assert (first[1] - plain[1]).abs().mean() < 0.2 * plain[1].abs().mean()


def test_cfg_passes_keep_separate_residuals(golden, golden_model):
    tensors, _ = golden
    negative = (torch.zeros_like(tensors["case.txt"]), torch.zeros_like(tensors["case.vec"]))
    cache = JointStepCache(CacheSettings(threshold=0.0))
    plain = _golden_run(golden, golden_model, "joint_generation", cfg=2.0, negative=negative)
    cached = _golden_run(golden, golden_model, "joint_generation", cache, cfg=2.0, negative=negative)
    assert all(torch.equal(a, b) for a, b in zip(plain, cached))
    assert {key for key, _ in cache.tracks} == {0, 1}


def test_every_deciding_branch_and_every_chunk_must_be_under_the_threshold():
    def reused(denoising, *chunk_steps):
        """Six calls of a model ``2 x`` on chunks whose (rgb, depth) rows move by the given steps per call."""
        cache = JointStepCache(CacheSettings(threshold=0.05, start_percent=0.0, end_percent=1.0), denoising)
        steps = torch.tensor(chunk_steps, dtype=torch.float).view(-1, 1)
        x = torch.ones(steps.shape[0], 4)
        chunks = [step_cache.Chunk(c, {"rgb": torch.tensor([2 * c]), "depth": torch.tensor([2 * c + 1])}) for c in range(len(chunk_steps))]
        for _ in range(6):
            cache(lambda: 2 * x, x, torch.full((x.shape[0],), 0.5), chunks)
            x = x + steps
        return cache.reused

    assert reused(("rgb", "depth"), (0.001, 0.001)) > 0
    assert reused(("rgb", "depth"), (0.001, 0.5)) == 0  # depth changes fast: no skip in joint generation
    assert reused(("depth",), (0.5, 0.001)) > 0  # a held branch's change is never looked at
    assert reused(("rgb",), (0.001, 0.5)) > 0
    assert reused(("depth",), (0.0, 0.001), (0.0, 0.001)) > 0
    assert reused(("depth",), (0.0, 0.001), (0.0, 0.5)) == 0  # the uncond chunk moves fast: the call is computed


def test_window_and_decision_rules():
    settings = CacheSettings(threshold=0.1, start_percent=0.2, end_percent=0.9)
    assert not settings.in_window(0.9) and settings.in_window(0.8) and settings.in_window(0.11) and not settings.in_window(0.09)
    assert not reuse_decision({}, 1.0) and not reuse_decision({"a": None}, 1.0)
    assert reuse_decision({"a": 0.01, "b": 0.05}, 0.1) and not reuse_decision({"a": 0.01, "b": 0.2}, 0.1)
    assert not reuse_decision({"a": 0.0}, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        CacheSettings(threshold=-1)
    with pytest.raises(ValueError, match="start_percent"):
        CacheSettings(start_percent=0.8, end_percent=0.2)
    with pytest.raises(ValueError, match="unknown branches"):
        JointStepCache(settings, ("normal",))


def test_outside_the_window_every_step_is_computed():
    cache = JointStepCache(CacheSettings(threshold=10.0, start_percent=0.0, end_percent=0.5), ("depth",))
    x = torch.ones(2, 3)
    for sigma in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3):
        cache(lambda: x * 2, x, torch.tensor([0.0, sigma]), [pair_chunk(1)])
        x = x + 0.01
    assert cache.reused == 2  # sigma 0.7 and 0.6 (the first two calls measure the rate); none at or below 0.5
