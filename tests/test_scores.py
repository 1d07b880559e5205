from __future__ import annotations

import numpy as np
import pytest
import torch

from pds.scores import GaussianScore, StationaryGaussianScore
from pds.theory import random_spd


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
