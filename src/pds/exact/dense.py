"""Exact moments by dense linear algebra, for small images: any linear preconditioner and skew operator (a space filter
included, which couples frequencies), the PC sampler's output (:func:`pc_exact_dense`), the corrector's stationary
law (:func:`langevin_stationary_dense`) and its best contraction (:func:`best_step_contraction`); the per-frequency
recursions of :mod:`pds.exact.recursions` are checked against them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from pds.precondition import Preconditioner, operator_matrix
from pds.schedules import ve_schedule

__all__ = ["DenseResult", "pc_exact_dense", "langevin_stationary_dense", "best_step_contraction"]


# -- dense linear algebra: any linear preconditioner and skew operator, on small images ----------------
@dataclass
class DenseResult:
    """Output mean and covariance of a sampler on a Gaussian target, as dense arrays (small images)."""

    mean: np.ndarray  # [d]
    cov: np.ndarray  # [d, d]
    target_mean: np.ndarray
    target_cov: np.ndarray
    nfe: int
    corrector_steps: list = field(default_factory=list)

    @property
    def w2(self) -> float:
        import scipy.linalg

        root_t = scipy.linalg.sqrtm(self.target_cov).real
        cross = scipy.linalg.sqrtm(root_t @ self.cov @ root_t).real
        dm = self.mean - self.target_mean
        return math.sqrt(max(float(dm @ dm + np.trace(self.cov + self.target_cov - 2.0 * cross)), 0.0))

    @property
    def w2_relative(self) -> float:
        return self.w2 / math.sqrt(float(np.trace(self.target_cov)))


def _dense_operators(target, preconditioner, solenoidal, omega):
    """(Σ, M⁻¹M⁻ᵀ, M⁻¹, ω·S) as dense d×d matrices for a Gaussian ``target`` of dim = C·H·W pixels (identities and
    zero where there is no preconditioner or skew term)."""
    shape = tuple(target.shape)
    dim = int(np.prod(shape))
    target_cov = np.asarray(target.cov if hasattr(target, "cov") else target.covariance(), dtype=np.float64)
    if preconditioner is None:
        drift, noise = np.eye(dim), np.eye(dim)
    else:
        drift, noise = operator_matrix(preconditioner.drift, shape), operator_matrix(preconditioner.noise, shape)
    skew = np.zeros((dim, dim)) if solenoidal is None or omega == 0 else omega * operator_matrix(solenoidal, shape)
    return target_cov, drift, noise, skew


def pc_exact_dense(target, sigma_min: float, sigma_max: float, num_scales: int, snr: float, *,
                   iterations: int | None = None, speed_up: float | None = None,
                   preconditioner: Preconditioner | None = None, solenoidal=None, omega: float = 0.0,
                   denoise: bool = True) -> DenseResult:
    """Exact output mean and covariance of :func:`pds.samplers.pc_sampler` for a Gaussian ``target`` with a
    dense covariance (:class:`pds.scores.GaussianScore`, or a stationary one through its ``covariance()``), any
    preconditioner (space filter included) and any linear skew operator ``solenoidal`` (e.g.
    :class:`pds.solenoidal.MatrixSkew`), applied as the sampler applies them: the corrector's step ε from
    expected norms (as :func:`pc_exact`), computed from the preconditioned drift before ω·S is added, and ω·S
    scaled by ε in the corrector and by G² in the predictor. Meant for small images (dim = C·H·W up to a few hundred).
    """
    target_cov, drift, noise, skew = _dense_operators(target, preconditioner, solenoidal, omega)
    dim = len(target_cov)
    mu = target.mean.reshape(-1).numpy() if isinstance(target.mean, torch.Tensor) else np.asarray(target.mean).ravel()
    noise_cov = noise @ noise.T
    sched = ve_schedule(sigma_min, sigma_max, num_scales, speed_up, iterations=iterations, dtype=torch.float64)
    sigmas, _, g2s = sched.host()
    m, cov = np.zeros(dim), sched.sigma_max**2 * noise_cov
    steps, noise_sq = [], float(np.trace(noise_cov))
    for i in range(sched.n):
        prec = np.linalg.inv(target_cov + sigmas[i] ** 2 * np.eye(dim))
        dl = drift @ prec
        second = cov + np.outer(m - mu, m - mu)
        eps = 2.0 * snr**2 * noise_sq / float(np.trace(dl @ second @ dl.T))
        steps.append(eps)
        a = np.eye(dim) - eps * (drift + skew) @ prec
        m, cov = mu + a @ (m - mu), a @ cov @ a.T + 2.0 * eps * noise_cov
        a = np.eye(dim) - g2s[i] * (drift + skew) @ prec
        m, cov = mu + a @ (m - mu), a @ cov @ a.T
        if not (denoise and i == sched.n - 1):
            cov = cov + g2s[i] * noise_cov
    return DenseResult(m, 0.5 * (cov + cov.T), mu, target_cov, 2 * sched.n, steps)


def langevin_stationary_dense(target, step: float, *, preconditioner: Preconditioner | None = None,
                              solenoidal=None, omega: float = 0.0) -> dict:
    """The Langevin corrector at a fixed noise level as a stationary chain, exactly: x ← x + ε(P + ωS)∇log p(x) +
    √(2ε)·M⁻¹ξ for the Gaussian ``target`` (P = M⁻¹M⁻ᵀ). Returns the continuous-time relaxation rates of the
    drift −(P + ωS)Σ⁻¹ (slowest and fastest: Thm 1's SDE), the spectral radius of the one-step map (< 1: the
    discrete chain converges, its per-step contraction), and the W2 between the chain's stationary law and the
    target (the discretisation's bias; ``inf`` when it diverges)."""
    import scipy.linalg

    target_cov, drift, noise, skew = _dense_operators(target, preconditioner, solenoidal, omega)
    dim = len(target_cov)
    j = -(drift + skew) @ np.linalg.inv(target_cov)
    rates = -np.linalg.eigvals(j).real
    a = np.eye(dim) + step * j
    radius = float(np.max(np.abs(np.linalg.eigvals(a))))
    out = {"slowest_rate": float(rates.min()), "fastest_rate": float(rates.max()), "spectral_radius": radius,
           "w2": math.inf}
    if radius < 1:
        stationary = scipy.linalg.solve_discrete_lyapunov(a, 2.0 * step * noise @ noise.T)
        res = DenseResult(np.zeros(dim), 0.5 * (stationary + stationary.T), np.zeros(dim), target_cov, 0)
        out["w2"] = res.w2
        out["w2_relative"] = res.w2_relative
    return out


def best_step_contraction(target, *, preconditioner: Preconditioner | None = None, solenoidal=None,
                          omega: float = 0.0) -> dict:
    """The fastest the discrete Langevin corrector x ← x + ε(P + ωS)∇log p + √(2ε)·M⁻¹ξ can relax on a Gaussian
    target: the step ε* minimising the spectral radius ρ(I + εJ) of its one-step map (J = −(P + ωS)Σ⁻¹; ρ is
    convex in ε), that radius, the largest stable step, and the steps per e-fold of the slowest mode, −1/log ρ*."""
    from scipy.optimize import brentq, minimize_scalar

    target_cov, drift, _, skew = _dense_operators(target, preconditioner, solenoidal, omega)
    mu = np.linalg.eigvals(-(drift + skew) @ np.linalg.inv(target_cov))
    if np.max(mu.real) >= 0:
        raise ValueError("the drift is not stable: no step size converges")

    def radius(eps):
        return float(np.max(np.abs(1.0 + eps * mu)))

    top = 2.0 / float(np.max(-mu.real))  # beyond it the fastest real mode alone diverges
    best = minimize_scalar(radius, bounds=(0.0, top), method="bounded", options={"xatol": top * 1e-9})
    largest = brentq(lambda e: radius(e) - 1.0, best.x, top) if radius(top) > 1.0 else top
    rho = radius(best.x)
    return {"step": float(best.x), "radius": rho, "largest_stable_step": float(largest),
            "steps_per_efold": -1.0 / math.log(rho) if rho < 1 else math.inf}
