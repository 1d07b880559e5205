"""pds.exact: the PC recursion's ablations (the corrector without the preconditioner, given steps) and its trace,
against an independent Monte Carlo PC loop and against the recursion's own special cases."""

from __future__ import annotations

import math

import pytest
import torch

from pds.exact import pc_exact
from pds.filters import parametric_filter
from pds.fourier import half_plane_weights
from pds.precondition import Preconditioner
from pds.schedules import ve_schedule
from pds.scores import StationaryGaussianScore

PC = dict(sigma_min=0.01, sigma_max=5.0, num_scales=60, snr=0.16)


def target(h=8, w=8):
    k = torch.fft.fftfreq(h, 1 / h, dtype=torch.float64)
    ps = h * w * 0.05 / (0.2 + k[:, None] ** 2 + k[None, :] ** 2)
    mean = 0.4 + 0.1 * torch.rand(1, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return StationaryGaussianScore(mean, ps.expand(1, h, w))


def pc_loop(score, n, schedule, steps, corrector=None, predictor=None, prior=None, gen=None):
    """A PC sampler written from Alg. 1, each part with its own preconditioner (None: vanilla) and the corrector's
    steps given: the independent side of the Monte Carlo check."""
    def drift(pre, v):
        return v if pre is None else pre.drift(v)

    def noise(pre, xi):
        return xi if pre is None else pre.noise(xi)

    shape = (n, 1, 8, 8)
    x = noise(prior, torch.randn(shape, generator=gen, dtype=torch.float64)) * schedule.sigma_max
    sigmas, gs, g2s = schedule.host()
    for i in range(schedule.n):
        eta = noise(corrector, torch.randn(shape, generator=gen, dtype=torch.float64))
        x = x + steps[i] * drift(corrector, score(x, sigmas[i])) + math.sqrt(2 * steps[i]) * eta
        x_mean = x + drift(predictor, g2s[i] * score(x, sigmas[i]))
        x = x_mean + gs[i] * noise(predictor, torch.randn(shape, generator=gen, dtype=torch.float64))
    return x_mean


@pytest.mark.parametrize("ablation", ["corrector vanilla", "predictor vanilla", "vanilla steps"])
def test_ablations_match_monte_carlo(ablation):
    """PDS in one part only, or with vanilla's ε instead of the snr rule: the recursion's output variance per
    frequency against 20 000 draws of the loop above (5 standard errors), and its mean."""
    t, n = target(), 20000
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6))
    vanilla_steps = pc_exact(t, **PC, iterations=12).corrector_steps
    options = {"corrector vanilla": dict(corrector="vanilla"), "predictor vanilla": dict(predictor="vanilla"),
               "vanilla steps": dict(steps=vanilla_steps)}[ablation]
    res = pc_exact(t, **PC, iterations=12, preconditioner=pre, prior="vanilla", **options)
    parts = {"corrector": None if ablation == "corrector vanilla" else pre,
             "predictor": None if ablation == "predictor vanilla" else pre}
    if ablation == "vanilla steps":
        assert res.corrector_steps == pytest.approx(vanilla_steps, rel=1e-15)
    schedule = ve_schedule(PC["sigma_min"], PC["sigma_max"], PC["num_scales"], iterations=12, dtype=torch.float64)
    x = pc_loop(t, n, schedule, res.corrector_steps, **parts, gen=torch.Generator().manual_seed(1))
    y = torch.fft.rfft2(x) / 8.0
    var = (y - y.mean(0)).abs().pow(2).mean(0)
    exact = res.per_frequency(res.var)
    assert float(((var - exact).abs() / exact).max()) < 5 * math.sqrt(2.0 / n)
    total = float((var * half_plane_weights(8, 8)).sum() / (exact * half_plane_weights(8, 8)).sum())
    assert abs(total - 1) < 5 * math.sqrt(2.0 / (n * exact.numel())) + 1e-3
    m_hat = torch.fft.rfft2(t.mean) / 8.0
    z = ((y.mean(0) - m_hat) - res.per_frequency(res.delta)).abs() / (exact / n).sqrt()
    assert float(z.max()) < 5.5


def test_the_ablations_reduce_to_known_cases():
    """Without a preconditioner every ablation is vanilla; the corrector and predictor both vanilla with a vanilla
    prior is vanilla whatever the filter; the snr rule's own steps given back reproduce the run."""
    t = target()
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6))
    vanilla = pc_exact(t, **PC, iterations=10)
    both = pc_exact(t, **PC, iterations=10, preconditioner=pre, prior="vanilla", corrector="vanilla",
                    predictor="vanilla")
    assert torch.allclose(both.per_frequency(both.var), vanilla.per_frequency(vanilla.var), rtol=1e-12, atol=0)
    assert math.isclose(both.w2, vanilla.w2, rel_tol=1e-12)
    released = pc_exact(t, **PC, iterations=10, preconditioner=pre)
    again = pc_exact(t, **PC, iterations=10, preconditioner=pre, steps=released.corrector_steps)
    assert torch.equal(again.var, released.var)
    with pytest.raises(ValueError, match="corrector must be"):
        pc_exact(t, **PC, iterations=10, corrector="kept")
    with pytest.raises(ValueError, match="one ε per iteration"):
        pc_exact(t, **PC, iterations=10, steps=[0.1] * 3)


def test_the_trace_sees_every_iteration_and_its_last_state_is_the_output():
    t = target()
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6))
    seen = []
    res = pc_exact(t, **PC, iterations=7, preconditioner=pre,
                   on_step=lambda i, eps, a_c, v_c, a_p, v_p: seen.append((i, float(eps), v_c, v_p)))
    assert [s[0] for s in seen] == list(range(7)) and [s[1] for s in seen] == res.corrector_steps
    assert torch.equal(seen[-1][3], res.var)


def test_samples_of_a_result_follow_its_law_and_are_the_targets_own_when_exact():
    """ExactResult.sample: 20 000 draws have the result's mean and variance per frequency (5 standard errors); with
    δ = 0 and v = s (the target's own law) they are the target's samples for the same generator, to round-off."""
    import dataclasses

    t, n = target(), 20000
    res = pc_exact(t, **PC, iterations=6, preconditioner=Preconditioner(freq=parametric_filter(8, 2.0, 1.6)))
    x = res.sample(t.mean, n, torch.Generator().manual_seed(2))
    assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float64
    y = torch.fft.rfft2(x) / 8.0
    exact = res.per_frequency(res.var)
    var = (y - y.mean(0)).abs().pow(2).mean(0)
    assert float(((var - exact).abs() / exact).max()) < 5 * math.sqrt(2.0 / n)
    m_hat = torch.fft.rfft2(t.mean) / 8.0
    assert float(((y.mean(0) - m_hat - res.per_frequency(res.delta)).abs() / (exact / n).sqrt()).max()) < 5.5
    own = dataclasses.replace(res, delta=torch.zeros_like(res.delta), var=res.spectrum.clone())
    assert torch.allclose(own.sample(t.mean, 3, torch.Generator().manual_seed(5)),
                          t.sample(3, torch.Generator().manual_seed(5)), rtol=0, atol=1e-12)
