"""plan_sampling: both branch schedules, held flags and required inputs planned once."""

import pytest
import torch

from jointdit_core.sampler import SCHEDULES, BranchLevels, SamplingPlan, plan_sampling
from jointdit_core.schedules import flux_shifted_schedule, linear_schedule


def test_task_presets():
    shifted = flux_shifted_schedule(4, 48)
    joint = plan_sampling(steps=4, token_count=48)
    assert joint.task == "joint_generation" and joint.steps == 4
    assert list(joint.rgb_sigmas) == pytest.approx(shifted) and joint.depth_sigmas == joint.rgb_sigmas
    assert (joint.rgb_held, joint.depth_held, joint.needs_rgb_latent, joint.needs_depth_latent) == (False, False, False, False)
    assert joint.preview_branch == "rgb"

    estimation = plan_sampling("depth_estimation", steps=4, token_count=48)
    assert estimation.rgb_sigmas == (0.0,) * 5 and list(estimation.depth_sigmas) == pytest.approx(shifted)
    assert estimation.rgb_held and not estimation.depth_held and estimation.rgb == BranchLevels(0.0, 0.0)
    assert estimation.needs_rgb_latent and not estimation.needs_depth_latent and estimation.preview_branch == "depth"

    to_image = plan_sampling("depth_to_image", steps=3, schedule="linear", token_count=48)
    assert list(to_image.rgb_sigmas) == pytest.approx(linear_schedule(3)) and to_image.depth_sigmas == (0.0,) * 4
    assert to_image.depth_held and to_image.needs_depth_latent and not to_image.needs_rgb_latent
    assert to_image.preview_branch == "rgb"
    assert SCHEDULES == ("flux_shifted", "linear")


def test_custom_levels_partial_start_and_held_noise_level():
    plan = plan_sampling("custom", steps=2, schedule="linear", token_count=48, levels=(BranchLevels(0.6, 0.0), BranchLevels(0.3, 0.3)))
    assert plan.task == "custom"
    assert list(plan.rgb_sigmas) == pytest.approx([0.6, 0.3, 0.0]) and plan.depth_sigmas == (0.3, 0.3, 0.3)
    assert plan.needs_rgb_latent and not plan.rgb_held  # starts below pure noise
    assert plan.needs_depth_latent and plan.depth_held and plan.preview_branch == "rgb"
    # levels given with a task name: the levels win
    assert plan_sampling("depth_estimation", steps=2, token_count=48, levels=(BranchLevels(), BranchLevels())).task == "custom"


def test_sigmas_override_one_branch_sets_the_steps_of_both():
    given = torch.tensor([1.0, 0.7, 0.2, 0.0])  # a ComfyUI SIGMAS tensor for the depth branch
    plan = plan_sampling("depth_to_image", steps=20, schedule="linear", token_count=48, depth_sigmas=given)
    assert plan.steps == 3
    assert list(plan.depth_sigmas) == pytest.approx(given.tolist()) and list(plan.rgb_sigmas) == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert not plan.depth_held and not plan.needs_depth_latent  # the SIGMAS start at 1: generated from noise
    both = plan_sampling(steps=20, token_count=48, rgb_sigmas=[0.5, 0.5], depth_sigmas=(1.0, 0.0))
    assert both.rgb_held and both.needs_rgb_latent and both.steps == 1


def test_plan_errors():
    with pytest.raises(ValueError, match="different lengths"):
        plan_sampling(token_count=48, rgb_sigmas=[1.0, 0.5, 0.0], depth_sigmas=[1.0, 0.0])
    with pytest.raises(ValueError, match="must not increase"):
        plan_sampling(token_count=48, rgb_sigmas=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        plan_sampling(token_count=48, depth_sigmas=[1.5, 0.0])
    with pytest.raises(ValueError, match="unknown schedule 'shifted'"):
        plan_sampling(schedule="shifted", token_count=48)  # the old name is accepted by pipeline.generate only
    with pytest.raises(ValueError, match="unknown task"):
        plan_sampling("inpaint", token_count=48)
    with pytest.raises(ValueError, match="'custom' needs levels"):
        plan_sampling("custom", token_count=48)
    with pytest.raises(ValueError, match="end <= start"):
        plan_sampling(token_count=48, levels=(BranchLevels(0.2, 0.5), BranchLevels()))
    with pytest.raises(ValueError, match="at least 1"):
        plan_sampling(steps=0, token_count=48)
    with pytest.raises(ValueError, match="different lengths"):
        SamplingPlan("custom", (1.0, 0.0), (1.0, 0.5, 0.0))


def test_check_latents_names_the_missing_input():
    plan_sampling(token_count=48).check_latents(False, False)
    with pytest.raises(ValueError, match=r"'depth_estimation' holds the rgb branch at sigma 0: it needs an image latent"):
        plan_sampling("depth_estimation", token_count=48).check_latents(False, True)
    with pytest.raises(ValueError, match=r"'depth_to_image' holds the depth branch at sigma 0: it needs a depth latent"):
        plan_sampling("depth_to_image", token_count=48).check_latents(True, False)
    custom = plan_sampling(token_count=48, levels=(BranchLevels(1.0, 0.0), BranchLevels(0.8, 0.0)))
    with pytest.raises(ValueError, match=r"'custom' starts the depth branch at sigma 0.8: it needs a depth latent"):
        custom.check_latents(True, False)
    custom.check_latents(False, True)
