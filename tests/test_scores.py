from __future__ import annotations

import numpy as np
import pytest
import torch

from pds.exact.theory import random_spd
from pds.scores import GaussianScore, StationaryGaussianScore


def _stationary(c=2, h=5, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = torch.rand(c, h, w, generator=g, dtype=torch.float64) * 30 + 1
    mean = torch.rand(c, h, w, generator=g, dtype=torch.float64)
    return StationaryGaussianScore(mean, ps)


def test_stationary_score_matches_dense_gaussian():
    target = _stationary()
    cov = target.covariance()
    dense = GaussianScore(target.mean, cov)
    x = torch.randn(4, *target.shape, dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.1, 1.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(target(x, sigma), dense(x, sigma), rtol=1e-9, atol=1e-10)
    # and the dense one against the formula −(Σ + σ²I)⁻¹(x − μ)
    d = cov.shape[0]
    for i, s in enumerate(sigma.tolist()):
        expected = -np.linalg.solve(cov + s**2 * np.eye(d), (x[i] - target.mean).reshape(-1).numpy())
        np.testing.assert_allclose(dense(x[i : i + 1], sigma[i : i + 1]).reshape(-1).numpy(), expected,
                                   rtol=1e-9, atol=1e-10)


def test_stationary_sampling_moments():
    target = _stationary(c=1, h=4, w=4, seed=2)
    x = target.sample(40000, generator=torch.Generator().manual_seed(0)).reshape(40000, -1).numpy()
    cov = target.covariance()
    emp = np.cov(x.T)
    # standard error of a covariance entry ≈ sqrt((σ_ii σ_jj + σ_ij²)/n)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / len(x))
    assert np.abs(emp - cov).max() / se.max() < 5
    tol = 5 * np.sqrt(cov.diagonal().max() / len(x))
    np.testing.assert_allclose(x.mean(0), target.mean.reshape(-1).numpy(), atol=tol)


def test_fit_from_images_recovers_spectrum():
    target = _stationary(c=1, h=6, w=6, seed=3)
    raw = target.sample(20000, generator=torch.Generator().manual_seed(1))
    lo, hi = float(raw.min()), float(raw.max())
    fit = StationaryGaussianScore.from_images((raw - lo) / (hi - lo))  # into [0, 1] by an affine map
    expected = target.spectrum / (hi - lo) ** 2
    np.testing.assert_allclose(fit.spectrum.numpy(), expected.numpy(), rtol=0.1)
    np.testing.assert_allclose(fit.mean.numpy(), ((target.mean - lo) / (hi - lo)).numpy(), atol=0.01)


def test_gaussian_score_sample_and_errors():
    rng = np.random.default_rng(0)
    cov = random_spd(8, rng, cond=5)
    gs = GaussianScore(np.zeros((2, 2, 2)), cov)
    x = gs.sample(20000, torch.Generator().manual_seed(0)).reshape(20000, -1).numpy()
    assert np.abs(np.cov(x.T) - cov).max() < 0.2
    with pytest.raises(ValueError, match="must be 8×8"):
        GaussianScore(np.zeros((2, 2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianScore(np.zeros((1, 1, 2)), -np.eye(2))
    with pytest.raises(ValueError, match="sigma"):
        gs(torch.zeros(2, 2, 2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        gs(torch.zeros(2, 2, 2), torch.zeros(2))


def test_float32_output():
    target = _stationary()
    y = target(torch.randn(2, *target.shape), torch.ones(2))
    assert y.dtype == torch.float32


# -- the exact score of a real image set ---------------------------------------------------------------------------
def _images(n=20, shape=(3, 4, 4), seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _dense_log_p(x, X, s):
    d = ((x[:, None] - X[None]) ** 2).flatten(2).sum(-1)
    D = X[0].numel()
    return torch.logsumexp(-d / (2 * s[:, None] ** 2), dim=1) - np.log(len(X)) - 0.5 * D * torch.log(2 * np.pi * s**2)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0, 5.0])
def test_empirical_score_is_the_autograd_gradient_of_the_dense_log_density(sigma):
    from pds.empirical import EmpiricalScore

    X = _images()
    g = torch.Generator().manual_seed(1)
    x = torch.cat([X[:3] + sigma * torch.randn(3, *X.shape[1:], generator=g, dtype=torch.float64),
                   torch.rand(3, *X.shape[1:], generator=g, dtype=torch.float64)])
    s = torch.full((len(x),), sigma, dtype=torch.float64)
    score = EmpiricalScore(X, dtype=torch.float64, chunk=7)  # several chunks: the streamed log-sum-exp
    xg = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(_dense_log_p(xg, X, s).sum(), xg)
    got = score(x, sigma)
    assert got.dtype == torch.float64 and got.shape == x.shape
    torch.testing.assert_close(got, grad, rtol=1e-10, atol=1e-10 * float(grad.abs().max()))
    torch.testing.assert_close(score.log_density(x, s), _dense_log_p(x, X, s), rtol=1e-12, atol=1e-10)
    # the denoiser is Tweedie's posterior mean x + σ² ∇log p_σ
    torch.testing.assert_close(score.posterior_mean(x, sigma), x + sigma**2 * grad, rtol=1e-10, atol=1e-10)


def test_empirical_score_limits_small_and_large_sigma():
    from pds.empirical import EmpiricalScore

    X = _images(n=30)
    score = EmpiricalScore(X, dtype=torch.float64, chunk=8)
    g = torch.Generator().manual_seed(0)
    x = X[[4, 17]] + 1e-4 * torch.randn(2, *X.shape[1:], generator=g, dtype=torch.float64)
    # σ → 0: all weight on the nearest image, the score points at it
    torch.testing.assert_close(score.posterior_mean(x, 1e-3), X[[4, 17]], rtol=0, atol=1e-12)
    torch.testing.assert_close(score(x, 1e-3), (X[[4, 17]] - x) / 1e-6, rtol=1e-9, atol=1e-6)
    # σ → ∞: uniform weights, the posterior mean is the set's mean image
    far = torch.rand(2, *X.shape[1:], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(score.posterior_mean(far, 1e4), X.mean(0).expand(2, -1, -1, -1), rtol=0, atol=1e-7)
    idx, dist = score.nearest(x)
    assert idx.tolist() == [4, 17] and float(dist.max()) < 1e-2


@pytest.mark.parametrize("sigma", [0.003, 0.02, 0.1, 1.0, 25.0])
def test_float32_with_refinement_agrees_with_float64(sigma):
    """Fashion-MNIST-like values: at small σ the float32 distances alone would lose the weights (the refinement
    measures the nearest candidates again in float64); at large σ float32 is enough."""
    from pds.empirical import EmpiricalScore

    X = _images(n=300, shape=(1, 28, 28), seed=2)
    X[7] = X[3] + 1e-3  # a near duplicate: two images with comparable weights at small σ
    X = X.float().double()  # the set the float32 score stores
    g = torch.Generator().manual_seed(4)
    x = torch.cat([X[[3, 7, 100]] + sigma * torch.randn(3, 1, 28, 28, generator=g, dtype=torch.float64),
                   0.5 * (X[[10]] + X[[11]])])
    x = x.float().double()  # the same inputs for both (a midpoint's weights depend on the last bits of x at small σ)
    exact = EmpiricalScore(X, dtype=torch.float64).posterior_mean(x, sigma)
    fast = EmpiricalScore(X, dtype=torch.float32, chunk=64, k=8)
    got = fast.posterior_mean(x.float(), sigma)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact, rtol=0, atol=2e-4)
    if sigma <= 0.02:  # without the refinement float32 loses the weights here
        plain = EmpiricalScore(X, dtype=torch.float32, chunk=64, k=8, tol=float("inf")).posterior_mean(x.float(), sigma)
        assert float((plain.double() - exact).abs().max()) > 5e-3


def test_rows_the_candidates_cannot_cover_are_computed_exactly():
    """Many exact duplicates of one image: its k candidates all weigh the same, so the refinement falls back to a
    float64 pass over the whole set for that row."""
    from pds.empirical import EmpiricalScore

    X = _images(n=50, shape=(1, 8, 8), seed=5).float().double()
    X[10:30] = X[5]
    x = X[[5, 40]] + 0.001
    x = x.float().double()
    exact = EmpiricalScore(X, dtype=torch.float64).posterior_mean(x, 0.002)
    got = EmpiricalScore(X, dtype=torch.float32, chunk=16, k=4).posterior_mean(x.float(), 0.002)
    torch.testing.assert_close(got.double(), exact, rtol=0, atol=1e-6)


def test_empirical_score_refuses_bad_input():
    from pds.empirical import EmpiricalScore

    X = _images(n=5)
    with pytest.raises(ValueError, match="non-empty tensor"):
        EmpiricalScore(X[0])
    with pytest.raises(ValueError, match="finite"):
        EmpiricalScore(torch.full((2, 1, 2, 2), float("nan")))
    score = EmpiricalScore(X)
    with pytest.raises(ValueError, match="x must have shape"):
        score(torch.zeros(2, 1, 4, 4), 1.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        score(X[:2].float(), 0.0)
    assert score.peak_bytes(256) > score.peak_bytes(1) > X.numel() * 4


def test_a_small_set_is_refined_by_a_float64_pass():
    """N ≤ 10k: the rows float32 would get wrong are passed again in float64 (no candidates)."""
    from pds.empirical import EmpiricalScore

    X = _images(n=30, shape=(1, 28, 28), seed=7).float().double()
    X[1] = X[0] + 1e-3
    x = (0.5 * (X[[0]] + X[[1]]) + 0.001).float().double()
    exact = EmpiricalScore(X, dtype=torch.float64).posterior_mean(x, 0.003)
    fast = EmpiricalScore(X, dtype=torch.float32, k=8)
    assert fast.n <= 10 * fast.k
    torch.testing.assert_close(fast.posterior_mean(x.float(), 0.003).double(), exact, rtol=0, atol=1e-6)


def test_the_power_law_fit_runs_to_convergence():
    """fit_power_law recovers a spectrum of its own form to round-off, and a last-bit nudge of the spectrum (what
    another CPU's kernels do) moves its parameters by round-off only, not by the fit's stopping tolerance."""
    from pds.fourier import radius_squared
    from pds.scores import fit_power_law

    k2 = radius_squared(24, 24)
    law = torch.stack([a / (k2 + k0**2) ** (b / 2) for a, b, k0 in ((3.0, 2.6, 1.4), (0.5, 3.1, 0.8))])
    law[:, 0, 0] = 7.0  # DC: returned as it is, not fitted
    target = StationaryGaussianScore(torch.zeros(2, 24, 24), law * 24 * 24)
    fit = fit_power_law(target)
    assert np.allclose(fit["A"], [3.0, 0.5], rtol=1e-10) and np.allclose(fit["beta"], [2.6, 3.1], rtol=1e-10)
    assert np.allclose(fit["k0"], [1.4, 0.8], rtol=1e-10) and np.allclose(fit["dc"], 7.0, rtol=1e-12)
    g = torch.Generator().manual_seed(0)
    noisy = law * torch.exp(0.3 * torch.randn(law.shape, generator=g, dtype=torch.float64))
    last_bits = 1 + 4e-16 * torch.randn(law.shape, generator=g, dtype=torch.float64).sign()
    fit = fit_power_law(StationaryGaussianScore(torch.zeros(2, 24, 24), noisy * 24 * 24))
    nudged = fit_power_law(StationaryGaussianScore(torch.zeros(2, 24, 24), noisy * last_bits * 24 * 24))
    for name in ("A", "beta", "k0"):
        assert np.allclose(fit[name], nudged[name], rtol=1e-12, atol=0), name
    logs = np.log(StationaryGaussianScore(torch.zeros(2, 24, 24), noisy * 24 * 24).spectrum.numpy())
    k2 = k2.numpy()
    for ch in range(2):  # at the minimum the gradient Jᵀr vanishes (to round-off), written here from the model
        a, b, k0 = fit["A"][ch], fit["beta"][ch], fit["k0"][ch]
        d = (k2 + k0**2)[k2 > 0]
        r = np.log(a) - 0.5 * b * np.log(d) - logs[ch][k2 > 0]
        J = np.stack([np.ones_like(d), -0.5 * np.log(d), -b * k0**2 / d], axis=1)
        assert np.abs(J.T @ r).max() <= 1e-11 * np.linalg.norm(J, axis=0).max() * np.linalg.norm(r)
