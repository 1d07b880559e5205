"""Noise schedules: the one place where σ ladders and iteration grids are built (NCSN's geometric ladder, the VE
SDE's σ(t) and the released PC grids, annealed Langevin's :class:`LangevinLadder`, EDM's levels, NCSNv2's techniques
2 and 4). Nothing here depends on the rest of the package, so the networks can use it for their σ buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["edm_sigmas", "geometric_sigmas", "sigma_per_sample", "ve_sigma", "VESchedule", "ve_schedule",
           "LangevinLadder", "check_positive_int", "check_sigma_range", "ncsnv2_ratio", "ncsnv2_ladder",
           "langevin_variance_ratio", "ncsnv2_step_lr"]


def check_positive_int(value, name: str) -> None:
    """Refuse a ``value`` that is not a positive integer (an int or an integral float), naming it ``name``."""
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def check_sigma_range(sigma_min: float, sigma_max: float) -> None:
    """Refuse a noise range that is not 0 < sigma_min < sigma_max < ∞ (naming both values)."""
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def sigma_per_sample(x: torch.Tensor, sigma, dtype=None) -> torch.Tensor:
    """σ as a tensor [N] on ``x``'s device, in ``dtype`` (default ``x``'s), for a model that takes one level per sample:
    a Python number (one level for the batch, from the host: no device round trip), a scalar tensor or N of them."""
    dtype = x.dtype if dtype is None else dtype
    if isinstance(sigma, int | float):
        return torch.full((x.shape[0],), float(sigma), dtype=dtype, device=x.device)
    s = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1)
    return s.expand(x.shape[0]) if s.numel() == 1 and x.shape[0] > 1 else s


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> np.ndarray:
    """The geometric ladder exp(linspace(log σ_max, log σ_min, n)), largest first, a float64 array."""
    check_positive_int(n, "the number of levels n")
    check_sigma_range(sigma_min, sigma_max)
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(n)))


def ve_sigma(t, sigma_min: float, sigma_max: float):
    """σ(t) = σ_min (σ_max/σ_min)^t of the VE SDE (score_sde's VESDE), for a number or a tensor t."""
    return sigma_min * (sigma_max / sigma_min) ** t


@dataclass
class VESchedule:
    """The released PC sampler's grids (one entry per iteration i = 0 … N−1), on the CPU.

    ``t``: time linspace(1, eps, N); ``sigma``: the continuous σ(t_i) at which the score is evaluated;
    ``sigma_disc``/``sigma_prev``: the discrete levels σ_j and σ_{j−1} (0 for j = 0) of the reverse-diffusion
    predictor, with j = int(t·(N−1)) as score_sde computes it. :meth:`host` gives the per-iteration numbers
    as Python floats, so a sampler on a GPU never reads them back from the device.
    """

    t: torch.Tensor
    sigma: torch.Tensor
    sigma_disc: torch.Tensor
    sigma_prev: torch.Tensor
    sigma_max: float
    eps: float
    sigma_min: float | None = None  # with num_scales, speed_up and iterations: ve_schedule's arguments (rebuilt)
    num_scales: int | None = None
    speed_up: float | None = None
    iterations: int | None = None

    @property
    def n(self) -> int:
        return int(self.t.numel())

    def rebuilt(self, dtype) -> VESchedule:
        """The same schedule computed in ``dtype`` (e.g. float64 for :mod:`pds.exact`), from ve_schedule's arguments."""
        if self.num_scales is None:
            raise ValueError("this schedule was not made by ve_schedule: its arguments are unknown")
        return ve_schedule(self.sigma_min, self.sigma_max, self.num_scales, self.speed_up, iterations=self.iterations,
                           dtype=dtype)

    def host(self) -> tuple[list[float], list[float], list[float]]:
        """(σ(t_i), G_i, G_i²) as Python floats, with G_i = √(σ_j² − σ_{j−1}²) computed in the schedule's dtype."""
        g = torch.sqrt(self.sigma_disc**2 - self.sigma_prev**2)
        return self.sigma.tolist(), g.tolist(), (g**2).tolist()


def ve_schedule(sigma_min: float, sigma_max: float, num_scales: int, speed_up: float | None = None, *,
                iterations: int | None = None, dtype=torch.float32) -> VESchedule:
    """Grids of the released sampler.

    Released path: N = int(num_scales / speed_up) iterations and eps = 1e-5·speed_up. With ``iterations=T``
    given instead, N = T exactly and speed_up = num_scales / T (the released float division can give T − 1,
    e.g. int(1000 / (1000 / 58)) = 57). Computed on the CPU in ``dtype`` (float32 reproduces the released
    arithmetic, index truncation included).
    """
    check_sigma_range(sigma_min, sigma_max)
    check_positive_int(num_scales, "num_scales")
    args = dict(sigma_min=float(sigma_min), num_scales=int(num_scales), speed_up=speed_up,
                iterations=None if iterations is None else int(iterations))
    if iterations is not None:
        if speed_up not in (None, 1.0):
            raise ValueError("give either speed_up (the released rule) or iterations, not both")
        check_positive_int(iterations, "iterations")
        n = int(iterations)
        speed_up = num_scales / n
    else:
        speed_up = 1.0 if speed_up is None else float(speed_up)
        if not (math.isfinite(speed_up) and speed_up > 0):
            raise ValueError(f"speed_up must be a finite number > 0, got {speed_up}")
        n = int(num_scales / speed_up)
        if n < 1:
            raise ValueError(f"int(num_scales / speed_up) = {n}: need at least one iteration")
    eps = 1e-5 * speed_up
    t = torch.linspace(1.0, eps, n, dtype=dtype)
    sigma = ve_sigma(t, sigma_min, sigma_max)
    discrete = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n, dtype=dtype))  # as score_sde
    idx = (t * (n - 1) / 1.0).long()
    prev = torch.where(idx == 0, torch.zeros_like(t), discrete[(idx - 1).clamp(min=0)])
    return VESchedule(t=t, sigma=sigma, sigma_disc=discrete[idx], sigma_prev=prev, sigma_max=float(sigma_max),
                      eps=eps, **args)


@dataclass(frozen=True, init=False, eq=False)
class LangevinLadder:
    """Annealed Langevin's schedule (NCSN / NCSNv2): levels σ_1 > … > σ_L, ``n_steps`` per level and the base step
    ``step_lr`` ε, so that level c steps with α_c = ε·(σ_c/σ_L)² (Song & Ermon 2019, Alg. 1). ``n_steps_each``: an
    int for every level or one int per level (some may be 0, not all). Validated on construction."""

    sigmas: np.ndarray
    n_steps: tuple
    step_lr: float

    def __init__(self, sigmas, n_steps_each, step_lr: float):
        sig = np.asarray(sigmas, dtype=np.float64)
        if sig.ndim != 1 or len(sig) == 0 or not np.all(np.isfinite(sig)) or np.any(sig <= 0):
            raise ValueError("sigmas must be a non-empty 1-D sequence of finite positive numbers")
        if len(sig) > 1 and not np.all(np.diff(sig) < 0):
            raise ValueError(f"sigmas must decrease strictly (largest first, as NCSN anneals), got {sig[:4].tolist()}…")
        steps = [n_steps_each] * len(sig) if np.isscalar(n_steps_each) else list(n_steps_each)
        if len(steps) != len(sig) or any(int(n) != n or n < 0 for n in steps):
            raise ValueError(f"n_steps_each must be a non-negative int or {len(sig)} of them, got {n_steps_each!r}")
        if sum(steps) == 0:
            raise ValueError("n_steps_each is zero at every level: the sampler would take no step")
        if not (math.isfinite(step_lr) and step_lr > 0):
            raise ValueError(f"step_lr must be a finite number > 0, got {step_lr}")
        object.__setattr__(self, "sigmas", sig)
        object.__setattr__(self, "n_steps", tuple(int(n) for n in steps))
        object.__setattr__(self, "step_lr", float(step_lr))

    @property
    def total_steps(self) -> int:
        return sum(self.n_steps)

    def step_sizes(self) -> list[float]:
        """α_c = ε·(σ_c/σ_L)² per level."""
        return [self.step_lr * (s / self.sigmas[-1]) ** 2 for s in self.sigmas.tolist()]

    def shorten(self, T: int, expand: bool = True) -> LangevinLadder:
        """This ladder (one step count for every level) cut to T steps in total; the ladder itself when T is its length.

        Rule: if T ≥ L, keep every level and give each ⌊T/L⌋ steps, the first T mod L levels (the largest σ) one more;
        if T < L, keep T levels evenly spaced in index (first and last included) with one step each. With ``expand``
        ``step_lr`` is multiplied by the factor that keeps the total update Σ_c n_c·α_c of the full ladder, the paper's
        "expand the step size proportionally"."""
        if T == self.total_steps:
            return self
        if len(set(self.n_steps)) != 1:
            raise ValueError("only a ladder with the same number of steps at every level can be shortened")
        check_positive_int(T, "T")
        sig, L = self.sigmas, len(self.sigmas)
        if T >= L:
            keep = np.arange(L)
            steps = [int(T) // L + (1 if c < int(T) % L else 0) for c in range(L)]
        else:
            keep = np.unique(np.round(np.linspace(0, L - 1, int(T))).astype(int))
            steps = [1] * len(keep)
        kept = sig[keep]
        full = self.n_steps[0] * np.sum((sig / sig[-1]) ** 2)
        scale = float(full / np.sum(np.asarray(steps) * (kept / kept[-1]) ** 2)) if expand else 1.0
        return LangevinLadder(kept, steps, self.step_lr * scale)


def edm_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> list[float]:
    """EDM's N noise levels from sigma_max to sigma_min (ρ-spaced), then 0: a list of N + 1 floats."""
    check_positive_int(n, "the number of steps")
    check_sigma_range(sigma_min, sigma_max)
    if n == 1:
        return [float(sigma_max), 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [float((a + i / (n - 1) * (b - a)) ** rho) for i in range(n)] + [0.0]


# -- NCSNv2's techniques (Song & Ermon 2020) for choosing a ladder and a step size ------------------
def ncsnv2_ratio(dim: int) -> float:
    """Technique 2: the common ratio γ = σ_{i−1}/σ_i > 1 of the geometric ladder for data of dimension ``dim``,
    the root of Φ(√(2D)(γ − 1) + 3γ) − Φ(√(2D)(γ − 1) − 3γ) = 1/2 (consecutive noise shells overlap)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    check_positive_int(dim, "dim")
    root = math.sqrt(2.0 * dim)

    def overlap(g):
        return norm.cdf(root * (g - 1) + 3 * g) - norm.cdf(root * (g - 1) - 3 * g) - 0.5

    return float(brentq(overlap, 1.0 + 1e-12, 10.0))


def ncsnv2_ladder(sigma_max: float, sigma_min: float, dim: int) -> np.ndarray:
    """Technique 2's ladder: geometric from ``sigma_max`` (technique 1: about the largest distance between
    training images) to ``sigma_min`` with ratio :func:`ncsnv2_ratio`; L = 1 + ⌈log(σ_max/σ_min)/log γ⌉ levels."""
    check_sigma_range(sigma_min, sigma_max)
    gamma = ncsnv2_ratio(dim)
    levels = 1 + math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma))
    return geometric_sigmas(sigma_max, sigma_min, levels)


def langevin_variance_ratio(step_lr: float, gamma: float, sigma_min: float, steps: int) -> float:
    """Technique 4's criterion: for data at a single point, the variance of annealed Langevin's sample after
    ``steps`` steps at level σ_i (step α = step_lr·σ_i²/σ_L², started at variance σ_{i−1}² = γ²σ_i²) over σ_i²:
    c^{2T}(γ² − s) + s with c = 1 − step_lr/σ_L² and s = 2·step_lr / (σ_L²(1 − c²)). The same at every level."""
    q = step_lr / sigma_min**2
    if not 0 < q < 1:
        raise ValueError(f"need 0 < step_lr < sigma_min² = {sigma_min ** 2:g}, got {step_lr}")
    c2 = (1.0 - q) ** 2
    s = 2.0 * q / (1.0 - c2)
    return c2**steps * (gamma**2 - s) + s


def ncsnv2_step_lr(gamma: float, sigma_min: float, steps: int) -> float:
    """Technique 4: the step_lr that brings :func:`langevin_variance_ratio` closest to 1 for ``steps`` steps per
    level (the ratio exceeds 1 for every step size when γ > 1, so this is its minimum)."""
    from scipy.optimize import minimize_scalar

    check_positive_int(steps, "steps")
    best = minimize_scalar(lambda q: abs(langevin_variance_ratio(q * sigma_min**2, gamma, sigma_min, steps) - 1),
                           bounds=(1e-9, 1 - 1e-9), method="bounded", options={"xatol": 1e-12})
    return float(best.x * sigma_min**2)
