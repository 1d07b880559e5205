"""Theorems 1 and 2 on linear-Gaussian toys, the variable change of Eq. 11, and the 2-D mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pds.exact import theory as th
from pds.precondition import Preconditioner, operator_matrix

seeds = st.integers(0, 2**32 - 1)


@given(seeds, st.integers(2, 8), st.floats(0.1, 3.0))
@settings(max_examples=30, deadline=None)
def test_thm1_stationary_covariance(seed, d, eps):
    rng = np.random.default_rng(seed)
    sigma, M, S = th.random_spd(d, rng, cond=50), th.random_invertible(d, rng), th.random_skew(d, rng)
    J, Q = th.langevin_drift(sigma, M, S, eps=eps)
    assert th.relative_error(th.stationary_covariance(J, Q), sigma) < 1e-9


@given(seeds, st.integers(2, 6))
@settings(max_examples=30, deadline=None)
def test_thm1_negative_controls(seed, d):
    rng = np.random.default_rng(seed)
    sigma, M = th.random_spd(d, rng, cond=50), th.random_invertible(d, rng)
    # M on the noise only: the stationary law changes unless MMᵀ happens to be I
    J, Q = th.langevin_drift(sigma, M, drift_precond=np.eye(d))
    assert th.relative_error(th.stationary_covariance(J, Q), sigma) > 1e-3
    # a symmetric (not skew) extra term: either unstable or the wrong covariance
    B = rng.standard_normal((d, d)) * 0.3
    J, Q = th.langevin_drift(sigma, M, B + B.T)
    try:
        assert th.relative_error(th.stationary_covariance(J, Q), sigma) > 1e-3
    except ValueError:
        pass


def test_thm2_time_dependent_g():
    rng = np.random.default_rng(0)
    d = 5
    sigma, M, S = th.random_spd(d, rng, cond=30), th.random_invertible(d, rng), th.random_skew(d, rng)
    smin, smax = 0.01, 50.0
    g = lambda t: smin * (smax / smin) ** t * np.sqrt(2 * np.log(smax / smin)) * np.eye(d)
    assert th.time_dependent_residual(sigma, M, S, g, np.linspace(0, 1, 11)).max() < 1e-9
    assert th.relative_error(th.covariance_flow(sigma, M, S, g, (0.0, 0.3)), sigma) < 1e-6
    # G(t)G(t)ᵀ that does not commute with M breaks it
    G = lambda t: (1 + t) * np.diag(np.linspace(1, 2, d))
    assert th.time_dependent_residual(sigma, M, S, G, [0.0, 0.5]).min() > 1e-2


def test_variable_change():
    rng = np.random.default_rng(1)
    sigma, M = th.random_spd(6, rng, cond=100), th.random_invertible(6, rng)
    errs = th.variable_change_errors(sigma, M, eps=0.5)
    for key in ("eq7_drift", "eq7_diffusion", "eq11_drift", "eq11_diffusion"):
        assert errs[key] < 1e-12


def test_ideal_preconditioner_equalises_rates():
    k = np.fft.fftfreq(6, 1 / 6)
    s = 1.0 / (0.1 + k[:, None] ** 2 + k[None, :] ** 2)
    sigma = th.stationary_field_covariance(s)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(sigma)), np.sort(s.ravel()), rtol=1e-10)
    J, _ = th.langevin_drift(sigma, np.eye(36))
    assert th.rate_condition_number(J) == pytest.approx(s.max() / s.min(), rel=1e-8)
    J, _ = th.langevin_drift(sigma, np.eye(36), drift_precond=sigma)
    assert th.rate_condition_number(J) == pytest.approx(1.0, abs=1e-8)
    # the PDS drift operator with R = s^(-1/2): M⁻¹M⁻ᵀ has symbol 1/R² = s, i.e. the ideal one
    pc = Preconditioner(freq=torch.tensor(s ** -0.5)[None], alpha=None)
    P = operator_matrix(pc.drift, (1, 6, 6))
    np.testing.assert_allclose(P, sigma, atol=1e-12)


def test_operator_matrix_refuses_complex():
    with pytest.raises(TypeError, match="complex"):
        operator_matrix(lambda x: torch.fft.fft2(x), (1, 2, 2))


def test_unstable_drift_is_refused():
    with pytest.raises(ValueError, match="stable"):
        th.stationary_covariance(np.eye(2), np.eye(2))


MIX = th.GaussianMixture2D([0.6, 0.4], [[-1.0, 0.0], [1.0, 0.5]],
                           [[[0.5, 0.1], [0.1, 0.4]], [[0.3, 0.0], [0.0, 0.6]]])


def test_mixture_score_and_bins_against_finite_differences():
    x = np.array([[0.3, -0.2], [1.1, 0.7]])
    h = 1e-6
    num = np.stack([(np.log(MIX.pdf(x + h * e)) - np.log(MIX.pdf(x - h * e))) / (2 * h)
                    for e in np.eye(2)], -1)
    np.testing.assert_allclose(MIX.score(x), num, rtol=1e-6)
    edges = np.linspace(-6, 6, 13)
    assert MIX.bin_probabilities(edges, edges).sum() == pytest.approx(1.0, abs=1e-4)


def test_fokker_planck_residual_converges_for_skew_and_not_for_controls():
    Mp = np.array([[1.2, 0.3], [0.0, 0.8]])
    K, S = Mp @ Mp.T, np.array([[0.0, 1.5], [-1.5, 0.0]])
    coarse = th.fokker_planck_residual(MIX, K, S, Mp, n=101)["relative_residual"]
    fine = th.fokker_planck_residual(MIX, K, S, Mp, n=201)["relative_residual"]
    assert fine < coarse / 3 and fine < 0.02  # second-order finite differences: ~4x per halving
    wrong = th.fokker_planck_residual(MIX, np.eye(2), 0 * S, Mp, n=201)["relative_residual"]
    assert wrong > 0.05
