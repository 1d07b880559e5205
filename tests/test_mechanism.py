"""pds.exact.mechanism: the predictor's fixed point, the freezing gain and the corrector's stationary bias against
iterations of pds.exact's own recursion and Monte Carlo chains; the band trace against the recursion's output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pds.configs import experiment
from pds.exact import pc_exact
from pds.exact.mechanism import (
    band_trace,
    best_scalar,
    corrector_stationary_bias,
    freezing_gain,
    predictor_fixed_point,
    predictor_step,
    scalar_preconditioner,
    step_ratio,
)
from pds.schedules import ve_schedule
from pds.scores import StationaryGaussianScore


def target(s_scale=1.0, h=8, w=8):
    k = torch.fft.fftfreq(h, 1 / h, dtype=torch.float64)
    ps = s_scale * h * w * 0.05 / (0.2 + k[:, None] ** 2 + k[None, :] ** 2)
    return StationaryGaussianScore(torch.full((1, h, w), 0.4, dtype=torch.float64), ps.expand(1, h, w))


class Settings:
    def __init__(self, sigma_min=0.01, sigma_max=50.0, levels=1000, snr=0.16):
        self.sigma_min, self.sigma_max, self.levels, self.snr = sigma_min, sigma_max, levels, snr


@pytest.mark.parametrize("p", [1.0, 1.3, 0.8])
def test_the_predictor_fixed_point_is_where_the_exact_recursion_goes(p):
    """Pure noise (s ≪ σ²) on a geometric ladder, corrector off (snr 0): the recursion's variance ratio after the
    predictor tends to (∗) with w = 1 − r²; one step equals predictor_step; a scalar Monte Carlo chain agrees."""
    tiny = target(s_scale=1e-12)
    settings, T = Settings(sigma_min=1.0, sigma_max=1e4, snr=0.0), 200
    r2 = step_ratio(1.0, 1e4, T)
    trace = band_trace(tiny, settings, T, scalar_preconditioner(tiny.shape, p), [0.0, 100.0], prior="vanilla")
    u = trace["u_predicted"][:, 0]
    # the released schedule evaluates the score at σ(t), 2e-4 off the geometric ladder whose G² it steps by
    assert u[T - 2] == pytest.approx(predictor_fixed_point(p, 1 - r2), rel=2e-3)
    sched = ve_schedule(1.0, 1e4, 1000, iterations=T, dtype=torch.float64)
    sigmas, _, g2s = sched.host()
    w1 = g2s[1] / sigmas[1] ** 2  # the step's own w (s ≈ 0); u' is relative to σ_1² − G², u[1] to σ_2²
    assert u[1] == pytest.approx(predictor_step(u[0], p, w1) * (sigmas[1] ** 2 - g2s[1]) / sigmas[2] ** 2, rel=1e-9)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(200_000, generator=gen, dtype=torch.float64)  # u = 1 at σ = 1 (s = 0)
    wv = 1 - r2
    y = (1 - p * wv) * y + math.sqrt(p * wv) * torch.randn(200_000, generator=gen, dtype=torch.float64)
    assert float(y.var() / r2) == pytest.approx(predictor_step(1.0, p, wv), rel=5 * math.sqrt(2 / 200_000))


def test_the_freezing_gain_makes_the_fixed_point_exact_where_a_frequency_freezes():
    for T in (40, 50, 100, 400):
        r2 = step_ratio(0.01, 50.0, T)
        p = freezing_gain(r2)
        assert predictor_fixed_point(p, (1 - r2) / 2) == pytest.approx(1.0, abs=1e-12)
        assert p > 1 and predictor_fixed_point(1.0, (1 - r2) / 2) > 1  # vanilla keeps too much noise there
    assert math.isnan(freezing_gain(0.4)) and predictor_fixed_point(3.0, 0.9) == math.inf
    with pytest.raises(ValueError, match="r² must lie"):
        freezing_gain(1.0)


def test_the_corrector_bias_is_the_stationary_variance_of_its_chain():
    v, p, eps = 2.0, 1.4, 0.3
    a = 1 - eps * p / v
    assert 2 * eps * p / (1 - a * a) / v == pytest.approx(corrector_stationary_bias(eps, p, v), rel=1e-12)
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(100_000, dtype=torch.float64)
    for _ in range(200):
        x = a * x + math.sqrt(2 * eps * p) * torch.randn(100_000, generator=gen, dtype=torch.float64)
    assert float(x.var() / v) == pytest.approx(corrector_stationary_bias(eps, p, v), rel=5 * math.sqrt(2 / 1e5))


def test_the_band_trace_ends_on_the_recursions_output():
    t, settings = target(), Settings(sigma_max=5.0, levels=60)
    pre = scalar_preconditioner(t.shape, 1.2)
    trace = band_trace(t, settings, 12, pre, [0.0, 1.5, 3.0, 6.0])
    res = pc_exact(t, 0.01, 5.0, 60, 0.16, iterations=12, preconditioner=pre)
    assert trace["w2_relative"] == res.w2_relative and trace["u_predicted"].shape == (12, 3)
    assert trace["eps"].tolist() == pytest.approx(res.corrector_steps, rel=1e-15)
    ratio = (res.var / res.spectrum).numpy()
    assert np.nanmin(trace["u_predicted"][-1]) >= ratio.min() - 1e-12
    assert np.nanmax(trace["u_predicted"][-1]) <= ratio.max() + 1e-12
    assert np.allclose(trace["absolute_step"], trace["eps"][:, None] * 1.2)  # a scalar gain: ε·p everywhere


def test_a_scalar_gain_cancels_in_the_corrector_and_the_best_one_is_a_minimum():
    """Under the snr rule ε·p does not depend on a scalar p; best_scalar finds a local minimum of the exact W2."""
    t = target()
    e = experiment("cifar10_ncsnpp")
    steps = {p: pc_exact(t, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=20,
                         preconditioner=scalar_preconditioner(t.shape, p), predictor="vanilla",
                         prior="vanilla").corrector_steps for p in (1.0, 1.7)}
    assert np.allclose(np.asarray(steps[1.7]) * 1.7, steps[1.0], rtol=1e-12)
    p, w2 = best_scalar(t, e, 20)
    for q in (p * 1.05, p / 1.05):
        assert pc_exact(t, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=20,
                        preconditioner=scalar_preconditioner(t.shape, q)).w2_relative > w2


def test_the_closest_gain_when_no_gain_is_exact():
    r2 = 0.4  # 2r² < 1
    p = freezing_gain(r2, closest=True)
    w = (1 - r2) / 2
    assert p == pytest.approx(math.sqrt(2 / (1 - r2)))
    for q in (p * 0.97, p * 1.03):  # the fixed point at the freezing step is smallest (closest to 1 from above) at p
        assert predictor_fixed_point(q, w) > predictor_fixed_point(p, w) > 1


def test_the_trace_reports_the_predictors_w_and_fixed_point():
    t, settings = target(), Settings(sigma_max=5.0, levels=60)
    trace = band_trace(t, settings, 12, None, [0.0, 0.5, 3.0, 6.0])
    sched = ve_schedule(0.01, 5.0, 60, iterations=12, dtype=torch.float64)
    sigmas, _, g2s = sched.host()
    s = t.spectrum[0, 0, 0].item()  # DC alone in the first band
    assert trace["w"][3, 0] == pytest.approx(g2s[3] / (s + sigmas[3] ** 2), rel=1e-12)
    assert trace["fixed_point"][3, 0] == pytest.approx(predictor_fixed_point(1.0, trace["w"][3, 0]), rel=1e-12)
