"""Samplers with and without PDS: the VE predictor-corrector sampler (NCSN++, as in the released PDS
code) and annealed Langevin dynamics (NCSN / NCSNv2), with the preconditioning of Eq. 11 / Alg. 1.

Every sampler is a plain function of (score model, shape or initial state, schedule, options) and
returns ``(samples, nfe)``, the number of score-network evaluations. Randomness comes only from the
``generator`` argument, drawn with ``torch.randn(shape, generator=..., dtype=..., device=...)`` in a
fixed order (documented per sampler), so the same seed gives identical samples, and a sampler
without a preconditioner (or with all-ones filters) is bit-for-bit the vanilla one.

Names follow the paper: ``step_size`` is the Langevin step (ε of Eq. 1 and 11, ε_t of the corrector), ``eta`` the
preconditioned noise η = M⁻¹ξ of Alg. 1. The score is called as ``score(x, sigma)`` with σ a Python float (one
level for the whole batch; every schedule lives on the host), so nothing is read back from the device per
iteration; values are checked for NaN/inf (every iteration on the CPU, every 50 on a GPU) and at the end.

The solenoidal term ω·S∇log p (Eq. 7, Sec. 5) is passed as ``skew`` (:func:`pds.solenoidal.skew_term`) and shares
the drift's step factor: the corrector adds ε·ω·S[s] next to ε·M⁻¹M⁻ᵀs, the predictor ω·G²·S[s] next to M⁻¹M⁻ᵀ(G²s).

Every sampler is registered (:data:`SAMPLERS`) where it is defined, here and in :mod:`pds.modern`. ``pc_sampler``
is the released sampler kept small (as EDM keeps its ``edm_sampler``): the schedule is one argument
(:func:`pds.schedules.ve_schedule`), the corrector's step rule another.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from pds.precondition import Preconditioner
from pds.schedules import LangevinLadder, VESchedule, check_positive_int, edm_sigmas, geometric_sigmas, ve_schedule

__all__ = ["pc_sampler", "annealed_langevin", "checked_score", "initial_state", "prior", "randn", "FiniteCheck",
           "operators", "check_schedule", "Settings", "Sampler", "SAMPLERS", "FAMILIES", "EXACT", "register",
           "exact_recursion", "sampler", "steps_within", "refuse_preconditioner", "require"]


# -- the registry: every sampler registered where it is defined --------------------------------
@dataclass(frozen=True)
class Settings:
    """What a registered sampler's schedule and options are made of (:meth:`Sampler.schedule`, :meth:`Sampler.options`):
    the model's σ range and ``levels`` (PC: num_scales; Langevin: the ladder's length, or ``sigmas`` given), the PC
    corrector's ``snr``, the Langevin ladder's ``n_steps_each`` and ``step_lr``, the start ``init`` and the final
    ``denoise`` (None: the sampler's default). :class:`pds.configs.Experiment` has these fields too."""

    sigma_min: float
    sigma_max: float
    levels: int | None = None
    snr: float | None = None
    sigmas: tuple | None = None
    n_steps_each: int | None = None
    step_lr: float | None = None
    init: str = "uniform"
    denoise: bool | None = None


def require(s, family: str, *names: str) -> None:
    """One line naming the settings a family's schedule or options need and ``s`` lacks."""
    missing = [n for n in names if getattr(s, n, None) is None]
    if missing:
        raise ValueError(f"the {family} samplers need the settings' {', '.join(missing)} (pds.samplers.Settings)")


def _pc_schedule(s, T: int, dtype, expand: bool) -> VESchedule:
    require(s, "pc", "levels")
    return ve_schedule(s.sigma_min, s.sigma_max, int(s.levels), iterations=T, dtype=dtype)


def _langevin_schedule(s, T: int, dtype, expand: bool) -> LangevinLadder:
    sigmas = getattr(s, "sigmas", None)
    require(s, "langevin", "n_steps_each", "step_lr", *(("levels",) if sigmas is None else ()))
    ladder = geometric_sigmas(s.sigma_max, s.sigma_min, int(s.levels)) if sigmas is None else sigmas
    return LangevinLadder(ladder, s.n_steps_each, s.step_lr).shorten(T, expand)


def _ode_schedule(s, T: int, dtype, expand: bool) -> list[float]:
    return edm_sigmas(s.sigma_min, s.sigma_max, T)


def _denoise(s) -> dict:
    return {} if s.denoise is None else {"denoise": bool(s.denoise)}


# per family: (the schedule for T steps, the options taken from the settings)
def _pc_options(s) -> dict:
    require(s, "pc", "snr")
    return {"snr": s.snr, **_denoise(s)}


FAMILIES = {"pc": (_pc_schedule, _pc_options),
            "langevin": (_langevin_schedule, lambda s: {"init": s.init, **_denoise(s)}),
            "ode": (_ode_schedule, lambda s: {})}
EXACT: dict[str, Callable] = {}  # name -> its exact recursion, registered by pds.exact (exact_recursion)


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: its function, called as ``fn(score, x_or_shape, schedule, *, preconditioner, generator,
    device, dtype, **options)``; its family ("pc": a :class:`~pds.schedules.VESchedule` and the corrector's snr;
    "langevin": a :class:`~pds.schedules.LangevinLadder`; "ode": EDM's σ list, :func:`~pds.schedules.edm_sigmas`);
    ``per_step`` network evaluations per step, ``saved`` of them saved at the last (Heun's last step is Euler's: k
    steps cost 2k − 1); whether it takes a preconditioner (a deterministic one refuses any but None)."""

    name: str
    fn: Callable
    family: str
    per_step: int
    saved: int = 0
    preconditioned: bool = True

    def steps_within(self, nfe: int) -> int:
        """The most steps (at least one) that ``nfe`` network evaluations pay for."""
        return max(1, (int(nfe) + self.saved) // self.per_step)

    def schedule(self, settings, T: int, *, dtype=torch.float32, expand: bool = True):
        """The third argument of :attr:`fn` for T steps of ``settings`` (:class:`Settings`): the released PC grid of T
        iterations, the Langevin ladder shortened to T steps (:meth:`~pds.schedules.LangevinLadder.shorten`, the
        step expanded when ``expand``) or EDM's T noise levels over the σ range."""
        return FAMILIES[self.family][0](settings, int(T), dtype, expand)

    def options(self, settings) -> dict:
        """The keyword options of :attr:`fn` that ``settings`` fix (PC: snr, denoise; Langevin: init, denoise)."""
        return FAMILIES[self.family][1](settings)

    @property
    def exact(self) -> Callable:
        """Its exact recursion on a stationary Gaussian target, called as ``exact(target, schedule, *,
        preconditioner, **options)`` like :attr:`fn` (registered by :mod:`pds.exact`)."""
        if self.name not in EXACT:
            raise ValueError(f"no exact recursion is registered for {self.name!r} (import pds.exact); "
                             f"registered: {sorted(EXACT)}")
        return EXACT[self.name]


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, family: str, per_step: int, saved: int = 0, preconditioned: bool = True):
    """Decorator: enter the function in :data:`SAMPLERS` under ``name`` (see :class:`Sampler`)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")

    def add(fn):
        if fn.__name__ != name and not (name == "pc" and fn.__name__ == "pc_sampler"):
            raise ValueError(f"a sampler is registered under its function's name: {name!r} names {fn.__name__}")
        SAMPLERS[name] = Sampler(name, fn, family, per_step, saved, preconditioned)
        return fn

    return add


def exact_recursion(name: str):
    """Decorator (for :mod:`pds.exact`): the exact recursion of the registered sampler ``name``."""
    def add(fn):
        sampler(name)
        EXACT[name] = fn
        return fn

    return add


def sampler(name: str) -> Sampler:
    """The registered sampler ``name`` (:mod:`pds.modern`'s are registered when ``pds`` is imported)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; registered: {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def steps_within(name: str, nfe: int) -> int:
    """Steps of the sampler ``name`` within ``nfe`` network evaluations (PC two per iteration, Heun's 2k − 1)."""
    return sampler(name).steps_within(nfe)


def refuse_preconditioner(name: str, preconditioner) -> None:
    """A deterministic sampler's one line for a preconditioner it cannot use."""
    if preconditioner is not None:
        raise ValueError(f"{name} is deterministic: it takes no preconditioner (use edm_churn or pc_kept)")


# -- what every sampler (here and in pds.modern) starts from ---------------------------------------
def initial_state(shape, dtype, device):
    """(shape, None) for a shape [N, C, H, W] to draw the prior for, or (None, a copy of x_T) for an initial state
    given as a tensor; a clear ValueError for anything else."""
    if isinstance(shape, torch.Tensor):
        if shape.ndim != 4:
            raise ValueError(f"an initial state must have shape [N, C, H, W], got {tuple(shape.shape)}")
        if not bool(torch.isfinite(shape).all()):
            raise ValueError("the initial state holds NaN or inf")
        return None, shape.to(dtype=dtype, device=device if device is not None else shape.device).clone()
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be [N, C, H, W] (or an initial state tensor), got {shape!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape must be [N, C, H, W] with positive sizes, got {shape}")
    return shape, None


def _draw(fn, shape, generator, dtype, device):
    """``fn(shape)`` from one generator, or sample by sample from a sequence of generators (one per sample: the
    draws of sample i then depend only on its own generator, not on the batch it is drawn in)."""
    if isinstance(generator, list | tuple):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators given for a batch of {shape[0]} samples")
        return torch.stack([fn(shape[1:], generator=g, dtype=dtype, device=device) for g in generator])
    return fn(shape, generator=generator, dtype=dtype, device=device)


def randn(shape, generator, dtype, device):
    """Standard normal draws from one generator or one per sample (see :func:`_draw`)."""
    return _draw(torch.randn, shape, generator, dtype, device)


def prior(shape, sigma: float, generator, dtype, device, noise=None) -> torch.Tensor:
    """x_T = σ·ξ, or σ·M⁻¹ξ with ``noise`` the preconditioner's noise transform M⁻¹ (Eq. 11: the released prior), ξ
    from :func:`randn`: every sampler's first draw."""
    xi = randn(shape, generator, dtype, device)
    return (xi if noise is None else noise(xi)) * sigma


class FiniteCheck:
    """Checks a state for NaN/inf every ``every`` iterations (and at the end) instead of every iteration,
    so a GPU run is not synchronised with the host at each step. ``every=None``: every iteration on the
    CPU, every 50 elsewhere."""

    def __init__(self, every: int | None, device, what: str):
        if every is None:
            every = 1 if torch.device(device).type == "cpu" else 50
        check_positive_int(every, "check_every")
        self.every, self.what, self.last_ok = int(every), what, -1

    def __call__(self, x: torch.Tensor, i: int, sigma: float, final: bool = False) -> None:
        if not final and (i + 1) % self.every:
            return
        if not bool(torch.isfinite(x).all()):
            span = f"iteration {i}" if i - self.last_ok <= 1 else f"iterations {self.last_ok + 1}…{i}"
            raise FloatingPointError(
                f"non-finite values in {self.what} at {span} (sigma = {sigma:.6g}); the step sizes are "
                "probably too large for this schedule or the score model returned NaN/inf"
            )
        self.last_ok = i


def operators(preconditioner: Preconditioner | None, shape):
    """(drift, noise): the maps d ↦ M⁻¹M⁻ᵀd and ξ ↦ M⁻¹ξ of Eq. 11 for ``preconditioner`` at ``shape`` (identities
    for None)."""
    if preconditioner is None:
        return (lambda v: v), (lambda v: v)
    if not isinstance(preconditioner, Preconditioner):
        raise TypeError(f"preconditioner must be a pds.Preconditioner or None, got {type(preconditioner).__name__}")
    preconditioner.check_shape(shape[1:])
    return preconditioner.drift, preconditioner.noise


def checked_score(score: Callable) -> Callable:
    """``score`` whose first output is checked: a tensor of the input's shape (∇log p(x), one value per pixel), else
    a ValueError naming both shapes, instead of a broadcasting error deep inside a sampler step."""
    if not callable(score):
        raise TypeError(f"the score model must be callable as score(x, sigma), got {type(score).__name__}")
    checked = False

    def call(x, sigma):
        nonlocal checked
        out = score(x, sigma)
        if not checked:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            if got != tuple(x.shape):
                raise ValueError(f"the score model returned {got} for an input of shape {tuple(x.shape)}: "
                                 "score(x, sigma) must return ∇log p(x), a tensor of x's shape [N, C, H, W]")
            checked = True
        return out

    return call


def _norms(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=-1)


def check_schedule(schedule) -> VESchedule:
    """``schedule`` if it is a :class:`pds.schedules.VESchedule`, else a TypeError that says how to make one (the
    samplers before issue 28 took sigma_min, sigma_max, num_scales where the schedule now goes)."""
    if not isinstance(schedule, VESchedule):
        raise TypeError(f"the PC samplers take a schedule, got {type(schedule).__name__} {schedule!r}: pass "
                        "pds.schedules.ve_schedule(sigma_min, sigma_max, num_scales, iterations=T), then snr=…")
    return schedule


def _corrector_rule(corrector, snr: float, n: int) -> Callable:
    """The corrector's step ε as a function of (i, g, η): from the batch's mean norms (released), each sample's own
    norms, or given per iteration (a sequence of ``n`` numbers, e.g. :func:`pds.exact.pc_exact`'s)."""
    if not (math.isfinite(snr) and snr >= 0):
        raise ValueError(f"snr must be a finite number >= 0 (the corrector's signal-to-noise ratio), got {snr}")
    if corrector == "batch":
        return lambda i, g, eta: 2.0 * (snr * _norms(eta).mean() / _norms(g).mean()) ** 2
    if corrector == "sample":
        return lambda i, g, eta: (2.0 * (snr * _norms(eta) / _norms(g)) ** 2).view(-1, 1, 1, 1)
    if isinstance(corrector, str) or not isinstance(corrector, Sequence | torch.Tensor | np.ndarray):
        raise ValueError(f"corrector must be 'batch', 'sample' or {n} step sizes, got {corrector!r}")
    steps = [float(e) for e in corrector]
    if len(steps) != n or not all(math.isfinite(e) and e >= 0 for e in steps):
        raise ValueError(f"corrector step sizes must be {n} finite numbers >= 0, got {len(steps)}")
    return lambda i, g, eta: torch.as_tensor(steps[i], dtype=g.dtype, device=g.device)


# -- the VE predictor-corrector sampler -------------------------------------------------------
@register("pc", "pc", per_step=2)
@torch.no_grad()
def pc_sampler(score: Callable, shape, schedule: VESchedule, *, snr: float,
               preconditioner: Preconditioner | None = None, predictor: Preconditioner | None = None,
               skew: Callable | None = None, denoise: bool = True, corrector="batch",
               generator: torch.Generator | None = None, device=None, dtype=torch.float32):
    """The VE SDE predictor-corrector sampler as the released PDS code runs it (score_sde's NCSN++ sampler with
    Alg. 1's preconditioning), for the ``schedule`` of :func:`pds.schedules.ve_schedule` (N iterations).

    Per iteration i, with g = M⁻¹M⁻ᵀ s(x, σ_i) (Eq. 11) and η = M⁻¹ξ:

    * corrector: x̄ = x + ε g; x = x̄ + √(2ε) η, with ε = 2·(snr·‖η‖/‖g‖)², the norms averaged over the batch as
      released (``corrector="batch"``), each sample's own (``"sample"``: what the released code does at batch size
      1, so that a sample does not depend on its batch) or ε_i given (N numbers, as :mod:`pds.exact` computes them);
    * predictor: G² = σ_j² − σ_{j−1}²; x̄ = x + M⁻¹M⁻ᵀ(G² s(x, σ_i)); x = x̄ + G·M⁻¹ξ (``predictor``: another
      preconditioner for this noise, as :func:`pds.modern.pc_kept` takes).

    ``skew``: the solenoidal term ω·S of Eq. 7 (:func:`pds.solenoidal.skew_term`), added to both drifts with their
    step factor (ε·ω·S[s] beside ε·g, after ε is chosen; G²·ω·S[s] in the predictor). The prior is x_T =
    σ_max·M⁻¹ξ; ``shape`` may be an initial state x_T instead. Random draws, in order: the prior ξ, then per
    iteration the corrector ξ and the predictor ξ (``generator``: one, or one per sample). Returns (x̄ of the last
    step if ``denoise`` else x, nfe = 2N). NaN/inf stops the run (checked every iteration on the CPU, every 50
    elsewhere, so that a GPU is not synchronised per step).
    """
    schedule, (shp, x) = check_schedule(schedule), initial_state(shape, dtype, device)
    drift, noise = operators(preconditioner, shp or tuple(x.shape))
    noise_pred = noise if predictor is None else operators(predictor, shp or tuple(x.shape))[1]
    step_size, score = _corrector_rule(corrector, snr, schedule.n), checked_score(score)
    if x is None:
        x = prior(shp, schedule.sigma_max, generator, dtype, device, noise)
    shp, dev = tuple(x.shape), x.device
    sigmas, gs, g2s = schedule.host()
    finite = FiniteCheck(None, dev, "the PC sampler's state")
    for i in tqdm(range(schedule.n), disable=None, desc="PC sampler", leave=False):
        grad = score(x, sigmas[i])  # corrector (Langevin)
        g = drift(grad)
        eta = noise(randn(shp, generator, dtype, dev))
        eps = step_size(i, g, eta)
        if skew is not None:
            g = g + skew(grad)
        x_mean = x + eps * g
        x = x_mean + torch.sqrt(eps * 2.0) * eta
        grad = score(x, sigmas[i])  # predictor (reverse diffusion)
        step = drift(g2s[i] * grad) if skew is None else drift(g2s[i] * grad) + g2s[i] * skew(grad)
        x_mean = x + step
        x = x_mean + gs[i] * noise_pred(randn(shp, generator, dtype, dev))
        finite(x, i, sigmas[i], final=i == schedule.n - 1)
    return (x_mean if denoise else x), 2 * schedule.n


# -- annealed Langevin dynamics (NCSN / NCSNv2) ------------------------------------------------
@register("annealed_langevin", "langevin", per_step=1)
@torch.no_grad()
def annealed_langevin(score: Callable, shape, ladder: LangevinLadder, *,
                      preconditioner: Preconditioner | None = None, skew: Callable | None = None,
                      denoise: bool = False, init: str = "uniform", generator: torch.Generator | None = None,
                      device=None, dtype=torch.float32, progress: bool = False, check_every: int | None = None):
    """Annealed Langevin dynamics of NCSN (v1) and NCSNv2 with PDS (Alg. 1).

    For each level c of the ``ladder`` (:class:`pds.schedules.LangevinLadder`: σ_1 > … > σ_L, n_c steps at level c)
    and each of its steps: step size α_c = step_lr·(σ_c/σ_L)², x ← x + α_c·M⁻¹M⁻ᵀ s(x, σ_c) + √(2α_c)·η with
    η = M⁻¹ξ (shorter ladders: :meth:`~pds.schedules.LangevinLadder.shorten`). ``denoise`` (NCSNv2) ends with
    x ← x + σ_L²·s(x, σ_L), not preconditioned (it is Tweedie's formula). ``init``: "uniform" (U[0, 1],
    NCSN/NCSNv2) or "gaussian" (σ_1·M⁻¹ξ); ``shape`` may be an initial state instead. Random draws, in order: the
    initial sample, then one ξ per step (``generator``: one, or one per sample). Returns (x, nfe = total steps
    (+1 with ``denoise``)). ``skew``: the solenoidal term ω·S (:func:`pds.solenoidal.skew_term`), x ← x + α_c·(M⁻¹M⁻ᵀ
    + ω·S) s(x, σ_c) + ….
    """
    if not isinstance(ladder, LangevinLadder):
        raise TypeError(f"annealed_langevin takes a pds.schedules.LangevinLadder, got {type(ladder).__name__}: pass "
                        "LangevinLadder(sigmas, n_steps_each, step_lr)")
    sig, steps = ladder.sigmas, ladder.n_steps
    if init not in ("uniform", "gaussian"):
        raise ValueError(f"init must be 'uniform' or 'gaussian', got {init!r}")
    score = checked_score(score)
    shp, x = initial_state(shape, dtype, device)
    drift, noise = operators(preconditioner, shp or tuple(x.shape))
    if x is None:
        if init == "uniform":
            x = _draw(torch.rand, shp, generator, dtype, device)  # U[0, 1)
        else:
            x = prior(shp, float(sig[0]), generator, dtype, device, noise)
    shp, dev = tuple(x.shape), x.device
    finite = FiniteCheck(check_every, dev, "a Langevin step")
    nfe, total = 0, sum(steps)
    bar = tqdm(total=total, disable=not progress, desc="annealed Langevin", leave=False)
    for sigma, n_c, step_size in zip(sig.tolist(), steps, ladder.step_sizes(), strict=True):
        noise_scale = math.sqrt(2.0 * step_size)
        for _ in range(n_c):
            eta = noise(randn(shp, generator, dtype, dev))
            grad = score(x, sigma)
            step = drift(grad)
            if skew is not None:
                step = step + skew(grad)
            x = x + step_size * step + noise_scale * eta
            finite(x, nfe, sigma, final=nfe == total - 1)
            nfe += 1
            bar.update(1)
    bar.close()
    if denoise:
        last = float(sig[-1])
        x = x + last**2 * score(x, last)
        nfe += 1
        finite(x, nfe - 1, last, final=True)
    return x, nfe
