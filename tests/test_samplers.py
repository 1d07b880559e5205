"""Samplers: equivalence with vanilla, determinism, schedules, errors; exact analysis vs Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pds.filters import parametric_filter
from pds.fourier import half_plane_weights
from pds.precondition import Preconditioner
from pds.samplers import annealed_langevin, pc_sampler
from pds.schedules import LangevinLadder, geometric_sigmas, ve_schedule
from pds.scores import StationaryGaussianScore
from pds.solenoidal import central_difference


def _target(c=1, h=8, w=8, seed=0):
    k = torch.fft.fftfreq(h, 1 / h, dtype=torch.float64)
    l = torch.fft.fftfreq(w, 1 / w, dtype=torch.float64)
    ps = h * w * 0.05 / (0.2 + k[:, None] ** 2 + l[None, :] ** 2)
    mean = 0.4 + 0.1 * torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return StationaryGaussianScore(mean, ps.expand(c, h, w))


PC = dict(sigma_min=0.01, sigma_max=5.0, num_scales=60, snr=0.16)


def run_pc(score, shape, sigma_min, sigma_max, num_scales, snr, *, iterations=None, speed_up=None,
           dtype=torch.float32, **kw):
    """pc_sampler on the ve_schedule of these settings, in the sampler's dtype (as pds.lab.experiments builds it)."""
    schedule = ve_schedule(sigma_min, sigma_max, num_scales, speed_up, iterations=iterations, dtype=dtype)
    return pc_sampler(score, shape, schedule, snr=snr, dtype=dtype, **kw)


def test_ve_schedule_matches_released_rules():
    sched = ve_schedule(0.01, 50.0, 1000, speed_up=10.0)
    assert sched.n == 100 and sched.eps == pytest.approx(1e-4)
    assert float(sched.t[0]) == 1.0 and float(sched.t[-1]) == pytest.approx(1e-4)
    assert float(sched.sigma[0]) == pytest.approx(50.0, rel=1e-6)
    assert float(sched.sigma_prev[-1]) == 0.0  # the last step reaches index 0
    assert torch.all(sched.sigma_disc[:-1] > sched.sigma_prev[:-1])


def test_pc_vanilla_equivalence_bit_for_bit():
    target = _target()
    ones = torch.ones(1, 8, 8)
    runs = []
    for pc in (None, Preconditioner(freq=ones, space=ones, alpha=None), Preconditioner(freq=ones, alpha=5.0)):
        x, nfe = run_pc(target, (3, 1, 8, 8), **PC, preconditioner=pc, generator=torch.Generator().manual_seed(1))
        runs.append(x)
        assert nfe == 2 * PC["num_scales"]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_pc_determinism_and_seed_dependence():
    target = _target()
    pc = Preconditioner(freq=parametric_filter(8, 2.0, 1.6))
    a, _ = run_pc(target, (2, 1, 8, 8), **PC, preconditioner=pc, generator=torch.Generator().manual_seed(3))
    b, _ = run_pc(target, (2, 1, 8, 8), **PC, preconditioner=pc, generator=torch.Generator().manual_seed(3))
    c, _ = run_pc(target, (2, 1, 8, 8), **PC, preconditioner=pc, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pc_draw_order():
    """The prior draw comes first, then corrector and predictor noise per iteration."""
    target = _target()
    g = torch.Generator().manual_seed(5)
    prior = torch.randn((2, 1, 8, 8), generator=g) * 5.0
    x_given, _ = run_pc(target, prior, **PC, generator=g)
    x_full, _ = run_pc(target, (2, 1, 8, 8), **PC, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x_given, x_full)


def test_pc_speed_up_and_denoise():
    target = _target()
    x, nfe = run_pc(target, (1, 1, 8, 8), **PC, speed_up=4.0, generator=torch.Generator().manual_seed(0))
    assert nfe == 2 * int(60 / 4.0)
    y, _ = run_pc(target, (1, 1, 8, 8), **PC, speed_up=4.0, denoise=False, generator=torch.Generator().manual_seed(0))
    # denoise returns the last predictor's mean: without it the last draw (the 31st after the prior) is added, G_N·ξ
    g = torch.Generator().manual_seed(0)
    last = [torch.randn((1, 1, 8, 8), generator=g) for _ in range(1 + 2 * 15)][-1]
    g_last = ve_schedule(PC["sigma_min"], PC["sigma_max"], PC["num_scales"], 4.0).host()[1][-1]
    torch.testing.assert_close(y - x, g_last * last)


def test_nonfinite_stops_with_iteration_and_sigma():
    def bad_score(x, sigma):
        return torch.full_like(x, float("nan")) if float(sigma) < 1.0 else -x / (1 + float(sigma) ** 2)

    with pytest.raises(FloatingPointError, match=r"iteration \d+ \(sigma = 0\.\d+"):
        run_pc(bad_score, (1, 1, 4, 4), **PC, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError, match="iteration"):
        annealed_langevin(bad_score, (1, 1, 4, 4), LangevinLadder(geometric_sigmas(5, 0.1, 5), 2, 1e-3),
                          generator=torch.Generator().manual_seed(0))


def test_annealed_langevin_equivalence_and_nfe():
    target = _target()
    sig = geometric_sigmas(1.0, 0.01, 5)
    ones = torch.ones(1, 8, 8)
    kw = dict(denoise=True, dtype=torch.float32)
    a, nfe = annealed_langevin(target, (2, 1, 8, 8), LangevinLadder(sig, 3, 2e-5), **kw,
                               generator=torch.Generator().manual_seed(0))
    b, _ = annealed_langevin(target, (2, 1, 8, 8), LangevinLadder(sig, 3, 2e-5), **kw,
                             generator=torch.Generator().manual_seed(0),
                             preconditioner=Preconditioner(freq=ones, space=ones, alpha=None))
    assert nfe == 16 and torch.equal(a, b)
    with pytest.raises(ValueError, match="init"):
        annealed_langevin(target, (1, 1, 8, 8), LangevinLadder(sig, 1, 1e-5), init="zeros")
    with pytest.raises(ValueError, match="n_steps_each"):
        annealed_langevin(target, (1, 1, 8, 8), LangevinLadder(sig, [1, 2], 1e-5))


def test_shorten_schedule():
    sig = geometric_sigmas(1.0, 0.01, 10)
    s = LangevinLadder(sig, 100, 1.0).shorten(20)
    assert s.total_steps == 20 and len(s.sigmas) == 10 and s.n_steps == (2,) * 10
    assert s.step_lr == pytest.approx(50.0) and LangevinLadder(sig, 100, 1.0).shorten(20, expand=False).step_lr == 1.0
    s = LangevinLadder(geometric_sigmas(140, 0.01, 788), 4, 1.0).shorten(156)
    assert s.total_steps == 156 and s.sigmas[0] == pytest.approx(140) and s.sigmas[-1] == pytest.approx(0.01)
    s = LangevinLadder(sig, 100, 1.0).shorten(23)
    assert s.total_steps == 23 and s.n_steps[:3] == (3, 3, 3) and s.n_steps[3:] == (2,) * 7


# -- exact analysis vs Monte Carlo ---------------------------------------------------------------
def _moments(samples: torch.Tensor):
    h, w = samples.shape[-2:]
    y = torch.fft.rfft2(samples) / math.sqrt(h * w)
    mean = y.mean(0)
    var = (y - mean).abs().pow(2).mean(0)
    return mean, var


def _compare(res, samples, target, n):
    mean, var = _moments(samples)
    m_hat = torch.fft.rfft2(target.mean) / math.sqrt(target.shape[-1] * target.shape[-2])
    # variance of a sample variance of a (complex or real) Gaussian: ≤ 2v²/n; use 5 standard errors
    ex_var, ex_delta = res.per_frequency(res.var), res.per_frequency(res.delta)
    rel = (var - ex_var).abs() / ex_var
    assert float(rel.max()) < 5 * math.sqrt(2.0 / n), float(rel.max())
    # the total over frequencies is more precise: its relative s.e. is at most √(2 Σ (w v)² / n) / Σ w v (the
    # frequencies are independent), √(2/(n·K)) for K equal variances, more when a few frequencies dominate
    weights = half_plane_weights(*target.shape[-2:])
    total = float((var * weights).sum() / (ex_var * weights).sum())
    se_total = math.sqrt(2.0 / n * float(((weights * ex_var) ** 2).sum())) / float((weights * ex_var).sum())
    assert abs(total - 1) < 5 * se_total + 1e-3, (total, se_total)
    se_mean = (ex_var / n).sqrt()
    z = ((mean - m_hat) - ex_delta).abs() / se_mean
    assert float(z.max()) < 5.5, float(z.max())


def _full_grid(half: torch.Tensor, w: int) -> torch.Tensor:
    """Hermitian extension of a real half-plane array [C, H, W//2+1] to [C, H, W]."""
    h = half.shape[-2]
    full = torch.zeros(*half.shape[:-1], w, dtype=half.dtype)
    for j in range(w):
        if j <= w // 2:
            full[..., j] = half[..., j]
        else:
            full[..., j] = half[..., (-torch.arange(h)) % h, w - j]
    return full


def test_iterations_are_exact_where_the_released_division_loses_one():
    """The released N = int(num_scales / (num_scales / T)) is T − 1 for some pairs (e.g. 1000, 58);
    ``iterations=T`` always runs T."""
    short = [(n, t) for n in (1000, 2000) for t in range(1, n + 1) if int(n / (n / t)) != t]
    assert (1000, 58) in short and ve_schedule(0.01, 50, 1000, speed_up=1000 / 58).n == 57
    for n, t in short[:50] + [(1000, 58), (2000, 166), (2000, 66)]:
        sched = ve_schedule(0.01, 50, n, iterations=t)
        assert sched.n == t and sched.eps == pytest.approx(1e-5 * n / t)
    x, nfe = run_pc(_target(), (1, 1, 8, 8), **PC, iterations=7, generator=torch.Generator().manual_seed(0))
    assert nfe == 14


def test_released_speed_up_path_is_unchanged():
    a, _ = run_pc(_target(), (2, 1, 8, 8), **PC, speed_up=4.0, generator=torch.Generator().manual_seed(0))
    b, _ = run_pc(_target(), (2, 1, 8, 8), **PC, iterations=15, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # 60 / 4 = 15 exactly: the same grids


def test_finite_checks_every_k_iterations_name_the_span():
    calls = []

    def bad_after_three(x, sigma):
        calls.append(sigma)
        return torch.full_like(x, float("nan")) if len(calls) > 6 else -x

    ladder = geometric_sigmas(5.0, 0.01, 10)
    with pytest.raises(FloatingPointError, match=r"iterations 5…9"):
        annealed_langevin(bad_after_three, (1, 1, 4, 4), LangevinLadder(ladder, 1, 1e-5), check_every=5,
                          generator=torch.Generator().manual_seed(0))
    assert len(calls) == 10  # it ran on to the next check, no further
    with pytest.raises(ValueError, match="check_every"):
        annealed_langevin(bad_after_three, (1, 1, 4, 4), LangevinLadder(ladder, 1, 1e-5), check_every=0)


def test_per_sample_generators_and_steps_make_a_sample_independent_of_its_batch():
    """One generator per sample and the per-sample corrector step (the released sampler at batch size 1): a
    sample is the same, to float rounding, whether drawn alone or with others."""
    target = _target()
    gens = lambda idx: [torch.Generator().manual_seed(1000 + i) for i in idx]  # noqa: E731
    together, _ = run_pc(target, (4, 1, 8, 8), **PC, generator=gens(range(4)), corrector="sample")
    halves = [run_pc(target, (2, 1, 8, 8), **PC, generator=gens(idx), corrector="sample")[0]
              for idx in ((0, 1), (2, 3))]
    torch.testing.assert_close(torch.cat(halves), together, rtol=1e-5, atol=1e-5)
    batch_step, _ = run_pc(target, (4, 1, 8, 8), **PC, generator=gens(range(4)))  # released: batch-mean step
    assert not torch.allclose(batch_step, together, atol=1e-4)
    a, _ = annealed_langevin(target, (3, 1, 8, 8), LangevinLadder(geometric_sigmas(1, 0.01, 4), 2, 1e-4),
                             generator=gens(range(3)))
    b, _ = annealed_langevin(target, (1, 1, 8, 8), LangevinLadder(geometric_sigmas(1, 0.01, 4), 2, 1e-4),
                             generator=gens([2]))
    torch.testing.assert_close(a[2:], b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2 generators given for a batch of 4"):
        run_pc(target, (4, 1, 8, 8), **PC, generator=gens(range(2)))
    with pytest.raises(ValueError, match="corrector must be 'batch', 'sample' or 60 step sizes"):
        run_pc(target, (4, 1, 8, 8), **PC, corrector="median")
    with pytest.raises(ValueError, match="60 finite numbers >= 0, got 3"):
        run_pc(target, (4, 1, 8, 8), **PC, corrector=[0.1, 0.1, 0.1])


def test_langevin_relaxation_with_skew_operators():
    """Thm 1's SDE: a skew S that commutes with Σ (a Fourier multiplier on a stationary target) leaves every
    relaxation rate unchanged; a generic skew matrix can raise the slowest one."""
    from pds.exact import best_step_contraction, langevin_stationary_dense
    from pds.solenoidal import MatrixSkew

    target = _target(h=6, w=6)
    base = langevin_stationary_dense(target, 1e-3)
    fourier = langevin_stationary_dense(target, 1e-3, solenoidal=central_difference(6, "W"), omega=10.0)
    assert fourier["slowest_rate"] == pytest.approx(base["slowest_rate"], rel=1e-9)
    dense = MatrixSkew(np.random.default_rng(0).standard_normal((36, 36)) / 6)
    assert langevin_stationary_dense(target, 1e-3, solenoidal=dense, omega=10.0)["slowest_rate"] > \
        2 * base["slowest_rate"]
    b0, b1 = best_step_contraction(target), best_step_contraction(target, solenoidal=dense, omega=10.0)
    assert b1["largest_stable_step"] < b0["largest_stable_step"] and 0 < b0["radius"] < 1
