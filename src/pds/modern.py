"""Modern samplers on the same VE score models, through the denoiser view, and preconditioned variants.

A VE score model s(x, σ) ≈ ∇log p_σ(x) is a denoiser D(x, σ) = x + σ² s(x, σ) (Tweedie's formula), the view of
Karras et al. (2022, "EDM") and Lu et al. (2022, DPM-Solver++). On it, with EDM's noise levels

    σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,  i = 0 … N−1,  σ_N = 0,  ρ = 7,

* :func:`euler` — the probability-flow ODE dx/dσ = (x − D(x, σ))/σ by Euler steps (N evaluations);
* :func:`heun` — EDM's Algorithm 1, Heun's 2nd-order method, the last step Euler (2N − 1 evaluations);
* :func:`dpmpp_2m` — DPM-Solver++(2M), the multistep 2nd-order data-prediction solver (N evaluations);
* :func:`edm_churn` — EDM's Algorithm 2: "churn" noise raising σ_i to σ̂ = (1 + γ)σ_i, then a Heun step;
  with a preconditioner the churn noise is M⁻¹ξ and the drift's score goes through M⁻¹M⁻ᵀ (PDS applied to the
  Langevin-like part);
* :func:`pc_kept` — the released predictor-corrector sampler with PDS in a form that keeps the marginals p_σ of a
  Gaussian target: the vanilla prior N(0, σ_max²I), the preconditioned Langevin corrector (invariant by Thm 1), and
  a predictor whose noise is corrected. Per frequency with drift gain p (the symbol of M⁻¹M⁻ᵀ), the reverse
  diffusion's variance C obeys dC/dτ = −2p·g²·C/(s + σ²) + q·g² for noise gain q; C = s + σ² needs dC/dτ = −g²,
  i.e. q = 2p − 1 (the released code uses q = p, which keeps C only where p = 1). Needs p ≥ 1/2 — true for the
  released normalisation, whose gains are ≥ 1 — and a frequency filter only.

Why written here rather than taken from k-diffusion, and how they are checked: README.md (``pds.modern``). Each
sampler returns ``(samples, nfe)`` like :mod:`pds.samplers`; ``generator`` may be one generator or one per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pds.precondition import Preconditioner
from pds.samplers import (
    FiniteCheck,
    check_schedule,
    checked_score,
    initial_state,
    operators,
    pc_sampler,
    prior,
    randn,
    refuse_preconditioner,
    register,
)
from pds.schedules import VESchedule

__all__ = ["denoiser", "euler", "heun", "dpmpp_2m", "edm_churn", "pc_kept", "kept_noise_gain",
           "Churn", "EDM_CHURN"]


@dataclass(frozen=True)
class Churn:
    """The settings of EDM's stochastic sampler (Algorithm 2): S_churn, S_tmin, S_tmax, S_noise."""

    s_churn: float = 40.0
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.003

    def gamma(self, sigma: float, n: int) -> float:
        """γ_i = min(S_churn/N, √2 − 1) for σ_i ∈ [S_tmin, S_tmax], else 0 (N steps)."""
        return min(self.s_churn / n, math.sqrt(2) - 1) if self.s_tmin <= sigma <= self.s_tmax else 0.0


EDM_CHURN = Churn()  # the settings used throughout (S_churn 40, S_tmin 0.05, S_tmax 50, S_noise 1.003)


def denoiser(score: Callable) -> Callable:
    """D(x, σ) = x + σ² s(x, σ) (Tweedie) for a score model ``score(x, σ)``, σ a float."""
    score = checked_score(score)
    return lambda x, sigma: x + sigma**2 * score(x, sigma)


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """(x − D(x, σ))/σ = −σ s(x, σ): the probability-flow ODE's slope dx/dσ in the VE form (Karras et al. 2022, Eq. 3
    with s(t) = 1, σ(t) = t; k-diffusion's ``to_d``)."""
    return (x - denoised) / sigma


def _setup(score, shape, sigmas, generator, dtype, device, check_every, what):
    """What every sampler here starts with: the checked σ list, the denoiser, the prior draw, the NaN check."""
    sig = [float(v) for v in sigmas]
    if len(sig) < 2 or sig[-1] != 0.0 or any(a <= b for a, b in zip(sig[:-1], sig[1:], strict=False)) or sig[-2] <= 0:
        raise ValueError("sigmas must decrease strictly to a final 0 (use edm_sigmas)")
    shp, x = initial_state(shape, dtype, device)
    x = prior(shp, sig[0], generator, dtype, device) if x is None else x
    return sig, denoiser(score), x, FiniteCheck(check_every, x.device, what)


@register("euler", "ode", per_step=1, preconditioned=False)
@torch.no_grad()
def euler(score: Callable, shape, sigmas, *, preconditioner: None = None, generator=None, device=None,
          dtype=torch.float32, check_every: int | None = None):
    """Euler steps of the probability-flow ODE from σ_0 to 0 (the prior x ~ N(0, σ_0²I)); NFE = N."""
    refuse_preconditioner("euler", preconditioner)
    return _steps(*_setup(score, shape, sigmas, generator, dtype, device, check_every, "Euler's state"), False)


def _heun_step(den, x, sigma, sigma_next, drift=None, second_order=True):
    """One step of EDM's Algorithm 1 from σ to σ_next (Euler when σ_next = 0, or without ``second_order``). ``drift``
    maps the score part."""
    def slope(y, sig):
        v = to_d(y, sig, den(y, sig))
        return v if drift is None else drift(v)

    d = slope(x, sigma)
    x_next = x + (sigma_next - sigma) * d
    if sigma_next == 0 or not second_order:
        return x_next, 1
    d2 = slope(x_next, sigma_next)
    return x + (sigma_next - sigma) * 0.5 * (d + d2), 2


def _steps(sig, den, x, finite, second_order):
    """Heun's (or Euler's) steps down the σ list; returns (x, nfe)."""
    nfe = 0
    for i in range(len(sig) - 1):
        x, k = _heun_step(den, x, sig[i], sig[i + 1], second_order=second_order)
        nfe += k
        finite(x, i, sig[i], final=i == len(sig) - 2)
    return x, nfe


@register("heun", "ode", per_step=2, saved=1, preconditioned=False)
@torch.no_grad()
def heun(score: Callable, shape, sigmas, *, preconditioner: None = None, generator=None, device=None,
         dtype=torch.float32, check_every: int | None = None):
    """EDM's deterministic sampler (Algorithm 1); NFE = 2N − 1."""
    refuse_preconditioner("heun", preconditioner)
    return _steps(*_setup(score, shape, sigmas, generator, dtype, device, check_every, "Heun's state"), True)


@register("dpmpp_2m", "ode", per_step=1, preconditioned=False)
@torch.no_grad()
def dpmpp_2m(score: Callable, shape, sigmas, *, preconditioner: None = None, generator=None, device=None,
             dtype=torch.float32, check_every: int | None = None):
    """DPM-Solver++(2M) for the VE denoiser (λ = −log σ): x_{i+1} = (σ_{i+1}/σ_i)·x_i + (1 − σ_{i+1}/σ_i)·D̃_i with
    D̃_i = (1 + 1/(2r))·D_i − 1/(2r)·D_{i−1}, r = h_{i−1}/h_i (first order at the first and the last step); NFE = N."""
    refuse_preconditioner("dpmpp_2m", preconditioner)
    sig, den, x, finite = _setup(score, shape, sigmas, generator, dtype, device, check_every, "DPM-Solver++'s state")
    old = None
    for i in range(len(sig) - 1):
        d = den(x, sig[i])
        if old is None or sig[i + 1] == 0:
            target = d
        else:
            h = math.log(sig[i] / sig[i + 1])
            ratio = math.log(sig[i - 1] / sig[i]) / h
            target = (1 + 1 / (2 * ratio)) * d - (1 / (2 * ratio)) * old
        x = (sig[i + 1] / sig[i]) * x + (1 - sig[i + 1] / sig[i]) * target
        old = d
        finite(x, i, sig[i], final=i == len(sig) - 2)
    return x, len(sig) - 1


@register("edm_churn", "ode", per_step=2, saved=1)
@torch.no_grad()
def edm_churn(score: Callable, shape, sigmas, *, preconditioner: Preconditioner | None = None, generator=None,
              device=None, dtype=torch.float32, s_churn: float = EDM_CHURN.s_churn, s_tmin: float = EDM_CHURN.s_tmin,
              s_tmax: float = EDM_CHURN.s_tmax, s_noise: float = EDM_CHURN.s_noise, check_every: int | None = None):
    """EDM's stochastic sampler (Algorithm 2): γ_i = min(S_churn/N, √2 − 1) for σ_i ∈ [S_tmin, S_tmax], x̂ = x +
    √(σ̂² − σ_i²)·S_noise·ξ with σ̂ = (1 + γ_i)σ_i, then a Heun step from σ̂ to σ_{i+1}; NFE = 2N − 1. With a
    ``preconditioner`` ξ becomes M⁻¹ξ and the ODE's score part goes through M⁻¹M⁻ᵀ (the prior stays vanilla)."""
    for name, v in (("s_churn", s_churn), ("s_noise", s_noise)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    sig, den, x, finite = _setup(score, shape, sigmas, generator, dtype, device, check_every,
                               "the stochastic sampler's state")
    drift, noise = operators(preconditioner, tuple(x.shape))
    churn, n, nfe = Churn(s_churn, s_tmin, s_tmax, s_noise), len(sig) - 1, 0
    for i in range(n):
        gamma = churn.gamma(sig[i], n)
        sigma_hat = sig[i] * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sigma_hat**2 - sig[i] ** 2) * s_noise * noise(randn(tuple(x.shape), generator, dtype,
                                                                                 x.device))
        x, k = _heun_step(den, x, sigma_hat, sig[i + 1], None if preconditioner is None else drift)
        nfe += k
        finite(x, i, sig[i], final=i == n - 1)
    return x, nfe


def frequency_gain(preconditioner: Preconditioner | None, what: str) -> torch.Tensor | None:
    """The gain D_f of a preconditioner with a frequency filter only (None for none or the identity), for ``what``,
    which is derived per frequency: a space filter (it couples frequencies) or a non-Hermitian filter is refused."""
    if preconditioner is None:
        return None
    if preconditioner.space is not None:
        raise NotImplementedError(f"{what} is derived for frequency filters (a space filter couples frequencies)")
    if not preconditioner.hermitian:
        raise NotImplementedError(f"{what} needs a Hermitian-symmetric frequency filter")
    return preconditioner.freq_gain


def kept_noise_gain(preconditioner: Preconditioner) -> Preconditioner:
    """The noise transform of the p_σ-keeping predictor: gain √(2p − 1) per frequency (p = D_f², the drift gain)."""
    gain = frequency_gain(preconditioner, "the p_σ-keeping predictor")
    if gain is None:
        return preconditioner
    p = gain**2
    if (p < 0.5).any():
        raise ValueError(f"drift gains below 1/2 (min {float(p.min()):.3g}): 2p − 1 < 0, the predictor's noise cannot "
                         "be corrected; use a normalised filter (alpha > 1) or gains >= 1/sqrt(2)")
    return Preconditioner(freq=torch.sqrt(2 * p - 1).reciprocal(), alpha=None)


@register("pc_kept", "pc", per_step=2)
@torch.no_grad()
def pc_kept(score: Callable, shape, schedule: VESchedule, *, snr: float, preconditioner: Preconditioner | None = None,
            denoise: bool = True, corrector="batch", skew: Callable | None = None, generator=None, device=None,
            dtype=torch.float32):
    """The VE predictor-corrector sampler with PDS in the p_σ-keeping form (see the module docstring): vanilla prior,
    preconditioned corrector, predictor with drift gain p and noise gain √(2p − 1) (:func:`pds.samplers.pc_sampler`
    with ``predictor=kept_noise_gain(M)``); NFE = 2N."""
    kw = dict(denoise=denoise, corrector=corrector, skew=skew, generator=generator, device=device, dtype=dtype)
    schedule = check_schedule(schedule)
    if preconditioner is None:
        return pc_sampler(score, shape, schedule, snr=snr, **kw)
    shp, x = initial_state(shape, dtype, device)
    if x is None:
        x = prior(shp, schedule.sigma_max, generator, dtype, device)  # the vanilla prior: p_σmax ≈ N(0, σ_max²I)
    return pc_sampler(score, x, schedule, snr=snr, preconditioner=preconditioner,
                      predictor=kept_noise_gain(preconditioner), **kw)
