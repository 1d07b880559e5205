"""Why PDS works, per frequency: the PC sampler's exact recursion taken apart (beyond the paper; notebook 14).

For one Fourier coefficient of a Gaussian target with variance s, the marginal p_σ of the VE diffusion has variance
s + σ². Write u = v / (s + σ²) for the sampler's variance over the marginal's at the level it is at (u = 1: right).

**The predictor.** One reverse Euler–Maruyama step from σ to σ' < σ with drift gain p (the symbol of M⁻¹M⁻ᵀ; 1 for
vanilla) and G² = σ² − σ'² maps y ↦ (1 − p w) y + √(p) G ξ with w = G² / (s + σ²) ∈ (0, 1), so

    u' = [(1 − p w)² u + p w] / (1 − w),

while the exact reverse transition keeps u = 1 (its mean gain is 1 − w, its noise variance G²(1 − w), not G²).
With w held, u' = u has the fixed point (:func:`predictor_fixed_point`)

    u* = p / (2p − 1 − p² w),                                                       (∗)

1/(1 − w) for vanilla: at few steps the predictor injects too much noise. On a geometric σ ladder with ratio r per
step, a frequency with s ≪ σ² sees w = 1 − r² (vanilla's u* = 1/r², 1.41 at T = 50 for CIFAR-10's σ range), and
one with s ≫ σ² sees w ≈ 0 (u* → p / (2p − 1): 1 for vanilla, below 1 for p > 1). As σ falls through √s the
corrector and predictor can no longer move that frequency's variance (their rates ε/s and w vanish): it keeps the
ratio it had there. At σ² = s, w = (1 − r²)/2, and (∗) equals 1 for the gain (:func:`freezing_gain`)

    p* = (1 − √(2r² − 1)) / (1 − r²)     (real for r² ≥ 1/2),

the same at every frequency, since every frequency with σ_min² < s < σ_max² freezes at its own σ² = s with the same w.

**The corrector.** One Langevin step x ← x + ε p ∇log p_σ + √(2εp) ξ on the marginal (variance s + σ²) contracts the
variance's distance to its own stationary value by (1 − εp/(s + σ²))² and has the stationary variance
(s + σ²)/(1 − εp / (2(s + σ²))) (:func:`corrector_stationary_bias`: the finite-step bias). The released step rule
ε = 2 (snr ‖η‖/‖g‖)² with g = M⁻¹M⁻ᵀ∇log p and η = M⁻¹ξ makes ε depend on the filter: a scalar p cancels in εp, and
a filter's relative gains become absolute steps ε p_k (:func:`absolute_steps`).

:func:`band_trace` records all of this along the σ ladder, per band of |k|, from :func:`pds.exact.pc_exact`'s own
recursion; :func:`best_scalar` finds the single drift gain with the least exact W2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from pds.exact.recursions import _Setup, pc_exact
from pds.fourier import radius_squared
from pds.precondition import Preconditioner
from pds.schedules import ve_schedule
from pds.scores import StationaryGaussianScore

__all__ = ["predictor_fixed_point", "predictor_step", "freezing_gain", "step_ratio", "corrector_stationary_bias",
           "scalar_preconditioner", "band_trace", "absolute_steps", "best_scalar"]


def predictor_step(u, p, w):
    """u' = [(1 − p w)² u + p w] / (1 − w): the variance ratio after one reverse Euler–Maruyama step of drift gain p
    and relative step w = G²/(s + σ²) (the module docstring); the exact reverse transition keeps u = 1."""
    return ((1 - p * w) ** 2 * u + p * w) / (1 - w)


def predictor_fixed_point(p, w):
    """u* = p / (2p − 1 − p² w), the fixed point of :func:`predictor_step` (∗); inf where the step is unstable
    (2p − 1 − p² w ≤ 0)."""
    p, w = np.asarray(p, dtype=np.float64), np.asarray(w, dtype=np.float64)
    den = 2 * p - 1 - p * p * w
    out = np.where(den > 0, p / np.where(den > 0, den, 1.0), np.inf)
    return float(out) if out.ndim == 0 else out


def step_ratio(sigma_min: float, sigma_max: float, iterations: int) -> float:
    """r² = (σ_{i+1}/σ_i)² of the geometric ladder of ``iterations`` levels from σ_max to σ_min (the PC sampler's)."""
    if iterations < 2:
        raise ValueError(f"a ladder needs at least 2 levels, got {iterations}")
    return (sigma_min / sigma_max) ** (2.0 / (iterations - 1))


def freezing_gain(r2: float, closest: bool = False) -> float:
    """p* = (1 − √(2r² − 1)) / (1 − r²): the predictor's drift gain whose fixed point (∗) is exact (u* = 1) at the step
    where a frequency freezes (σ² = s, w = (1 − r²)/2). When 2r² < 1 no gain makes it exact (too few steps): NaN, or
    with ``closest`` the gain that brings (∗) closest to 1 there, √(2 / (1 − r²))."""
    if not 0 < r2 < 1:
        raise ValueError(f"r² must lie in (0, 1), got {r2}")
    if 2 * r2 < 1:
        return math.sqrt(2.0 / (1.0 - r2)) if closest else math.nan
    return (1 - math.sqrt(2 * r2 - 1)) / (1 - r2)


def corrector_stationary_bias(eps, p, v):
    """1 / (1 − ε p / (2 v)): the stationary variance of one Langevin step (drift gain p, step ε) on a Gaussian of
    variance v, over v (the finite-step bias; 1 as ε → 0)."""
    return 1.0 / (1.0 - eps * p / (2.0 * v))


def scalar_preconditioner(shape, p: float) -> Preconditioner:
    """The preconditioner with the drift gain ``p`` at every frequency (R ≡ p^(−1/2), no normalisation): the scalar
    control of a frequency filter."""
    if not (math.isfinite(p) and p > 0):
        raise ValueError(f"the drift gain must be a finite number > 0, got {p}")
    return Preconditioner(freq=torch.full(tuple(shape), p ** -0.5, dtype=torch.float64), alpha=None)


def absolute_steps(target: StationaryGaussianScore, settings, iterations: int, preconditioner: Preconditioner,
                   **options) -> tuple[np.ndarray, np.ndarray]:
    """(ε_i of the filter over vanilla's ε_i at the same iteration, per iteration; the filter's drift gain p_k per
    frequency group): the absolute corrector step at frequency k is ε_i p_k, vanilla's ε_i^van; a frequency gets a
    smaller absolute step than vanilla's where p_k · ratio_i < 1."""
    e = settings
    van = pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=iterations, **options)
    pds = pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=iterations,
                   preconditioner=preconditioner, **options)
    st = _Setup.cached(target, preconditioner, None, 0.0)
    return np.asarray(pds.corrector_steps) / np.asarray(van.corrector_steps), st.p.numpy()


def band_trace(target: StationaryGaussianScore, settings, iterations: int, preconditioner: Preconditioner | None,
               edges: Sequence[float], **options) -> dict:
    """Along the σ ladder of :func:`pds.exact.pc_exact` (``settings``: σ range, levels, snr; ``options``: its
    ablations), per band of |k| (``edges``: radii, increasing; band j holds edges[j] ≤ |k| < edges[j+1]): the mean over
    the band's frequencies of u after the corrector (v / (s + σ_i²)) and after the predictor (v / (s + σ_{i+1}²), σ_N
    = 0), the corrector's contraction |1 − ε p/(s + σ_i²)| and stationary bias, the absolute step ε p, and the
    predictor's w = G²/(s + σ_i²) and fixed point (∗) at that w. Returns arrays [iterations, bands] with ``sigma``
    [iterations] and ``eps`` [iterations], and the output's W2."""
    e, st = settings, _Setup.cached(target, preconditioner, None, 0.0)
    c, h, w = target.shape
    rad = radius_squared(h, w, half=True).sqrt().expand(c, h, w // 2 + 1).reshape(-1)
    group_rad = torch.zeros(len(st.s), dtype=torch.float64).scatter_reduce_(0, st.index, rad, "amax",
                                                                            include_self=False)
    band = np.digitize(group_rad.numpy(), np.asarray(edges, dtype=np.float64)) - 1
    nb = len(edges) - 1
    weights = st.weights.numpy()
    sched = ve_schedule(e.sigma_min, e.sigma_max, e.levels, iterations=iterations, dtype=torch.float64)
    sigmas = list(sched.host()[0]) + [0.0]
    s, p = st.s.numpy(), (st.p.numpy() if options.get("corrector", "released") == "released" else np.ones(len(st.s)))

    def mean(values):
        values = np.asarray(values, dtype=np.float64)
        return np.array([np.average(values[band == j], weights=weights[band == j]) if (band == j).any() else np.nan
                         for j in range(nb)])

    rows = {k: [] for k in ("u_corrected", "u_predicted", "contraction", "stationary_bias", "absolute_step", "w",
                            "fixed_point")}
    eps_all, g2s = [], sched.host()[2]
    p_pred = st.p.numpy() if options.get("predictor", "released") == "released" else np.ones(len(st.s))

    def on_step(i, eps, a_c, var_c, a_p, var_p):
        eps = float(eps)
        v_i, v_next = s + sigmas[i] ** 2, s + sigmas[i + 1] ** 2
        eps_all.append(eps)
        w = g2s[i] / v_i
        rows["w"].append(mean(w))
        rows["fixed_point"].append(mean(predictor_fixed_point(p_pred, w)))
        rows["u_corrected"].append(mean(var_c.numpy() / v_i))
        rows["u_predicted"].append(mean(var_p.numpy() / v_next))
        rows["contraction"].append(mean(np.abs(a_c.numpy())))
        rows["stationary_bias"].append(mean(corrector_stationary_bias(eps, p, v_i)))
        rows["absolute_step"].append(mean(eps * p))

    res = pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=iterations,
                   preconditioner=preconditioner, on_step=on_step, **options)
    return {"sigma": np.asarray(sigmas[:-1]), "eps": np.asarray(eps_all), "edges": np.asarray(edges, dtype=float),
            **{k: np.stack(v) for k, v in rows.items()}, "w2_relative": res.w2_relative}


def best_scalar(target: StationaryGaussianScore, settings, iterations: int, bounds=(0.5, 4.0), xatol: float = 1e-4,
                **options) -> tuple[float, float]:
    """(p, relative W2): the single drift gain at every frequency with the least exact W2 of the PC sampler in
    ``iterations`` iterations (bounded scalar search over log p within ``bounds``)."""
    e = settings

    def w2(log_p: float) -> float:
        pre = scalar_preconditioner(target.shape, math.exp(log_p))
        return pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=iterations, preconditioner=pre,
                        **options).w2_relative

    found = minimize_scalar(w2, bounds=tuple(math.log(b) for b in bounds), method="bounded",
                            options={"xatol": xatol})
    return math.exp(found.x), float(found.fun)
