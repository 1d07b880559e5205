"""pds.exact, the exact per-frequency recursions of the samplers on Gaussian targets: against Monte Carlo runs of the
samplers (PC, annealed Langevin, the ODE samplers, skew drifts), against dense-matrix formulas (W2, KL), the fewest
iterations of a speed-up, the PC recursion's ablations (the corrector without the preconditioner, given steps) and its
trace against an independent PC loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_modern import FNS
from test_samplers import PC, _compare, _full_grid, _moments, _target, run_pc

from pds.exact import annealed_langevin_exact, fewest_iterations, ode_exact, pc_exact
from pds.filters import parametric_filter
from pds.fourier import half_plane_weights
from pds.modern import pc_kept
from pds.precondition import Preconditioner
from pds.samplers import SAMPLERS, Settings, annealed_langevin
from pds.schedules import LangevinLadder, edm_sigmas, geometric_sigmas, ve_schedule
from pds.scores import StationaryGaussianScore
from pds.solenoidal import central_difference, skew_term


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
    x, nfe = pc_kept(target, (n, 1, 16, 16), schedule, snr=PC["snr"], preconditioner=pre, dtype=torch.float64,
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


def test_w2_within_a_budget_is_the_exact_samplers():
    from pds.configs import experiment
    from pds.exact import SAMPLERS_BY_NFE, w2_within
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


@pytest.mark.parametrize("kind", ["vanilla", "parametric", "solenoidal"])
def test_pc_exact_matches_monte_carlo(kind):
    target, n = _target(), 20000
    pc = None if kind == "vanilla" else Preconditioner(freq=parametric_filter(8, 2.0, 1.6))
    sol, omega = (central_difference(8, "W"), 3.0) if kind == "solenoidal" else (None, 0.0)
    cfg = dict(**PC, speed_up=3.0)
    res = pc_exact(target, **cfg, preconditioner=pc, solenoidal=sol, omega=omega)
    x, _ = run_pc(target, (n, 1, 8, 8), **cfg, preconditioner=pc, skew=skew_term(sol, omega), dtype=torch.float64,
                      corrector=res.corrector_steps, generator=torch.Generator().manual_seed(0))
    _compare(res, x, target, n)


def test_pc_exact_expected_norm_step_close_to_adaptive():
    """The released adaptive step (batch norms) vs the expected-norm step: close in high dimension."""
    target, n = _target(c=3, h=16, w=16), 64
    res = pc_exact(target, **PC, speed_up=2.0)
    x, _ = run_pc(target, (n, 3, 16, 16), **PC, speed_up=2.0, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(0))
    _, var = _moments(x)
    ratio = float((var * half_plane_weights(16, 16)).sum() / (res.var * res.weights).sum())
    assert abs(ratio - 1) < 0.05


def test_annealed_exact_matches_monte_carlo():
    target, n = _target(), 20000
    sig = geometric_sigmas(2.0, 0.02, 6)
    pc = Preconditioner(freq=parametric_filter(8, 1.5, 0.7))
    for init in ("gaussian", "uniform"):
        res = annealed_langevin_exact(target, LangevinLadder(sig, 3, 5e-4), preconditioner=pc, denoise=True, init=init)
        x, nfe = annealed_langevin(target, (n, 1, 8, 8), LangevinLadder(sig, 3, 5e-4), preconditioner=pc,
                                   denoise=True, init=init,
                                   dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        assert nfe == res.nfe == 19
        _compare(res, x, target, n)


def test_exact_w2_and_kl_against_dense_formulas():
    import scipy.linalg

    target = _target(c=1, h=6, w=6)
    res = pc_exact(target, **PC, speed_up=6.0, preconditioner=Preconditioner(freq=parametric_filter(6, 1.0, 1.6)))
    d = 36
    F = np.fft.fft2(np.eye(d).reshape(d, 6, 6)).reshape(d, d).T / 6.0  # unitary DFT matrix
    cov_out = (F.conj().T @ np.diag(_full_grid(res.per_frequency(res.var), 6).ravel().numpy()) @ F).real
    cov_t = target.covariance()
    delta_full = torch.fft.irfft2(res.per_frequency(res.delta), s=(6, 6)) * 6.0  # E[x_out] − mean in pixels
    dmu = delta_full.ravel().numpy()
    root = scipy.linalg.sqrtm(scipy.linalg.sqrtm(cov_t) @ cov_out @ scipy.linalg.sqrtm(cov_t)).real
    w2_dense = math.sqrt(dmu @ dmu + np.trace(cov_t + cov_out - 2 * root))
    assert res.w2 == pytest.approx(w2_dense, rel=1e-6)
    kl_dense = 0.5 * (np.trace(np.linalg.solve(cov_t, cov_out)) - d + dmu @ np.linalg.solve(cov_t, dmu)
                      + np.linalg.slogdet(cov_t)[1] - np.linalg.slogdet(cov_out)[1])
    assert res.kl == pytest.approx(kl_dense, rel=1e-6)
    import dataclasses

    perfect = dataclasses.replace(res, delta=0 * res.delta, var=res.spectrum.clone(), nfe=0)
    assert perfect.w2 == 0 and perfect.kl == pytest.approx(0, abs=1e-12)


def test_exact_refuses_space_filters():
    with pytest.raises(NotImplementedError, match="space filter"):
        pc_exact(_target(), **PC, preconditioner=Preconditioner(space=torch.rand(1, 8, 8) + 0.5))


def test_fewest_iterations():
    calls = []

    def f(t):
        calls.append(t)
        return 1.0 / t

    assert fewest_iterations(f, 1 / 37, 2000) == 37
    assert fewest_iterations(f, 1e-6, 2000) is None
    assert fewest_iterations(f, 2.0, 2000) == 1
    assert len(set(calls)) < 60


@pytest.mark.parametrize("sampler", ["pc", "annealed"])
def test_exact_skew_moments_match_monte_carlo_at_16x16(sampler):
    """ω·S with a Fourier-diagonal skew S (central differences along H and W): the exact moments of both samplers
    against 8 000 Monte Carlo runs at 16² (issue 14)."""
    from pds.solenoidal import FourierSkew

    target, n = _target(h=16, w=16, seed=2), 8000
    sol = FourierSkew(central_difference(16, "H").imag + central_difference(16, "W").imag)
    pc = Preconditioner(freq=parametric_filter(16, 3.0, 1.6))
    if sampler == "pc":
        cfg = dict(**PC, iterations=12)
        res = pc_exact(target, **cfg, preconditioner=pc, solenoidal=sol, omega=2.0)
        x, _ = run_pc(target, (n, 1, 16, 16), **cfg, preconditioner=pc, skew=skew_term(sol, 2.0),
                      dtype=torch.float64, corrector=res.corrector_steps, generator=torch.Generator().manual_seed(3))
    else:
        sig = geometric_sigmas(2.0, 0.02, 5)
        res = annealed_langevin_exact(target, LangevinLadder(sig, 3, 5e-4), preconditioner=pc, solenoidal=sol,
                                      omega=0.5,
                                      denoise=True, init="gaussian")
        x, _ = annealed_langevin(target, (n, 1, 16, 16), LangevinLadder(sig, 3, 5e-4), preconditioner=pc,
                                 skew=skew_term(sol, 0.5),
                                 denoise=True, init="gaussian", dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(4))
    _compare(res, x, target, n)


def test_dense_exact_analysis_agrees_with_the_fourier_one():
    """Two independent exact computations: dense matrices (any operator) and per-frequency recursions."""
    from pds.exact import pc_exact_dense

    target = _target(h=6, w=6)
    pc = Preconditioner(freq=parametric_filter(6, 1.5, 1.6))
    for omega in (0.0, 3.0):
        a = pc_exact(target, **PC, iterations=20, preconditioner=pc, solenoidal=central_difference(6, "W"),
                     omega=omega)
        b = pc_exact_dense(target, **PC, iterations=20, preconditioner=pc, solenoidal=central_difference(6, "W"),
                           omega=omega)
        assert b.w2 == pytest.approx(a.w2, rel=1e-9)
        assert b.corrector_steps == pytest.approx(a.corrector_steps, rel=1e-9)


def test_the_exact_side_names_only_registered_samplers():
    """One source of sampler names: the filters optimised (pds.exact.optimal.OPTIMISED) and the budget comparisons
    (BUDGET_SAMPLERS: label → (registered name, with PDS)) name samplers of pds.samplers.SAMPLERS, preconditioned where
    PDS is applied; each registered name is its function's."""
    from pds.exact import BUDGET_SAMPLERS
    from pds.exact.optimal import OPTIMISED
    from pds.samplers import SAMPLERS

    assert all(SAMPLERS[name].preconditioned for name in OPTIMISED)
    assert all(name in SAMPLERS and (SAMPLERS[name].preconditioned or not with_pds)
               for name, with_pds in BUDGET_SAMPLERS.values())
    assert all(entry.fn.__name__ in (name, f"{name}_sampler") for name, entry in SAMPLERS.items())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_registered_sampler_is_called_one_way_and_its_entry_holds_its_exact_recursion(name):
    """``fn(score, x_or_shape, schedule, *, preconditioner, generator, device, dtype, **options)`` for every registered
    sampler, its schedule and options from one Settings (Sampler.schedule / .options), its exact recursion called
    the same way (Sampler.exact): the Monte Carlo moments of the run match it; a deterministic one refuses a
    preconditioner in both."""
    spec, target, n = SAMPLERS[name], _target(h=8, w=8, seed=7), 4000
    settings = Settings(PC["sigma_min"], PC["sigma_max"], 10, snr=PC["snr"], n_steps_each=1, step_lr=2e-5,
                        init="gaussian")
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6), alpha=5.0)
    schedule, options = spec.schedule(settings, 6, dtype=torch.float64), spec.options(settings)
    if not spec.preconditioned:
        with pytest.raises(ValueError, match="deterministic: it takes no preconditioner"):
            spec.fn(target, (2, 1, 8, 8), schedule, preconditioner=pre, **options)
        with pytest.raises(ValueError, match="deterministic: it takes no preconditioner"):
            spec.exact(target, schedule, preconditioner=pre, **options)
        pre = None
    res = spec.exact(target, schedule, preconditioner=pre, **options)
    given = {"corrector": res.corrector_steps} if spec.family == "pc" else {}  # the exact side's corrector steps
    x, nfe = spec.fn(target, (n, 1, 8, 8), schedule, preconditioner=pre, generator=torch.Generator().manual_seed(8),
                     device="cpu", dtype=torch.float64, **options, **given)
    assert nfe == res.nfe == (2 * 6 if spec.family == "pc" else spec.per_step * 6 - spec.saved)
    _compare(res, x, target, n)
