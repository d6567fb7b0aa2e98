"""Unbalanced timestep sampling against the paper's recipe (docs/method.md §7): scenario frequencies and distribution quantiles."""

import math

import pytest
import torch

from jointdit_trainer.timesteps import NORMAL_SHIFT, SMALL_SHIFT, sample_timesteps, shifted_logit_normal

N = 400_000
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def expected_quantile(q: float, shift: float) -> float:
    """Quantile of t = u*s / (1 + (s-1)*u), u = sigmoid(z), z ~ N(0, 1): every step is monotonic."""
    z = math.sqrt(2) * torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64)).item()
    u = 1 / (1 + math.exp(-z))
    return u * shift / (1 + (shift - 1) * u)


def quantile_tolerance(q: float, shift: float, n: int) -> float:
    """Five standard errors of the empirical q-quantile: sqrt(q(1-q)/n) / density(t_q)."""
    z = math.sqrt(2) * torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64)).item()
    u = 1 / (1 + math.exp(-z))
    dt_dz = shift / (1 + (shift - 1) * u) ** 2 * u * (1 - u)
    density = math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / dt_dz
    return 5 * math.sqrt(q * (1 - q) / n) / density


def assert_quantiles(t: torch.Tensor, shift: float):
    t = t.double()[:200_000]
    got = torch.quantile(t, torch.tensor(QUANTILES, dtype=torch.float64))
    for q, g in zip(QUANTILES, got.tolist()):
        want, tol = expected_quantile(q, shift), quantile_tolerance(q, shift, t.numel())
        assert tol < 0.01 and abs(g - want) < tol, (q, g, want, tol)


@pytest.fixture(scope="module")
def uts():
    return sample_timesteps(N, torch.Generator().manual_seed(1))


def test_official_constants_and_medians():
    assert (NORMAL_SHIFT, SMALL_SHIFT) == (3.1582, 0.25)
    # medians follow from u = 0.5: s / (1 + s)
    assert expected_quantile(0.5, NORMAL_SHIFT) == pytest.approx(0.75951, abs=1e-5)
    assert expected_quantile(0.5, SMALL_SHIFT) == pytest.approx(0.2, abs=1e-9)


def test_scenario_frequencies(uts):
    t_rgb, t_depth, scenario = uts
    shared = (scenario <= 1).double().mean().item()
    depth_small = (scenario == 2).double().mean().item()
    rgb_small = (scenario == 3).double().mean().item()
    assert shared == pytest.approx(0.5, abs=0.004)
    assert depth_small == pytest.approx(0.25, abs=0.004)
    assert rgb_small == pytest.approx(0.25, abs=0.004)
    # the timesteps themselves show the scenarios: equal exactly in the shared one only
    equal = t_rgb == t_depth
    assert torch.equal(equal, scenario <= 1)


def test_each_row_gets_the_specified_distribution(uts):
    t_rgb, t_depth, scenario = uts
    assert_quantiles(t_rgb[scenario <= 1], NORMAL_SHIFT)
    assert_quantiles(t_rgb[scenario == 2], NORMAL_SHIFT)
    assert_quantiles(t_depth[scenario == 2], SMALL_SHIFT)
    assert_quantiles(t_rgb[scenario == 3], SMALL_SHIFT)
    assert_quantiles(t_depth[scenario == 3], NORMAL_SHIFT)
    # small and normal draws are independent within a pair
    m = scenario == 2
    corr = torch.corrcoef(torch.stack([t_rgb[m], t_depth[m]]))[0, 1].item()
    assert abs(corr) < 0.01
    assert ((t_rgb > 0) & (t_rgb < 1) & (t_depth > 0) & (t_depth < 1)).all()


def test_same_timestep_ablation():
    t_rgb, t_depth, scenario = sample_timesteps(N, torch.Generator().manual_seed(2), mode="same")
    assert torch.equal(t_rgb, t_depth)
    assert (scenario == 0).all()
    assert_quantiles(t_rgb, NORMAL_SHIFT)


def test_generator_makes_it_reproducible_and_errors():
    a = sample_timesteps(8, torch.Generator().manual_seed(3))
    b = sample_timesteps(8, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert shifted_logit_normal(4, 1.0, torch.Generator().manual_seed(0)).shape == (4,)
    with pytest.raises(ValueError, match="'uts' or 'same'"):
        sample_timesteps(4, mode="balanced")
    with pytest.raises(ValueError, match="pairs"):
        sample_timesteps(0)
