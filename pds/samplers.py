"""Samplers with and without PDS: the VE predictor-corrector sampler (NCSN++, as in the released PDS
code) and annealed Langevin dynamics (NCSN / NCSNv2), with the preconditioning of Eq. 11 / Alg. 1.

Every sampler is a plain function of (score model, shape or initial state, schedule, options) and
returns ``(samples, nfe)``, the number of score-network evaluations. Randomness comes only from the
``generator`` argument, drawn with ``torch.randn(shape, generator=..., dtype=..., device=...)`` in a
fixed order (documented per sampler), so the same seed gives identical samples, and a sampler
without a preconditioner (or with all-ones filters) is bit-for-bit the vanilla one.

The solenoidal term ω·S∇log p (Eq. 7, Sec. 5) shares the drift's step factor: the corrector adds
ε·ω·S[s] next to ε·M⁻¹M⁻ᵀs, the predictor adds ω·G²·S[s] next to M⁻¹M⁻ᵀ(G²s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from pds.precondition import Preconditioner

__all__ = [
    "VESchedule",
    "ve_schedule",
    "pc_sampler",
    "annealed_langevin",
    "ShortSchedule",
    "shorten_schedule",
    "geometric_sigmas",
]


# -- schedules ---------------------------------------------------------------------------------
@dataclass
class VESchedule:
    """The released PC sampler's grids (one entry per iteration i = 0 … N−1).

    ``t``: time linspace(1, eps, N); ``sigma``: the continuous σ(t) = σ_min(σ_max/σ_min)^t at
    which the score is evaluated; ``sigma_disc``/``sigma_prev``: the discrete levels σ_j and σ_{j−1}
    (0 for j = 0) of the reverse-diffusion predictor, with j = int(t·(N−1)) as score_sde computes it.
    """

    t: torch.Tensor
    sigma: torch.Tensor
    sigma_disc: torch.Tensor
    sigma_prev: torch.Tensor
    sigma_max: float
    eps: float

    @property
    def n(self) -> int:
        return int(self.t.numel())


def ve_schedule(sigma_min: float, sigma_max: float, num_scales: int, speed_up: float = 1.0,
                dtype=torch.float32, device=None) -> VESchedule:
    """Grids of the released sampler: N = int(num_scales / speed_up) iterations, eps = 1e-5·speed_up.

    Computed in ``dtype`` (float32 reproduces the released code's arithmetic, index truncation included).
    """
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if speed_up <= 0:
        raise ValueError(f"speed_up must be > 0, got {speed_up}")
    n = int(num_scales / speed_up)
    if n < 1:
        raise ValueError(f"int(num_scales / speed_up) = {n}: need at least one iteration")
    eps = 1e-5 * speed_up
    t = torch.linspace(1.0, eps, n, dtype=dtype, device=device)
    sigma = sigma_min * (sigma_max / sigma_min) ** t
    discrete = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n, dtype=dtype, device=device))
    idx = (t * (n - 1) / 1.0).long()
    prev = torch.where(idx == 0, torch.zeros_like(t), discrete[(idx - 1).clamp(min=0)])
    return VESchedule(t=t, sigma=sigma, sigma_disc=discrete[idx], sigma_prev=prev, sigma_max=float(sigma_max),
                      eps=eps)


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> np.ndarray:
    """NCSN / NCSNv2 levels: geometric from σ_1 = sigma_max down to σ_L = sigma_min."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), n))


@dataclass
class ShortSchedule:
    sigmas: np.ndarray
    n_steps: list[int]
    step_lr_scale: float

    @property
    def total_steps(self) -> int:
        return int(sum(self.n_steps))


def shorten_schedule(sigmas, n_steps_each: int, T: int) -> ShortSchedule:
    """Shorten an annealed-Langevin schedule (L levels × n_steps_each) to T steps in total.

    Rule: if T ≥ L, keep every level and give each ⌊T/L⌋ steps, the first T mod L levels (the
    largest σ) one more; if T < L, keep T levels evenly spaced in index (first and last included)
    with one step each. ``step_lr_scale`` is the factor that keeps the total update Σ_c n_c·α_c of
    the full schedule (α_c = step_lr·(σ_c/σ_L)²), the paper's "expand the step size proportionally";
    multiply ``step_lr`` by it or not, as the experiment requires.
    """
    sig = np.asarray(sigmas, dtype=np.float64)
    L = len(sig)
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if T >= L:
        base, extra = divmod(T, L)
        keep = np.arange(L)
        steps = [base + (1 if c < extra else 0) for c in range(L)]
    else:
        keep = np.unique(np.round(np.linspace(0, L - 1, T)).astype(int))
        steps = [1] * len(keep)
    kept = sig[keep]
    full = n_steps_each * np.sum((sig / sig[-1]) ** 2)
    short = np.sum(np.asarray(steps) * (kept / kept[-1]) ** 2)
    return ShortSchedule(sigmas=kept, n_steps=steps, step_lr_scale=float(full / short))


# -- helpers -----------------------------------------------------------------------------------
def _initial(shape, generator, dtype, device):
    if isinstance(shape, torch.Tensor):
        if shape.ndim != 4:
            raise ValueError(f"an initial state must have shape [N, C, H, W], got {tuple(shape.shape)}")
        return None, shape.to(dtype=dtype, device=device if device is not None else shape.device).clone()
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape must be [N, C, H, W] with positive sizes, got {shape}")
    return shape, None


def _randn(shape, generator, dtype, device):
    return torch.randn(shape, generator=generator, dtype=dtype, device=device)


def _check_finite(x: torch.Tensor, i: int, sigma: float, what: str) -> None:
    if not torch.isfinite(x).all():
        raise FloatingPointError(
            f"non-finite values in {what} at iteration {i} (sigma = {sigma:.6g}); the step sizes are "
            "probably too large for this schedule or the score model returned NaN/inf"
        )


def _ops(preconditioner: Preconditioner | None):
    if preconditioner is None:
        return (lambda v: v), (lambda v: v)
    return preconditioner.drift, preconditioner.noise


def _solenoidal(solenoidal, omega):
    if solenoidal is None or omega == 0:
        return None
    if not callable(solenoidal):
        raise TypeError("solenoidal must be a callable S(x) on [N, C, H, W] batches")
    return lambda v: omega * solenoidal(v)


def _batch_norm_mean(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=-1).mean()


# -- the VE predictor-corrector sampler -------------------------------------------------------
@torch.no_grad()
def pc_sampler(score: Callable, shape, sigma_min: float, sigma_max: float, num_scales: int, snr: float, *,
               speed_up: float = 1.0, preconditioner: Preconditioner | None = None, solenoidal=None,
               omega: float = 0.0, denoise: bool = True, generator: torch.Generator | None = None,
               device=None, dtype=torch.float32, progress: bool = False, callback: Callable | None = None,
               corrector_steps: Sequence[float] | None = None):
    """VE SDE predictor-corrector sampler as the released PDS code runs it (NCSN++, score_sde).

    Per iteration i (N = int(num_scales / speed_up) of them): one Langevin corrector step at σ(t_i),
    then one reverse-diffusion predictor step. With g = M⁻¹M⁻ᵀ s(x, σ) and n = M⁻¹ξ:

    * corrector: ε = 2·(snr·mean_b‖n‖ / mean_b‖g‖)²; x̄ = x + ε g; x = x̄ + √(2ε) n;
    * predictor: G² = σ_j² − σ_{j−1}²; x̄ = x + M⁻¹M⁻ᵀ(G² s(x, σ(t_i))); x = x̄ + G·M⁻¹ξ.

    The prior is x_T = σ_max·M⁻¹ξ (preconditioned too). Returns (x̄ of the last step if ``denoise``
    else x, nfe = 2N). Random draws, in order: the prior ξ, then per iteration the corrector ξ and
    the predictor ξ. ``shape`` may be an initial state x_T instead (then nothing is drawn for it).
    ``corrector_steps`` (N numbers) replaces the adaptive ε (used by :mod:`pds.exact` checks).
    ``callback(info)`` receives a dict with i, sigma, x, x_mean after each iteration.
    """
    sched = ve_schedule(sigma_min, sigma_max, num_scales, speed_up, dtype=dtype, device=device)
    if corrector_steps is not None and len(corrector_steps) != sched.n:
        raise ValueError(f"corrector_steps must have {sched.n} entries, got {len(corrector_steps)}")
    drift, noise = _ops(preconditioner)
    sol = _solenoidal(solenoidal, omega)
    shp, x = _initial(shape, generator, dtype, device)
    if x is None:
        x = noise(_randn(shp, generator, dtype, device)) * sched.sigma_max
    shp = tuple(x.shape)
    dev = x.device
    x_mean = x
    for i in tqdm(range(sched.n), disable=not progress, desc="PC sampler", leave=False):
        sig = sched.sigma[i]
        vec_sigma = torch.full((shp[0],), float(sig), dtype=dtype, device=dev)
        # corrector (Langevin)
        grad = score(x, vec_sigma)
        g = drift(grad)
        n = noise(_randn(shp, generator, dtype, dev))
        if corrector_steps is None:
            eps = 2.0 * (snr * _batch_norm_mean(n) / _batch_norm_mean(g)) ** 2
        else:
            eps = torch.as_tensor(float(corrector_steps[i]), dtype=dtype, device=dev)
        if sol is not None:
            g = g + sol(grad)
        x_mean = x + eps * g
        x = x_mean + torch.sqrt(eps * 2.0) * n
        _check_finite(x, i, float(sig), "the corrector step")
        # predictor (reverse diffusion)
        G = torch.sqrt(sched.sigma_disc[i] ** 2 - sched.sigma_prev[i] ** 2)
        G2 = G**2
        s = score(x, vec_sigma)
        step = drift(G2 * s)
        if sol is not None:
            step = step + G2 * sol(s)
        z = noise(_randn(shp, generator, dtype, dev))
        x_mean = x + step
        x = x_mean + G * z
        _check_finite(x, i, float(sig), "the predictor step")
        if callback is not None:
            callback({"i": i, "sigma": float(sig), "x": x, "x_mean": x_mean})
    return (x_mean if denoise else x), 2 * sched.n


# -- annealed Langevin dynamics (NCSN / NCSNv2) ------------------------------------------------
@torch.no_grad()
def annealed_langevin(score: Callable, shape, sigmas, n_steps_each, step_lr: float, *,
                      preconditioner: Preconditioner | None = None, solenoidal=None, omega: float = 0.0,
                      denoise: bool = False, init: str = "uniform", generator: torch.Generator | None = None,
                      device=None, dtype=torch.float32, progress: bool = False,
                      callback: Callable | None = None):
    """Annealed Langevin dynamics of NCSN (v1) and NCSNv2 with PDS (Alg. 1).

    For each level c (σ_1 > … > σ_L) and each of its steps: α_c = step_lr·(σ_c/σ_L)²,
    x ← x + α_c·M⁻¹M⁻ᵀ s(x, σ_c) + √(2α_c)·M⁻¹ξ. ``n_steps_each`` is an int or one int per level
    (see :func:`shorten_schedule`). ``denoise`` (NCSNv2) ends with x ← x + σ_L²·s(x, σ_L), not
    preconditioned (it is Tweedie's formula). ``init``: "uniform" (U[0, 1], NCSN/NCSNv2) or
    "gaussian" (σ_1·M⁻¹ξ); ``shape`` may be an initial state instead. Random draws, in order: the
    initial sample, then one ξ per step. Returns (x, nfe = total steps (+1 with ``denoise``)).
    """
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim != 1 or len(sig) == 0 or not np.all(np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError("sigmas must be a non-empty 1-D sequence of positive numbers")
    steps = [int(n_steps_each)] * len(sig) if np.isscalar(n_steps_each) else [int(n) for n in n_steps_each]
    if len(steps) != len(sig) or min(steps) < 0:
        raise ValueError(f"n_steps_each must be an int or {len(sig)} non-negative ints")
    if init not in ("uniform", "gaussian"):
        raise ValueError(f"init must be 'uniform' or 'gaussian', got {init!r}")
    drift, noise = _ops(preconditioner)
    sol = _solenoidal(solenoidal, omega)
    shp, x = _initial(shape, generator, dtype, device)
    if x is None:
        if init == "uniform":
            x = torch.rand(shp, generator=generator, dtype=dtype, device=device)
        else:
            x = noise(_randn(shp, generator, dtype, device)) * float(sig[0])
    shp, dev = tuple(x.shape), x.device
    nfe = 0
    total = sum(steps)
    bar = tqdm(total=total, disable=not progress, desc="annealed Langevin", leave=False)
    for c, (sigma, n_c) in enumerate(zip(sig, steps, strict=True)):
        alpha = step_lr * (sigma / sig[-1]) ** 2
        vec_sigma = torch.full((shp[0],), float(sigma), dtype=dtype, device=dev)
        for _ in range(n_c):
            z = noise(_randn(shp, generator, dtype, dev))
            grad = score(x, vec_sigma)
            step = drift(grad)
            if sol is not None:
                step = step + sol(grad)
            x = x + alpha * step + math.sqrt(2.0 * alpha) * z
            nfe += 1
            _check_finite(x, c, float(sigma), "a Langevin step")
            bar.update(1)
        if callback is not None:
            callback({"i": c, "sigma": float(sigma), "x": x})
    bar.close()
    if denoise:
        vec_sigma = torch.full((shp[0],), float(sig[-1]), dtype=dtype, device=dev)
        x = x + float(sig[-1]) ** 2 * score(x, vec_sigma)
        nfe += 1
        _check_finite(x, len(sig), float(sig[-1]), "the final denoising step")
    return x, nfe
