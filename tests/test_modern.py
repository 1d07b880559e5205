"""The modern samplers (pds.modern): update rules against closed forms, exact per-frequency moments against Monte
Carlo at 16², and the p_σ-keeping PDS predictor."""

from __future__ import annotations

import math

import pytest
import torch
from test_samplers import PC, _compare, _target

from pds.exact import ode_exact, pc_exact
from pds.filters import parametric_filter
from pds.modern import dpmpp_2m, edm_sigmas, edm_stochastic, euler, heun, kept_noise_gain, pc_kept
from pds.precondition import Preconditioner
from pds.schedules import ve_schedule

FNS = {"euler": euler, "heun": heun, "dpmpp_2m": dpmpp_2m, "edm_churn": edm_stochastic}


def test_edm_sigmas_follow_the_published_formula():
    s = edm_sigmas(0.002, 80.0, 18)
    assert len(s) == 19 and s[-1] == 0.0 and s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002)
    i = 7
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="decrease strictly"):
        euler(lambda x, s: -x, (1, 1, 2, 2), [1.0, 2.0, 0.0])


def test_one_euler_step_from_the_point_mass_lands_on_it():
    """Data at a single point m: D(x, σ) = m for every x, so one Euler step from σ to 0 gives m exactly."""
    m = torch.full((1, 1, 4, 4), 0.3, dtype=torch.float64)
    score = lambda x, s: (m - x) / s**2  # noqa: E731
    x, nfe = euler(score, (3, 1, 4, 4), [7.0, 0.0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert nfe == 1 and torch.allclose(x, m.expand(3, 1, 4, 4))
    x, nfe = dpmpp_2m(score, (3, 1, 4, 4), edm_sigmas(0.1, 7.0, 5), generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    assert nfe == 5 and torch.allclose(x, m.expand(3, 1, 4, 4))


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m", "edm_churn", "edm_churn_pds"])
def test_exact_moments_match_monte_carlo_at_16x16(name):
    target, n = _target(h=16, w=16, seed=3), 8000
    sig = edm_sigmas(PC["sigma_min"], PC["sigma_max"], 8)
    pre = Preconditioner(freq=parametric_filter(16, 3.0, 1.6), alpha=5.0) if name.endswith("pds") else None
    key = name.removesuffix("_pds")
    kw = {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0} if key == "edm_churn" else {}
    res = ode_exact(target, key, sig, preconditioner=pre, **kw)
    extra = {"preconditioner": pre} if key == "edm_churn" else {}
    x, nfe = FNS[key](target, (n, 1, 16, 16), sig, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                      **kw, **extra)
    assert nfe == res.nfe == {"euler": 8, "heun": 15, "dpmpp_2m": 8, "edm_churn": 15}[key]
    _compare(res, x, target, n)


def test_pc_kept_matches_its_exact_moments_and_keeps_the_target_at_full_length():
    target, n = _target(h=16, w=16, seed=4), 5000
    pre = Preconditioner(freq=parametric_filter(16, 3.0, 1.6), alpha=5.0)
    res = pc_exact(target, **PC, iterations=12, preconditioner=pre, prior="vanilla", predictor="kept")
    schedule = ve_schedule(PC["sigma_min"], PC["sigma_max"], PC["num_scales"], iterations=12, dtype=torch.float64)
    x, nfe = pc_kept(target, (n, 1, 16, 16), schedule, PC["snr"], preconditioner=pre, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(6))
    assert nfe == 24
    # pc_kept uses the batch-norm step; the exact one the expected norm: compare the totals only (5 % at 3·16²)
    from pds.fourier import half_plane_weights

    y = torch.fft.rfft2(x) / 16.0
    var = (y - y.mean(0)).abs().pow(2).mean(0)
    ratio = float((var * half_plane_weights(16, 16)).sum() / (res.var * res.weights).sum())
    assert abs(ratio - 1) < 0.05
    # at full length the kept predictor is closer to the target than the released one (which is biased)
    full = dict(**PC, iterations=PC["num_scales"], preconditioner=pre)
    kept = pc_exact(target, **full, prior="vanilla", predictor="kept").w2
    released = pc_exact(target, **full).w2
    vanilla = pc_exact(target, **{**full, "preconditioner": None}).w2
    assert kept < released and kept < 1.5 * vanilla


def test_kept_noise_gain_is_sqrt_of_2p_minus_1_and_refuses_small_gains():
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6), alpha=5.0)
    kept = kept_noise_gain(pre)
    torch.testing.assert_close(kept.freq_gain, torch.sqrt(2 * pre.freq_gain**2 - 1))
    with pytest.raises(ValueError, match="below 1/2"):
        kept_noise_gain(Preconditioner(freq=parametric_filter(8, 2.0, 2.0), alpha=None))
    with pytest.raises(NotImplementedError, match="space filter"):
        kept_noise_gain(Preconditioner(space=torch.rand(1, 8, 8) + 0.5))
    assert math.isfinite(float(kept.freq_gain.max()))


def test_w2_within_a_budget_is_the_exact_samplers():
    from pds.exact import SAMPLERS_BY_NFE, w2_within
    from pds.models.configs import experiment
    from pds.scores import StationaryGaussianScore

    g = torch.Generator().manual_seed(3)
    target = StationaryGaussianScore.from_images(torch.rand(40, 1, 8, 8, generator=g, dtype=torch.float64))
    e = experiment("cifar10_ncsnpp")
    pre = Preconditioner(freq=torch.log1p(target.expected_power()), alpha=5.0)
    assert w2_within(target, e, "PC + PDS (released)", 21, pre) == pc_exact(
        target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=10, preconditioner=pre).w2_relative
    heun_w2 = ode_exact(target, "heun", edm_sigmas(e.sigma_min, e.sigma_max, 5)).w2_relative
    assert w2_within(target, e, "heun", 9) == heun_w2
    assert w2_within(target, e, "edm_churn + PDS", 9, pre) == ode_exact(
        target, "edm_churn", edm_sigmas(e.sigma_min, e.sigma_max, 5), preconditioner=pre).w2_relative
    assert all(w2_within(target, e, s, 12, pre) > 0 for s in SAMPLERS_BY_NFE)
    with pytest.raises(ValueError, match="sampler must be one of"):
        w2_within(target, e, "ddim", 10)
    with pytest.raises(ValueError, match="needs a preconditioner"):
        w2_within(target, e, "edm_churn + PDS", 10)
