"""The exact recursions of the samplers (see :mod:`pds.exact`): per-frequency mean and variance of the PC, ODE and
annealed-Langevin samplers on a stationary Gaussian target, their dense-matrix counterparts for small problems, and
the W2 of a sampler within an NFE budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pds.fourier import half_plane_filter, half_plane_weights, merge_frequencies, radial_profile
from pds.modern import EDM_CHURN, Churn, frequency_gain
from pds.precondition import Preconditioner
from pds.samplers import SAMPLERS, exact_recursion, refuse_preconditioner, require
from pds.samplers import sampler as registered
from pds.schedules import LangevinLadder, VESchedule, ve_schedule
from pds.scores import StationaryGaussianScore
from pds.solenoidal import FourierSkew

__all__ = [
    "ExactResult",
    "pc_exact",
    "annealed_langevin_exact",
    "fewest_iterations",
    "ode_exact",
    "pc_recursion",
    "ode_recursion",
    "SAMPLERS_BY_NFE",
    "BUDGET_SAMPLERS",
    "w2_within",
]


ODE_SAMPLERS = tuple(name for name, s in SAMPLERS.items() if s.family == "ode")  # pds.modern's, as registered


@dataclass
class ExactResult:
    """Output moments per group of identical frequencies, and the distances to the target.

    ``delta`` (E[ŷ] − m̂, complex), ``var`` (E|ŷ − Eŷ|²), ``spectrum`` (target s_k) and ``weights``
    (how many of the C·H·W frequencies each entry stands for) are 1-D; :meth:`per_frequency` maps
    any of them back onto the rfft half plane [C, H, W//2+1].
    """

    delta: torch.Tensor
    var: torch.Tensor
    spectrum: torch.Tensor
    weights: torch.Tensor
    nfe: int
    corrector_steps: list
    index: torch.Tensor  # half-plane position -> entry
    shape: tuple  # (C, H, W//2+1)
    width: int  # W

    def per_frequency(self, values: torch.Tensor) -> torch.Tensor:
        """Map a 1-D per-entry array onto the rfft half plane [C, H, W//2+1]."""
        return values[self.index].reshape(self.shape)

    @property
    def w2(self) -> float:
        sq = (self.delta.abs() ** 2 + (self.var.sqrt() - self.spectrum.sqrt()) ** 2) * self.weights
        return math.sqrt(float(sq.sum()))

    @property
    def w2_relative(self) -> float:
        """W2 / √(E‖x − mean‖²) of the target: 1 means an error as large as the data's spread."""
        return self.w2 / math.sqrt(float((self.spectrum * self.weights).sum()))

    @property
    def kl(self) -> float:
        ratio = self.var / self.spectrum
        terms = ratio - 1.0 - torch.log(ratio) + self.delta.abs() ** 2 / self.spectrum
        return 0.5 * float((terms * self.weights).sum())

    def variance_ratio(self) -> torch.Tensor:
        """v_k / s_k on the half plane [C, H, W//2+1]: > 1 leftover noise, < 1 missing detail."""
        return self.per_frequency(self.var / self.spectrum)

    def sample(self, mean: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws [n, C, H, W] from the Gaussian law this result describes — per frequency k of the unitary DFT,
        mean m̂_k + δ_k and variance v_k — around the target's ``mean`` image; the white noise is drawn as
        :meth:`pds.scores.StationaryGaussianScore.sample` draws it, so with δ = 0 and v = s they are the target's own
        samples for the same generator. (A result of the expected-norm corrector: the released sampler's output law
        up to that step rule.)"""
        c, h, _ = self.shape
        size = (h, self.width)
        z = torch.randn(n, c, h, self.width, generator=generator, dtype=torch.float64)
        shift = torch.fft.irfft2(self.per_frequency(self.delta) * math.sqrt(h * self.width), s=size)
        return mean.to(torch.float64) + shift + half_plane_filter(z, self.per_frequency(self.var).sqrt())

    def radial(self, bins: int = 48) -> dict:
        """Per ring of |k| (the rings of :func:`pds.fourier.radial_profile`, channels together): ``radius``, the mean
        of v_k / s_k over the ring (``ratio``) and the ring's part of W2², the sum of |δ_k|² + (√v_k − √s_k)² over its
        frequencies of the full C·H·W grid (``w2_squared``: the rings sum to W2²); lists of floats."""
        h, w = self.shape[-2], self.width
        sq = self.per_frequency(self.delta.abs() ** 2 + (self.var.sqrt() - self.spectrum.sqrt()) ** 2)
        radius, ratio = radial_profile(self.variance_ratio(), h, w, bins=bins)
        _, w2sq = radial_profile((sq * half_plane_weights(h, w)).sum(0), h, w, bins=bins, total=True)
        return {"radius": radius.tolist(), "ratio": ratio.tolist(), "w2_squared": w2sq.tolist()}


class _Setup:
    def __init__(self, target: StationaryGaussianScore, preconditioner, solenoidal, omega):
        if not isinstance(target, StationaryGaussianScore):
            raise TypeError("exact analysis needs a StationaryGaussianScore target")
        c, h, w = target.shape
        self.h, self.w = h, w
        wh = w // 2 + 1
        s = target.spectrum[..., :wh].clone()
        if (s <= 0).any():
            raise ValueError("the target spectrum must be > 0 at every frequency for W2/KL to be defined")
        m_hat = torch.fft.rfft2(target.mean) / math.sqrt(h * w)  # unitary DFT of the target mean
        gain = frequency_gain(preconditioner, "the exact analysis")
        gain = torch.ones_like(s) if gain is None else gain.expand(c, h, w)[..., :wh].clone()
        sol = torch.zeros_like(s)
        if solenoidal is not None and omega != 0:
            if not isinstance(solenoidal, FourierSkew):
                raise NotImplementedError("the exact analysis supports FourierSkew solenoidal operators only")
            sol = omega * solenoidal.imag.expand(c, h, w)[..., :wh].to(torch.float64)
        self.shape = tuple(s.shape)
        is_dc = torch.zeros(self.shape, dtype=torch.float64)
        is_dc[..., 0, 0] = 1.0  # keeps DC apart: its start differs for a uniform initial sample
        uniq, self.index, self.weights = merge_frequencies([s, gain**2, sol, m_hat.real, m_hat.imag, is_dc], h, w)
        self.s, self.p, self.sol = uniq[:, 0], uniq[:, 1], uniq[:, 2]
        self.m_hat = torch.complex(uniq[:, 3], uniq[:, 4])
        # the drift's symbol: the gain p, plus iω·S̃ with a solenoidal term (then the recursions run in complex)
        self.drift_symbol = torch.complex(self.p, self.sol) if bool((self.sol != 0).any()) else self.p

    @classmethod
    def cached(cls, target, preconditioner, solenoidal, omega) -> _Setup:
        """One setup per (target, preconditioner, solenoidal, ω), kept on the target object."""
        cache = target.__dict__.setdefault("_exact_setups", {})
        key = (id(preconditioner), id(solenoidal), float(omega))
        if key not in cache:
            # keep the objects alive with the entry, so that their ids cannot be reused
            cache[key] = (cls(target, preconditioner, solenoidal, omega), preconditioner, solenoidal)
        return cache[key][0]

    def result(self, delta, var, nfe, steps=()) -> ExactResult:
        return ExactResult(delta=delta, var=var, spectrum=self.s, weights=self.weights, nfe=nfe,
                           corrector_steps=[float(e) for e in steps], index=self.index, shape=self.shape, width=self.w)


PREDICTORS = ("released", "kept", "vanilla")


def _abs2(a: torch.Tensor) -> torch.Tensor:
    return a.real**2 + a.imag**2 if a.is_complex() else a * a


def pc_recursion(s, weights, p, mean_sq, var, sigmas, g2s, snr: float, *, drift=None, predictor: str = "released",
                 denoise: bool = True, step_gains=None, score_noise=None, corrector: str = "released", steps=None,
                 on_step=None):
    """The one recursion of the PC sampler's per-frequency moments (module docstring), written once, without in-place
    updates, so that autograd differentiates it (:mod:`pds.exact.optimal`) and :func:`pc_exact` evaluates it.

    Per group of frequencies: ``s`` the target variance, ``weights`` their multiplicity, ``p`` the preconditioner's
    drift gain (the symbol of M⁻¹M⁻ᵀ; its noise has variance p), ``mean_sq`` = |δ₀|² the start's squared mean offset,
    ``var`` the start's variance; ``drift`` the drift's symbol (p, or p + iω·S̃ with a solenoidal term; default p);
    ``sigmas`` / ``g2s`` the schedule's σ_i and G_i² (:meth:`pds.schedules.VESchedule.host`). Per iteration, with
    π = 1/(s + σ_i²) (``prec``, the precision of p_σ):

    * corrector: ε = 2·snr²·Σ p / Σ p²π²(v + |δ|²) (expected norms, times exp(β_i) with ``step_gains``), gain
      a = 1 − επ·drift: δ ← aδ, v ← |a|²v + 2εp;
    * predictor: gain a = 1 − G²π·d, v ← |a|²v + G²·q (not after the last step with ``denoise``), where (d, q) is
      (drift, p) for the released predictor, (p, 2p − 1) for ``"kept"`` (:func:`pds.modern.pc_kept`) and (1, 1)
      for ``"vanilla"``.

    ``score_noise`` (beyond the paper): one tensor per iteration, the variance E_i per group of an error added to the
    score at σ_i, independent of x and of every other draw (a model of a network's error, e.g. its measured error
    spectrum, :mod:`pds.lessons.network_like`); it enters the corrector's expected norm (Σ p²(π²(v + |δ|²) + E)),
    adds |ε·drift|²E to the corrector's variance and |G²·d|²E to the predictor's.

    Ablations (beyond the paper, what causes what): ``corrector="vanilla"`` runs the corrector without the
    preconditioner (drift and noise gain 1, in its step rule too), as ``predictor="vanilla"`` does the predictor;
    ``steps``: the corrector's ε_i given (one per iteration, e.g. vanilla's) instead of the snr rule.
    ``on_step(i, eps, a_corrector, var_corrected, a_predictor, var_predicted)``: called after each iteration with its
    step, the corrector's and the predictor's gains per group and the variance after each (the state's relaxation
    along the σ ladder).

    Returns (amplitude δ/δ₀, variance, the corrector steps ε_i as tensors)."""
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    drift = p if drift is None else drift
    if predictor != "released" and drift.is_complex():
        raise NotImplementedError("the kept / vanilla predictors are analysed without a solenoidal term")
    if predictor == "kept" and bool((p < 0.5).any()):
        raise ValueError(f"drift gains below 1/2 (min {float(p.min()):.3g}): the kept predictor needs 2p − 1 >= 0")
    if step_gains is not None and len(step_gains) != len(sigmas):
        raise ValueError(f"step_gains needs one value per iteration ({len(sigmas)}), got {len(step_gains)}")
    if score_noise is not None and len(score_noise) != len(sigmas):
        raise ValueError(f"score_noise needs one variance per iteration ({len(sigmas)}), got {len(score_noise)}")
    if corrector not in ("released", "vanilla"):
        raise ValueError(f"corrector must be 'released' or 'vanilla', got {corrector!r}")
    if steps is not None and (len(steps) != len(sigmas) or step_gains is not None):
        raise ValueError(f"steps needs one ε per iteration ({len(sigmas)}), and no step_gains beside it")
    pred_drift, pred_noise = {"released": (drift, p), "kept": (p, 2.0 * p - 1.0), "vanilla": (1.0, 1.0)}[predictor]
    cor_gain, cor_drift = (p, drift) if corrector == "released" else (torch.ones_like(p), torch.ones_like(p))
    noise_sq = (cor_gain * weights).sum()
    amp, used = torch.ones_like(drift), []
    for i, sigma in enumerate(sigmas):
        prec = 1.0 / (s + sigma**2)
        if steps is None:
            norm_sq = (cor_gain * prec) ** 2 * (var + _abs2(amp) * mean_sq)  # E|M⁻¹M⁻ᵀ s|² per group
            if score_noise is not None:
                norm_sq = norm_sq + cor_gain**2 * score_noise[i]
            eps = 2.0 * snr**2 * noise_sq / (norm_sq * weights).sum()
            if step_gains is not None:
                eps = eps * torch.exp(step_gains[i])
        else:
            eps = torch.as_tensor(steps[i], dtype=s.dtype)
        used.append(eps)
        a_c = 1.0 - eps * prec * cor_drift
        amp, var = amp * a_c, _abs2(a_c) * var + 2.0 * eps * cor_gain
        if score_noise is not None:
            var = var + _abs2(eps * cor_drift) * score_noise[i]
        var_c = var
        a_p = 1.0 - g2s[i] * prec * pred_drift
        amp, var = amp * a_p, _abs2(a_p) * var
        if score_noise is not None:
            var = var + g2s[i] ** 2 * _abs2(pred_drift * torch.ones_like(p)) * score_noise[i]
        if not (denoise and i == len(sigmas) - 1):
            var = var + g2s[i] * pred_noise
        if on_step is not None:
            on_step(i, eps, a_c, var_c, a_p, var)
    return amp, var, used


def pc_exact(target: StationaryGaussianScore, sigma_min: float, sigma_max: float, num_scales: int,
             snr: float, *, iterations: int | None = None, speed_up: float | None = None,
             preconditioner: Preconditioner | None = None, solenoidal=None, omega: float = 0.0,
             denoise: bool = True, prior: str = "released", predictor: str = "released", corrector: str = "released",
             steps=None, on_step=None) -> ExactResult:
    """Exact output moments of :func:`pds.samplers.pc_sampler` (expected-norm corrector step), by
    :func:`pc_recursion`; the length is given as there (``iterations`` or the released ``speed_up``).

    ``prior``: "released" (σ_max·M⁻¹ξ) or "vanilla" (σ_max·ξ). ``predictor``: "released" (drift gain p, noise
    gain p: the same preconditioner as the corrector), "kept" (drift gain p, noise gain 2p − 1: the p_σ-keeping
    predictor of :func:`pds.modern.pc_kept`) or "vanilla" (no preconditioning in the predictor). ``corrector``,
    ``steps``, ``on_step``: :func:`pc_recursion`'s ablations and trace (the corrector without the preconditioner,
    its steps given, a call per iteration)."""
    if prior not in ("released", "vanilla"):
        raise ValueError(f"prior must be 'released' or 'vanilla', got {prior!r}")
    st = _Setup.cached(target, preconditioner, solenoidal, omega)
    sched = ve_schedule(sigma_min, sigma_max, num_scales, speed_up, iterations=iterations, dtype=torch.float64)
    sigmas, _, g2s = sched.host()
    delta0 = (-st.m_hat).to(torch.complex128)
    var = sched.sigma_max**2 * (st.p if prior == "released" else torch.ones_like(st.p))
    amp, var, used = pc_recursion(st.s, st.weights, st.p, _abs2(delta0), var, sigmas, g2s, snr,
                                  drift=st.drift_symbol, predictor=predictor, denoise=denoise, corrector=corrector,
                                  steps=steps, on_step=on_step)
    return st.result(amp * delta0, var, 2 * sched.n, used)


def ode_recursion(s, sigmas, *, gain=1.0, churn: Churn | None = None, second_order: bool = True):
    """The one recursion of the probability-flow samplers' per-frequency moments, for autograd
    (:func:`pds.exact.optimal.sampler_w2`) and :func:`ode_exact`: from the prior N(0, σ_0²), per step EDM's churn
    (with ``churn``: σ̂ = (1 + γ_i)σ_i, noise of variance (σ̂² − σ_i²)·S_noise²·gain, the preconditioned M⁻¹ξ) then
    an Euler or Heun step (EDM's Algorithm 1: Euler at the last step, σ_{i+1} = 0), whose gain y ← a·y follows from the
    linear denoiser, (y − D)/σ = σ/(s + σ²)·y, the drift through ``gain``. Returns (amplitude y/y₀ of the mean,
    variance, NFE)."""
    sig = [float(v) for v in sigmas]
    amp, var = torch.ones_like(s), torch.full_like(s, sig[0] ** 2)
    n, nfe = len(sig) - 1, 0
    for i in range(n):
        sigma = sig[i]
        if churn is not None:
            sigma_hat = sigma * (1 + churn.gamma(sigma, n))
            var = var + (sigma_hat**2 - sigma**2) * churn.s_noise**2 * gain
            sigma = sigma_hat
        nxt, slope = sig[i + 1], gain * sigma / (s + sigma**2)
        a = 1.0 + (nxt - sigma) * slope
        if second_order and nxt != 0:  # Heun: the slope at the Euler point too
            a, nfe = 1.0 + (nxt - sigma) * 0.5 * (slope + gain * nxt / (s + nxt**2) * a), nfe + 1
        amp, var, nfe = amp * a, a**2 * var, nfe + 1
    return amp, var, nfe


def ode_exact(target: StationaryGaussianScore, sampler: str, sigmas, *, preconditioner: Preconditioner | None = None,
              s_churn: float = EDM_CHURN.s_churn, s_tmin: float = EDM_CHURN.s_tmin, s_tmax: float = EDM_CHURN.s_tmax,
              s_noise: float = EDM_CHURN.s_noise) -> ExactResult:
    """Exact output moments of the samplers of :mod:`pds.modern` on the noise levels ``sigmas``
    (:func:`pds.schedules.edm_sigmas`): "euler", "heun", "dpmpp_2m" and "edm_churn" (with an optional preconditioner:
    churn noise M⁻¹ξ, drift gain p). Per frequency the denoiser is linear, D − m = s/(s + σ²)·(x − m), so every step
    maps the deviation y = x − m to a·y (plus independent churn noise): :func:`ode_recursion`; DPM-Solver++'s
    two-step rule is a two-term recursion of the amplitude. The prior is N(0, σ_0²I)."""
    if sampler not in ODE_SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(ODE_SAMPLERS)}; got {sampler!r}")
    st = _Setup.cached(target, preconditioner if sampler == "edm_churn" else None, None, 0.0)
    delta0 = (-st.m_hat).to(torch.complex128)
    if sampler == "dpmpp_2m":
        sig = [float(v) for v in sigmas]
        amp, prev_amp, prev_kappa = torch.ones_like(st.s), None, None
        for i in range(len(sig) - 1):
            kappa = st.s / (st.s + sig[i] ** 2)
            ratio = sig[i + 1] / sig[i]
            if prev_amp is None or sig[i + 1] == 0:
                new = ratio * amp + (1 - ratio) * kappa * amp
            else:
                c = 1 / (2 * math.log(sig[i - 1] / sig[i]) / math.log(sig[i] / sig[i + 1]))  # 1/(2r), r = h_{i−1}/h_i
                new = ratio * amp + (1 - ratio) * ((1 + c) * kappa * amp - c * prev_kappa * prev_amp)
            prev_amp, prev_kappa, amp = amp, kappa, new
        return st.result(amp * delta0, amp**2 * sig[0] ** 2, len(sig) - 1)
    churn = Churn(s_churn, s_tmin, s_tmax, s_noise) if sampler == "edm_churn" else None
    amp, var, nfe = ode_recursion(st.s, sigmas, gain=st.p if churn else 1.0, churn=churn,
                                  second_order=sampler != "euler")
    return st.result(amp * delta0, var, nfe)


@exact_recursion("annealed_langevin")
def annealed_langevin_exact(target: StationaryGaussianScore, ladder: LangevinLadder, *,
                            preconditioner: Preconditioner | None = None, solenoidal=None, omega: float = 0.0,
                            denoise: bool = False, init: str = "uniform") -> ExactResult:
    """Exact output moments of :func:`pds.samplers.annealed_langevin` on the ``ladder``."""
    st = _Setup.cached(target, preconditioner, solenoidal, omega)
    sig, steps = ladder.sigmas, ladder.n_steps
    if init == "uniform":
        const = torch.zeros(st.shape, dtype=torch.complex128)
        const[..., 0, 0] = 0.5 * math.sqrt(st.h * st.w)  # unitary DFT of the constant image 0.5
        start = torch.zeros(len(st.s), dtype=torch.complex128).index_put_((st.index,), const.reshape(-1))
        delta = start - st.m_hat
        var = torch.full_like(st.s, 1.0 / 12.0)
    elif init == "gaussian":
        delta = (-st.m_hat).to(torch.complex128)
        var = float(sig[0]) ** 2 * st.p
    else:
        raise ValueError(f"init must be 'uniform' or 'gaussian', got {init!r}")
    nfe = 0
    for sigma, n_c, alpha in zip(sig, steps, ladder.step_sizes(), strict=True):
        prec = 1.0 / (st.s + sigma**2)
        a = 1.0 - alpha * prec * st.drift_symbol
        a2 = a.abs() ** 2
        for _ in range(n_c):
            delta = a * delta
            var = a2 * var + 2.0 * alpha * st.p
            nfe += 1
    if denoise:
        a = 1.0 - sig[-1] ** 2 / (st.s + sig[-1] ** 2)
        delta, var = a * delta, a**2 * var
        nfe += 1
    return st.result(delta, var, nfe)


def fewest_iterations(w2_of_t, target: float, t_max: int, t_min: int = 1, grid=None) -> int | None:
    """Smallest T in [t_min, t_max] with ``w2_of_t(T) <= target``, or None if no grid point reaches it.

    Scans ``grid`` (default: 24 geometric points) upwards, then bisects between the last miss and
    the first hit, assuming W2(T) is monotone between those two points. Pass a cached ``w2_of_t``
    when evaluations are expensive.
    """
    if grid is None:
        grid = np.geomspace(t_min, t_max, 24)
    grid = sorted({int(round(v)) for v in grid if t_min <= round(v) <= t_max} | {t_min, t_max})
    lo, hi = None, None
    for t in grid:
        if w2_of_t(t) <= target:
            hi = t
            break
        lo = t
    if hi is None:
        return None
    if lo is None:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if w2_of_t(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


# -- the exact recursion of each registered sampler, called like the sampler (pds.samplers.Sampler.exact) -----------
@exact_recursion("pc")
def _pc(target, schedule: VESchedule, *, snr: float, preconditioner=None, denoise: bool = True,
        prior: str = "released", predictor: str = "released"):
    """:func:`pc_exact` on the arguments that made ``schedule`` (in float64)."""
    s = schedule
    if s.num_scales is None:
        raise ValueError("the exact PC recursion needs a schedule made by pds.schedules.ve_schedule")
    return pc_exact(target, s.sigma_min, s.sigma_max, s.num_scales, snr, iterations=s.iterations, speed_up=s.speed_up,
                    preconditioner=preconditioner, denoise=denoise, prior=prior, predictor=predictor)


@exact_recursion("pc_kept")
def _pc_kept(target, schedule: VESchedule, *, snr: float, preconditioner=None, denoise: bool = True):
    kept = dict(prior="vanilla", predictor="kept") if preconditioner is not None else {}
    return _pc(target, schedule, snr=snr, preconditioner=preconditioner, denoise=denoise, **kept)


def _ode(name: str):
    @exact_recursion(name)
    def exact(target, sigmas, *, preconditioner=None, **churn):
        if name != "edm_churn":
            refuse_preconditioner(name, preconditioner)
        return ode_exact(target, name, sigmas, preconditioner=preconditioner, **churn)

    return exact


for _name in ODE_SAMPLERS:
    _ode(_name)


# the samplers compared at a budget of network evaluations (notebooks 10 and 12): display label -> (registered sampler,
# with PDS); the evaluations per step are the registry's (pds.samplers.SAMPLERS: PC two per iteration, Heun's and EDM's
# samplers 2k − 1 for k steps, Euler and DPM-Solver++(2M) one per step)
BUDGET_SAMPLERS = {"PC vanilla": ("pc", False), "PC + PDS (released)": ("pc", True),
                   "pc_kept (PDS keeping p_σ)": ("pc_kept", True), "euler": ("euler", False), "heun": ("heun", False),
                   "dpmpp_2m": ("dpmpp_2m", False), "edm_churn": ("edm_churn", False),
                   "edm_churn + PDS": ("edm_churn", True)}
SAMPLERS_BY_NFE = tuple(BUDGET_SAMPLERS)


def w2_within(target: StationaryGaussianScore, settings, sampler: str, nfe: int,
              preconditioner: Preconditioner | None = None) -> float:
    """The exact relative W2 of ``sampler`` (a label of :data:`BUDGET_SAMPLERS`) within ``nfe`` network evaluations,
    with the σ range, scales and snr of ``settings`` (a :class:`pds.samplers.Settings` or a
    :class:`pds.configs.Experiment`); ``preconditioner`` for the PDS variants. PC runs ⌊nfe/2⌋ iterations (at most the
    experiment's scales); the ODE samplers run on EDM's σ schedule (:func:`pds.schedules.edm_sigmas`) with as many steps
    as fit."""
    if sampler not in BUDGET_SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS_BY_NFE}, got {sampler!r}")
    name, pds = BUDGET_SAMPLERS[sampler]
    if pds and preconditioner is None:
        raise ValueError(f"{sampler} needs a preconditioner")
    spec, pc = registered(name), registered(name).family == "pc"
    if pc:
        require(settings, "pc", "levels", "snr")
    options = {"snr": settings.snr} if pc else {}  # the denoised output, as released, always
    steps = min(spec.steps_within(nfe), int(settings.levels)) if pc else spec.steps_within(nfe)
    return spec.exact(target, spec.schedule(settings, steps), preconditioner=preconditioner if pds else None,
                      **options).w2_relative
