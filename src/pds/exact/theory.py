"""Numerical checks of the PDS theory (Thm 1, Thm 2, Eq. 7, Eq. 11) on toy targets, in float64.

Linear-Gaussian case. For a target N(μ, Σ) the score is −Σ⁻¹(x − μ), so the preconditioned
Langevin SDE of Eq. 7,

    dx = (ε²/2)(MMᵀ + S)∇log p(x) dt + ε M dw,

is linear: d(x − μ) = J (x − μ) dt + ε M dw with J = −(ε²/2)(MMᵀ + S)Σ⁻¹. Its stationary covariance
P solves the Lyapunov equation J P + P Jᵀ + ε² MMᵀ = 0, and Thm 1 says P = Σ whenever M is
invertible and S skew-symmetric. The relaxation rates of the mean are −Re eig(J).

Non-Gaussian case. For a 2-D Gaussian mixture we evaluate the Fokker-Planck operator
L*p = −∇·(b p) + ½∇·∇·(D p) of a generator (drift b, constant diffusion D) on a grid by finite
differences and report how far p* is from stationary, and we simulate long Euler-Maruyama chains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from pds.precondition import operator_matrix

__all__ = [
    "random_spd",
    "random_invertible",
    "random_skew",
    "relative_error",
    "langevin_drift",
    "stationary_covariance",
    "time_dependent_residual",
    "covariance_flow",
    "variable_change_errors",
    "relaxation_rates",
    "rate_condition_number",
    "stationary_field_covariance",
    "GaussianMixture2D",
    "fokker_planck_residual",
    "simulate_langevin",
    "total_variation",
    "tv_noise_floor",
]


def random_spd(d: int, rng: np.random.Generator, cond: float = 10.0) -> np.ndarray:
    """A random symmetric positive-definite matrix with condition number ``cond``."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.geomspace(1.0, cond, d)
    rng.shuffle(eig)
    return (q * eig) @ q.T


def random_invertible(d: int, rng: np.random.Generator) -> np.ndarray:
    """A random, well-conditioned, invertible matrix (I + a scaled Gaussian matrix)."""
    return np.eye(d) + rng.standard_normal((d, d)) / (2.0 * np.sqrt(d))


def random_skew(d: int, rng: np.random.Generator) -> np.ndarray:
    b = rng.standard_normal((d, d))
    return b - b.T


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖_F / ‖b‖_F."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------------------------
# Thm 1: stationary covariance of the preconditioned linear SDE
def langevin_drift(sigma: np.ndarray, M: np.ndarray, S: np.ndarray | None = None, eps: float = 1.0,
                   drift_precond: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(J, Q) of dx = (ε²/2)(K + S)∇log N(μ, Σ) dt + ε M dw with K = MMᵀ (Eq. 7).

    ``drift_precond`` replaces K (for negative controls such as K = I with M ≠ I: the
    preconditioner applied to the noise only). Q = ε² MMᵀ is the diffusion matrix.
    """
    d = sigma.shape[0]
    K = M @ M.T if drift_precond is None else drift_precond
    S = np.zeros((d, d)) if S is None else S
    J = -(eps**2 / 2.0) * (K + S) @ np.linalg.inv(sigma)
    Q = eps**2 * (M @ M.T)
    return J, Q


def stationary_covariance(J: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Solve J P + P Jᵀ + Q = 0 (scipy's Lyapunov solver); refuses an unstable J."""
    if relaxation_rates(J)[0] <= 0:
        raise ValueError("the drift matrix is not stable (an eigenvalue has Re ≥ 0): no stationary law")
    return scipy.linalg.solve_continuous_lyapunov(J, -Q)


# --------------------------------------------------------------------------------------------
# Thm 2: time-dependent diffusion G(t)
def _thm2_matrices(sigma, M, S, G):
    sig_inv = np.linalg.inv(sigma)
    GG = G @ G.T
    # base process dx = (GGᵀ/2)∇log p dt + G dw has p = N(μ, Σ) stationary; Eq. 9 preconditions it
    J = -0.5 * M @ M.T @ GG @ sig_inv - S @ sig_inv
    Q = M @ GG @ M.T
    return J, Q


def time_dependent_residual(sigma, M, S, G_of_t: Callable[[float], np.ndarray], ts) -> np.ndarray:
    """‖J(t)Σ + ΣJ(t)ᵀ + Q(t)‖ / ‖Q(t)‖ for Eq. 9 at each t: zero iff N(μ, Σ) is stationary at t."""
    out = []
    for t in ts:
        J, Q = _thm2_matrices(sigma, M, S, G_of_t(t))
        out.append(np.linalg.norm(J @ sigma + sigma @ J.T + Q) / np.linalg.norm(Q))
    return np.asarray(out)


def covariance_flow(sigma, M, S, G_of_t, t_span, rtol=1e-10, atol=1e-12) -> np.ndarray:
    """Integrate dP/dt = J(t)P + PJ(t)ᵀ + Q(t) (covariance of Eq. 9) from P = Σ.

    Returns P at the end of ``t_span``.
    """
    from scipy.integrate import solve_ivp

    d = sigma.shape[0]

    def rhs(t, p):
        J, Q = _thm2_matrices(sigma, M, S, G_of_t(t))
        P = p.reshape(d, d)
        return (J @ P + P @ J.T + Q).ravel()

    sol = solve_ivp(rhs, t_span, sigma.ravel(), rtol=rtol, atol=atol, method="DOP853")
    if not sol.success:
        raise RuntimeError(f"covariance ODE failed: {sol.message}")
    return sol.y[:, -1].reshape(d, d)


# --------------------------------------------------------------------------------------------
# Eq. 11: the variable change
def variable_change_errors(sigma: np.ndarray, M: np.ndarray, eps: float = 1.0) -> dict:
    """Check the variable changes behind Eq. 7 → Eq. 11 for a Gaussian target N(0, Σ).

    * Eq. 7 (noise εM dw, drift (ε²/2)MMᵀ∇log p): y = M⁻¹x obeys plain Langevin for the law of y,
      N(0, M⁻¹ΣM⁻ᵀ).
    * Eq. 11 (noise εM⁻¹ dw, drift (ε²/2)M⁻¹M⁻ᵀ∇log p): y = Mx obeys plain Langevin for
      N(0, MΣMᵀ).

    Returns the relative errors of the transformed drift and diffusion matrices against those of
    vanilla Langevin for the transformed target (all ~1e-15 when the algebra holds).
    """
    M_inv = np.linalg.inv(M)
    d = sigma.shape[0]
    out = {}
    for name, A, T in (("eq7", M, M_inv), ("eq11", M_inv, M)):
        # x-process: dx = J x dt + ε A dw; y = T x → dy = T J T⁻¹ y dt + ε T A dw
        J, Q = langevin_drift(sigma, A, eps=eps)
        T_inv = np.linalg.inv(T)
        Jy, Qy = T @ J @ T_inv, T @ Q @ T.T
        sigma_y = T @ sigma @ T.T
        Jy_vanilla, Qy_vanilla = langevin_drift(sigma_y, np.eye(d), eps=eps)
        out[f"{name}_drift"] = relative_error(Jy, Jy_vanilla)
        out[f"{name}_diffusion"] = relative_error(Qy, Qy_vanilla)
        out[f"{name}_cov_y_condition"] = float(np.linalg.cond(sigma_y))
    return out


# --------------------------------------------------------------------------------------------
# convergence speed
def relaxation_rates(J: np.ndarray) -> np.ndarray:
    """−Re eig(J), sorted ascending (the mean relaxes as exp(−rate·t) along each eigenvector)."""
    return np.sort(-np.linalg.eigvals(J).real)


def rate_condition_number(J: np.ndarray) -> float:
    """Fastest / slowest relaxation rate.

    An Euler discretisation is stable only for steps h < 2/fastest, so it needs about this many
    steps per relaxation time of the slowest mode: the number that preconditioning should shrink.
    """
    r = relaxation_rates(J)
    return float(r[-1] / r[0])


def stationary_field_covariance(spectrum: np.ndarray) -> np.ndarray:
    """Covariance matrix of a stationary (circulant) Gaussian field on one H×W channel.

    ``spectrum`` [H, W] (corner origin, even: s[k] = s[−k]) holds the eigenvalues: Σ = F⁻¹ diag(s) F,
    built as a dense matrix through ``torch.fft`` (row-major flattening).
    """
    s = torch.as_tensor(spectrum, dtype=torch.float64)
    h, w = s.shape

    def op(x):
        return torch.fft.ifft2(torch.fft.fft2(x) * s).real

    return operator_matrix(op, (1, h, w))


# --------------------------------------------------------------------------------------------
# 2-D Gaussian mixture
@dataclass
class GaussianMixture2D:
    """p(x) = Σ_k w_k N(x; μ_k, C_k) in 2-D, with exact density, score, Hessian and sampling."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self):
        self.weights = np.asarray(self.weights, float)
        self.means = np.asarray(self.means, float)
        self.covs = np.asarray(self.covs, float)
        if not np.isclose(self.weights.sum(), 1.0):
            raise ValueError("mixture weights must sum to 1")
        self.precs = np.linalg.inv(self.covs)
        self.norms = 1.0 / (2 * np.pi * np.sqrt(np.linalg.det(self.covs)))

    def _components(self, x):
        diff = x[..., None, :] - self.means  # [..., K, 2]
        d0, d1, P = diff[..., 0], diff[..., 1], self.precs  # pd = diff · C⁻¹ written out: 3× faster than einsum
        pd = np.stack([d0 * P[:, 0, 0] + d1 * P[:, 1, 0], d0 * P[:, 0, 1] + d1 * P[:, 1, 1]], -1)
        quad = np.einsum("...ki,...ki->...k", pd, diff)
        dens = self.weights * self.norms * np.exp(-0.5 * quad)  # [..., K]
        return diff, pd, dens

    def pdf(self, x):
        return self._components(np.asarray(x, float))[2].sum(-1)

    def score(self, x):
        _, pd, dens = self._components(np.asarray(x, float))
        tot = dens.sum(-1, keepdims=True)
        return -np.einsum("...k,...kj->...j", dens, pd) / tot

    def grad_pdf(self, x):
        _, pd, dens = self._components(np.asarray(x, float))
        return -(dens[..., None] * pd).sum(-2)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        comp = rng.choice(len(self.weights), size=n, p=self.weights)
        chol = np.linalg.cholesky(self.covs)
        z = rng.standard_normal((n, 2))
        return self.means[comp] + np.einsum("nij,nj->ni", chol[comp], z)

    def bin_probabilities(self, edges_x, edges_y, sub: int = 8) -> np.ndarray:
        """Probability of each rectangular bin, by midpoint quadrature on ``sub``×``sub`` cells."""
        probs = np.zeros((len(edges_x) - 1, len(edges_y) - 1))
        u = (np.arange(sub) + 0.5) / sub
        for i in range(len(edges_x) - 1):
            xs = edges_x[i] + (edges_x[i + 1] - edges_x[i]) * u
            for j in range(len(edges_y) - 1):
                ys = edges_y[j] + (edges_y[j + 1] - edges_y[j]) * u
                X, Y = np.meshgrid(xs, ys, indexing="ij")
                area = (edges_x[i + 1] - edges_x[i]) * (edges_y[j + 1] - edges_y[j])
                probs[i, j] = self.pdf(np.stack([X, Y], -1)).mean() * area
        return probs


def fokker_planck_residual(mix: GaussianMixture2D, K: np.ndarray, S: np.ndarray, M: np.ndarray,
                           eps: float = 1.0, half_width: float = 6.0, n: int = 201) -> dict:
    """Stationarity residual of p* for dx = (ε²/2)(K + S)∇log p* dt + ε M dw on an n×n grid.

    L*p = −Σ_i ∂_i(b_i p) + ½ Σ_ij ∂_i∂_j(D_ij p) with b = (ε²/2)(K + S)∇log p*, D = ε² MMᵀ,
    computed from exact values of b·p and D·p by second-order central differences
    (``numpy.gradient``), so nothing relies on the cancellation the theorem predicts.
    Returns the max |L*p| relative to max |∇·(b p)| (the size of the terms that should cancel),
    over the interior of the grid, and the grid spacing.
    """
    xs = np.linspace(-half_width, half_width, n)
    h = xs[1] - xs[0]
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    pts = np.stack([X, Y], -1)
    p = mix.pdf(pts)
    bp = (eps**2 / 2.0) * np.einsum("ij,...j->...i", K + S, mix.grad_pdf(pts))  # b·p
    D = eps**2 * (M @ M.T)
    div_bp = np.gradient(bp[..., 0], h, axis=0) + np.gradient(bp[..., 1], h, axis=1)
    second = 0.0
    for i in range(2):
        for j in range(2):
            second = second + 0.5 * D[i, j] * np.gradient(np.gradient(p, h, axis=i), h, axis=j)
    resid = -div_bp + second
    inner = (slice(2, -2), slice(2, -2))
    return {
        "relative_residual": float(np.abs(resid[inner]).max() / np.abs(div_bp[inner]).max()),
        "h": float(h),
    }


def simulate_langevin(score: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, K: np.ndarray,
                      M: np.ndarray, n_steps: int, dt: float, rng: np.random.Generator,
                      S: np.ndarray | None = None, eps: float = 1.0) -> np.ndarray:
    """Euler-Maruyama for dx = (ε²/2)(K + S)∇log p dt + ε M dw on a batch of chains x0 [n, d]."""
    x = np.array(x0, float)
    A = (eps**2 / 2.0) * (K if S is None else K + S)
    B = eps * np.sqrt(dt) * M
    for _ in range(n_steps):
        x = x + dt * score(x) @ A.T + rng.standard_normal(x.shape) @ B.T
    return x


def total_variation(samples: np.ndarray, probs: np.ndarray, edges_x, edges_y) -> float:
    """½ Σ |empirical − exact| over the bins (mass outside the bins counted once each side)."""
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=[edges_x, edges_y])
    emp = counts / len(samples)
    outside_emp = 1.0 - emp.sum()
    outside_true = 1.0 - probs.sum()
    return float(0.5 * (np.abs(emp - probs).sum() + abs(outside_emp - outside_true)))


def tv_noise_floor(probs: np.ndarray, n: int) -> float:
    """Expected TV of an n-sample histogram from the truth: ½ Σ √(2 p(1 − p) / (π n)) (normal approx.)."""
    p = probs.ravel()
    return float(0.5 * np.sum(np.sqrt(2.0 * p * (1.0 - p) / (np.pi * n))))
