"""The preconditioner the exact analysis asks for (beyond the paper): the frequency filter, and per-iteration gains,
that minimise the exact W2 of a sampler's output at a fixed budget of network evaluations.

The paper picks R by a heuristic (Eq. 14, normalised by α; or the two parameters r, λ). For a stationary Gaussian
target every sampler here is linear per frequency (:mod:`pds.exact`), so the output's per-frequency mean and
variance — and W2² = Σ_k |δ_k|² + (√v_k − √s_k)² — are smooth functions of the filter. Those
recursions are written once, in :mod:`pds.exact` (:func:`~pds.exact.pc_recursion`, :func:`~pds.exact.ode_recursion`),
without in-place updates, so that torch's autograd differentiates them (float64); this module minimises W2 over a
**radial filter**:

    p(|k|) = floor + exp(θ(u)),   u = log(1 + |k|),

θ piecewise linear between ``n_knots`` knots: one at DC, the others equally spaced in u from |k| = 1 to the largest
|k| of the grid (a continuous family with a few dozen parameters; p is the drift gain of the preconditioner, D² =
1/R̃² in Alg. 1's notation, so the paper's R̃ = p^(-1/2)). ``floor`` is 0, or 1/2 for ``pc_kept``, whose
predictor's noise gain 2p − 1 must be ≥ 0.

The filter is :class:`RadialFilter`, the W2 :func:`sampler_w2` (on :class:`Frequencies`, by :func:`pc_moments` and
:func:`churn_moments`), the search :func:`optimise`.

Everything is checked against :mod:`pds.exact` to 1e-10 and by finite differences in ``tests/test_optimal.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from pds.configs import experiment
from pds.exact import ode_exact, ode_recursion, pc_exact, pc_recursion
from pds.fingerprint import Approx, Fingerprint, fingerprint
from pds.fourier import merge_frequencies, radius_squared
from pds.modern import EDM_CHURN, Churn
from pds.precondition import Preconditioner
from pds.samplers import steps_within
from pds.schedules import edm_sigmas, ve_schedule
from pds.scores import StationaryGaussianScore

__all__ = ["RadialFilter", "Frequencies", "pc_moments", "churn_moments", "optimise", "Optimum", "OPTIMISED",
           "finite_difference", "agreement_with_exact", "gradient_agreement",
           "sampler_w2", "behaviour_fingerprint", "target_fingerprint"]

OPTIMISED = ("pc", "pc_kept", "edm_churn")  # the registered samplers (pds.samplers.SAMPLERS) whose filter is optimised
OVERFLOW_LOSS = 50.0  # log W2 returned to L-BFGS for a trial filter whose recursion overflows (W2 = e^50)


class RadialFilter:
    """p(|k|) = floor + exp(θ(log(1 + |k|))), θ piecewise linear on ``n_knots`` knots (see the module docstring)."""

    def __init__(self, theta, k_max: float, floor: float = 0.0):
        self.theta = torch.as_tensor(theta, dtype=torch.float64)
        if self.theta.ndim != 1 or len(self.theta) < 2:
            raise ValueError(f"theta must be 1-D with at least 2 knot values, got shape {tuple(self.theta.shape)}")
        if not bool(torch.isfinite(self.theta).all()):
            raise ValueError("theta has non-finite entries")
        if not k_max > 0:
            raise ValueError(f"k_max must be > 0, got {k_max}")
        if floor not in (0.0, 0.5):
            raise ValueError(f"floor must be 0 (released predictor, churn) or 0.5 (pc_kept), got {floor}")
        self.k_max, self.floor = float(k_max), float(floor)

    @property
    def knots(self) -> torch.Tensor:
        """The knots in u = log(1 + |k|): 0 (DC), then ``n_knots`` − 1 equally spaced from log 2 (|k| = 1, the lowest
        non-zero frequency) to log(1 + k_max), so that every knot but DC's neighbourhood has frequencies about it."""
        lo, hi = math.log(2.0), math.log1p(self.k_max)
        return torch.cat([torch.zeros(1, dtype=torch.float64),
                          torch.linspace(lo, max(hi, lo), len(self.theta) - 1, dtype=torch.float64)])

    def _weights(self, radius: torch.Tensor, n: int):
        """(i, frac): the knot interval of each radius and the position in it (θ(u) = (1 − frac)θ_i + frac·θ_{i+1})."""
        u = torch.log1p(torch.as_tensor(radius, dtype=torch.float64)).clamp(0.0, math.log1p(self.k_max))
        lo, hi = math.log(2.0), math.log1p(self.k_max)
        if n == 2 or hi <= lo:
            return torch.zeros_like(u, dtype=torch.long), (u / max(hi, lo)).clamp(0, 1)
        du = (hi - lo) / (n - 2)
        pos = torch.where(u < lo, u / lo, 1.0 + (u - lo) / du)
        i = pos.floor().long().clamp(0, n - 2)
        return i, pos - i

    def p(self, radius: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The drift gain at the radii ``radius`` (|k|, any shape); ``theta`` replaces the stored knots (autograd)."""
        th = self.theta if theta is None else theta
        i, frac = self._weights(radius, len(th))
        return self.floor + torch.exp(th[i] * (1 - frac) + th[i + 1] * frac)

    @classmethod
    def fit(cls, p_grid: torch.Tensor, n_knots: int = 24, floor: float = 0.0) -> RadialFilter:
        """The radial filter closest (least squares in log(p − floor), channels pooled) to a drift gain given on the
        full [C, H, W] or [H, W] frequency grid (corner origin), e.g. the square of the paper's R̃⁻¹."""
        p_grid = torch.as_tensor(p_grid, dtype=torch.float64)
        h, w = p_grid.shape[-2:]
        radius = radius_squared(h, w).sqrt().expand(p_grid.shape).reshape(-1)
        target = torch.log((p_grid.reshape(-1) - floor).clamp_min(1e-12))
        k_max = float(radius.max())
        f = cls(torch.zeros(n_knots), k_max, floor)
        # θ enters linearly: least squares on the interpolation matrix, with a small penalty on second differences
        # (it decides only knots that no frequency constrains)
        i, frac = f._weights(radius, n_knots)
        basis = torch.zeros(len(radius), n_knots, dtype=torch.float64)
        rows = torch.arange(len(radius))
        basis[rows, i] = 1 - frac
        basis[rows, i + 1] += frac
        d2 = torch.diff(torch.eye(n_knots, dtype=torch.float64), n=2, dim=0)  # rows [1, −2, 1]
        gram = basis.T @ basis + 1e-6 * len(radius) / n_knots * (d2.T @ d2)
        f.theta = torch.linalg.solve(gram + 1e-12 * torch.eye(n_knots, dtype=torch.float64), basis.T @ target)
        return f

    def grid(self, shape) -> torch.Tensor:
        """p on the full [C, H, W] grid."""
        c, h, w = shape
        return self.p(radius_squared(h, w).sqrt()).expand(c, h, w).clone()

    def frequency_filter(self, shape, quantum: float = 2.0**-40) -> torch.Tensor:
        """The filter R = p^(-1/2) on the full [C, H, W] grid, for a filter file (:func:`pds.filters.save_filters`)
        used with ``alpha=None``; rounded to a multiple of ``quantum``, so that last-bit differences of exp / log
        between CPUs mostly leave the file the same (the result cache compares it by its values, within tolerance)."""
        return torch.round(self.grid(shape).rsqrt() / quantum) * quantum

    def preconditioner(self, shape) -> Preconditioner:
        """The :class:`Preconditioner` with this drift gain: R = p^(-1/2), used as given (``alpha=None``)."""
        return Preconditioner(freq=self.grid(shape).rsqrt(), alpha=None)

    def to_dict(self) -> dict:
        return {"theta": [float(v) for v in self.theta], "k_max": self.k_max, "floor": self.floor}

    @classmethod
    def from_dict(cls, d: dict) -> RadialFilter:
        return cls(torch.tensor(d["theta"], dtype=torch.float64), d["k_max"], d.get("floor", 0.0))


class Frequencies:
    """The rfft half-plane frequencies of a stationary Gaussian target merged by (s_k, |k|², m̂_k, DC): exact for a
    radial filter. ``s`` (target variance), ``radius``, ``m_hat`` (unitary DFT of the mean, complex) and ``weights``
    (how many of the C·H·W frequencies each entry stands for) are 1-D."""

    def __init__(self, target: StationaryGaussianScore):
        if not isinstance(target, StationaryGaussianScore):
            raise TypeError(f"the exact error needs a StationaryGaussianScore target, got {type(target).__name__}")
        c, h, w = target.shape
        wh = w // 2 + 1
        s = target.spectrum[..., :wh].to(torch.float64)
        m_hat = torch.fft.rfft2(target.mean.to(torch.float64)) / math.sqrt(h * w)
        dc = torch.zeros(c, h, wh, dtype=torch.float64)
        dc[..., 0, 0] = 1.0
        uniq, self.index, self.weights = merge_frequencies(
            [s, radius_squared(h, w, half=True), m_hat.real, m_hat.imag, dc], h, w)
        self.s, self.radius = uniq[:, 0], uniq[:, 1].sqrt()
        self.m_hat = torch.complex(uniq[:, 2], uniq[:, 3])
        self.shape, self.k_max = (c, h, w), float(radius_squared(h, w).sqrt().max())

    def __len__(self) -> int:
        return len(self.s)


def pc_moments(freqs: Frequencies, p: torch.Tensor, sigma_min: float, sigma_max: float, num_scales: int, snr: float,
               iterations: int, predictor: str = "released", prior: str | None = None, denoise: bool = True,
               step_gains: torch.Tensor | None = None, score_error=None):
    """(δ, v, nfe): the output moments of :func:`pds.samplers.pc_sampler` with drift gain ``p`` per entry of
    ``freqs`` — :func:`pds.exact.pc_exact` written for autograd (ε a tensor). ``predictor``: "released" (p in the
    predictor's drift and noise) or "kept" (noise gain 2p − 1); ``prior``: "released" (σ_max²·p) or "vanilla"
    (σ_max²), default released for the released predictor and vanilla for kept (as :func:`pds.modern.pc_kept`).
    ``step_gains``: one scalar per iteration, the corrector's ε multiplied by exp(β_i). ``score_error``: σ ↦ the
    variance per entry of ``freqs`` of an error added to the score at σ (:func:`pds.exact.pc_recursion`'s
    ``score_noise``; e.g. :func:`pds.lessons.network_like.error_model` of a network's measured error spectrum)."""
    if predictor not in ("released", "kept"):
        raise ValueError(f"predictor must be 'released' or 'kept', got {predictor!r}")
    prior = prior or ("released" if predictor == "released" else "vanilla")
    if prior not in ("released", "vanilla"):
        raise ValueError(f"prior must be 'released' or 'vanilla', got {prior!r}")
    sched = ve_schedule(sigma_min, sigma_max, num_scales, iterations=iterations, dtype=torch.float64)
    sigmas, _, g2s = sched.host()
    var = sched.sigma_max**2 * (p if prior == "released" else torch.ones_like(p))
    noise = None if score_error is None else [score_error(float(sg)) for sg in sigmas]
    amp, var, _ = pc_recursion(freqs.s, freqs.weights, p, freqs.m_hat.abs() ** 2, var, sigmas, g2s, snr,
                               predictor=predictor, denoise=denoise, step_gains=step_gains, score_noise=noise)
    return -amp * freqs.m_hat, var, 2 * sched.n


def churn_moments(freqs: Frequencies, p: torch.Tensor, sigmas, churn: Churn = EDM_CHURN):
    """(δ, v, nfe): EDM's stochastic sampler with the drift gain ``p`` (churn noise M⁻¹ξ, Heun steps with the
    drift through M⁻¹M⁻ᵀ): :func:`pds.exact.ode_recursion`, as :func:`pds.exact.ode_exact` (``edm_churn``) runs it."""
    amp, var, nfe = ode_recursion(freqs.s, sigmas, gain=p, churn=churn)
    return -amp * freqs.m_hat, var, nfe


def sampler_w2(freqs: Frequencies, experiment, sampler: str, nfe: int, p: torch.Tensor,
               step_gains: torch.Tensor | None = None, score_error=None):
    """(W2, nfe) of ``sampler`` ("pc", "pc_kept", "edm_churn") within ``nfe`` evaluations, with the settings of
    ``experiment`` (:mod:`pds.configs`: σ range, scales, snr), drift gain ``p`` per entry of ``freqs``;
    ``score_error`` as in :func:`pc_moments` (the PC samplers)."""
    e = experiment
    if sampler not in OPTIMISED:
        raise ValueError(f"sampler must be one of {OPTIMISED}, got {sampler!r}")
    steps = steps_within(sampler, nfe)
    if sampler == "edm_churn":
        if step_gains is not None or score_error is not None:
            raise ValueError("per-iteration gains and a score error are for the PC samplers")
        delta, var, used = churn_moments(freqs, p, edm_sigmas(e.sigma_min, e.sigma_max, steps))
    else:
        delta, var, used = pc_moments(freqs, p, e.sigma_min, e.sigma_max, e.levels, e.snr, min(steps, e.levels),
                                      predictor="kept" if sampler == "pc_kept" else "released",
                                      step_gains=step_gains, score_error=score_error)
    sq = ((delta.abs() ** 2 + (var.sqrt() - freqs.s.sqrt()) ** 2) * freqs.weights).sum()
    return sq.sqrt() / (freqs.s * freqs.weights).sum().sqrt(), used


def agreement_with_exact(target: StationaryGaussianScore, freqs: Frequencies, experiment, sampler: str, nfe: int,
                         filt: RadialFilter) -> tuple[float, float, float]:
    """(the differentiable W2 of :func:`sampler_w2`, the W2 :mod:`pds.exact` computes for the same sampler, filter and
    budget, their relative difference): the check that the autograd recursions are the exact ones."""
    e = experiment
    got, _ = sampler_w2(freqs, e, sampler, nfe, filt.p(freqs.radius))
    pre, steps = filt.preconditioner(target.shape), steps_within(sampler, nfe)
    if sampler == "edm_churn":
        want = ode_exact(target, "edm_churn", edm_sigmas(e.sigma_min, e.sigma_max, steps), preconditioner=pre)
    else:
        kw = dict(prior="vanilla", predictor="kept") if sampler == "pc_kept" else {}
        want = pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=steps, preconditioner=pre, **kw)
    return float(got), want.w2_relative, abs(float(got) / want.w2_relative - 1)


def gradient_agreement(freqs: Frequencies, experiment, sampler: str, nfe: int, filt: RadialFilter, probes: int = 4,
                       h: float = 1e-6) -> list[float]:
    """Relative differences between the autograd gradient of :func:`sampler_w2` in the filter's knot values and
    central finite differences (step ``h``), at ``probes`` knots spread over the filter."""
    def w2(th):
        return sampler_w2(freqs, experiment, sampler, nfe, filt.p(freqs.radius, th))[0]

    theta = filt.theta.clone().requires_grad_(True)
    w2(theta).backward()
    errors = []
    for j in range(0, len(theta), max(1, len(theta) // probes)):
        fd = finite_difference(w2, theta, j, h)
        errors.append(abs(float(theta.grad[j]) - fd) / max(abs(fd), 1e-8 * float(theta.grad.abs().max())))
    return errors


def finite_difference(f, x: torch.Tensor, j: int, h: float = 1e-6) -> float:
    """The central difference (f(x + h·e_j) − f(x − h·e_j))/(2h) of a scalar function of a tensor, without autograd."""
    step = torch.zeros_like(x)
    step[j] = h
    with torch.no_grad():
        return (float(f(x.detach() + step)) - float(f(x.detach() - step))) / (2 * h)


@dataclass
class Optimum:
    """What :func:`optimise` found: the filter, the gains (or None), W2 at the start and at the end, the NFE used,
    and the history of log W2 per L-BFGS iteration."""

    sampler: str
    nfe: int
    filter: RadialFilter
    gains: torch.Tensor | None
    w2_start: float
    w2: float
    evaluations: int
    history: list = field(default_factory=list)
    rejected: int = 0  # trial steps whose recursion overflowed (the line search stepped back)

    def at_cap(self, max_iter: int) -> bool:
        """Whether the search may have been stopped by its cap rather than by its tolerances: L-BFGS stops at
        ``max_iter`` iterations or 1.25·``max_iter`` evaluations, so a search that used ``max_iter`` evaluations or
        more is treated as capped. Its W2 is then an upper bound of the optimum's (and, on another machine, where
        rounding differs, the same search can stop elsewhere)."""
        return self.evaluations >= max_iter

    def bound_note(self, max_iter: int) -> str:
        """The words a finding resting on this search adds: nothing for a converged search."""
        what = f"{self.sampler}{' with gains' if self.gains is not None else ''}"
        return (f" [the {what} search stopped at its cap after {self.evaluations} evaluations: its W2 is an upper "
                "bound of the optimum's]") if self.at_cap(max_iter) else ""

    def to_dict(self) -> dict:
        return {"sampler": self.sampler, "nfe": self.nfe, "filter": self.filter.to_dict(),
                "gains": None if self.gains is None else [float(g) for g in self.gains], "w2_start": self.w2_start,
                "w2": self.w2, "evaluations": self.evaluations, "history": self.history,
                "rejected": self.rejected}

    @classmethod
    def from_dict(cls, d: dict) -> Optimum:
        gains = d.get("gains")
        return cls(d["sampler"], d["nfe"], RadialFilter.from_dict(d["filter"]),
                   None if gains is None else torch.tensor(gains, dtype=torch.float64), d["w2_start"], d["w2"],
                   d["evaluations"], d.get("history", []), d.get("rejected", 0))


def optimise(freqs: Frequencies, experiment, sampler: str, nfe: int, start: RadialFilter, gains: bool = False,
             max_iter: int = 60, tol: float = 1e-9, score_error=None) -> Optimum:
    """Minimise the exact relative W2 of ``sampler`` within ``nfe`` evaluations over the knots of a radial filter
    (and, with ``gains``, one scalar per PC iteration on the corrector's step), by L-BFGS from ``start`` (e.g.
    :meth:`RadialFilter.fit` of the paper's R). Minimises log W2 (the scale spans decades). ``score_error``: the W2
    of a sampler whose score carries that error (:func:`pc_moments`), both at the start and at the end."""
    floor = 0.5 if sampler == "pc_kept" else 0.0
    if start.floor != floor:
        raise ValueError(f"{sampler} needs a filter with floor {floor}, got {start.floor}")
    if gains and sampler == "edm_churn":
        raise ValueError("per-iteration gains are for the PC samplers")
    theta = start.theta.clone().requires_grad_(True)
    params = [theta]
    beta = None
    if gains:
        steps = min(steps_within(sampler, nfe), experiment.levels)
        beta = torch.zeros(steps, dtype=torch.float64, requires_grad=True)
        params.append(beta)
    history, count, rejected = [], [0], [0]

    def value():
        v, used = sampler_w2(freqs, experiment, sampler, nfe, start.p(freqs.radius, theta), beta,
                             score_error=score_error)
        return v, used

    with torch.no_grad():
        w_start, used = value()
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=tol,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v, _ = value()
        loss = torch.log(v)
        count[0] += 1
        if not bool(torch.isfinite(loss)):  # a trial step too far (the recursion overflows): a large loss, no
            rejected[0] += 1                 # gradient, so that the line search steps back
            history.append(None)
            for q in params:
                q.grad = torch.zeros_like(q)
            return torch.tensor(OVERFLOW_LOSS, dtype=torch.float64)
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    opt.step(closure)
    final = RadialFilter(theta.detach().clone(), start.k_max, floor)
    if not all(bool(torch.isfinite(q).all()) for q in params):
        raise FloatingPointError(f"{sampler} at {nfe} NFE: the search left the finite range")
    with torch.no_grad():
        w_end, _ = sampler_w2(freqs, experiment, sampler, nfe, final.p(freqs.radius),
                              None if beta is None else beta.detach(), score_error=score_error)
    if not math.isfinite(float(w_end)) or float(w_end) > float(w_start):
        raise FloatingPointError(f"{sampler} at {nfe} NFE: the search ended at W2 {float(w_end)} above its start "
                                 f"{float(w_start)}")
    return Optimum(sampler, used, final, None if beta is None else beta.detach().clone(), float(w_start),
                   float(w_end), count[0], history, rejected[0])


def behaviour_fingerprint() -> Fingerprint:
    """What the differentiable error computes (:mod:`pds.fingerprint`): W2 and its gradient for every sampler on a
    canonical tiny target (8², two channels, fixed images, fixed knots), in float64. Keys the store of optima so that
    a refactor keeps them and a numerical change does not."""
    gen = torch.Generator().manual_seed(0)
    x = 0.5 * torch.rand(32, 2, 8, 8, generator=gen, dtype=torch.float64) + 0.25
    freqs = Frequencies(StationaryGaussianScore.from_images(x))
    e = experiment("cifar10_ncsnpp")
    parts = []
    for sampler in OPTIMISED:
        f = RadialFilter(torch.linspace(0.3, -0.1, 6, dtype=torch.float64), freqs.k_max,
                         0.5 if sampler == "pc_kept" else 0.0)
        th = f.theta.clone().requires_grad_(True)
        v, _ = sampler_w2(freqs, e, sampler, 12, f.p(freqs.radius, th))
        v.backward()
        parts += [v.detach(), th.grad]
    return fingerprint(*parts)


TARGET_RTOL = 1e-4  # see target_fingerprint


def target_fingerprint(target: StationaryGaussianScore) -> Fingerprint:
    """A Gaussian target by its mean and spectrum, compared to ``TARGET_RTOL`` (1e-4): a target estimated from
    float32 images differs between float kernels in its last bits, and the 1024² power-law field of notebooks 10 and
    12 moved by 4.6e-7 (relative) between two kernel sets on one machine while its least-squares fit
    (:func:`pds.scores.fit_power_law`) stopped at scipy's default tolerances (``benchmarks/results/
    fingerprint_kernels.json``; the fit now runs to convergence). Two different targets differ by far more."""
    return fingerprint("Gaussian target", Approx(target.mean, TARGET_RTOL), Approx(target.spectrum, TARGET_RTOL))
