"""Exact results of :mod:`pds.exact`, computed once and found again by what they depend on (notebooks 03, 10, 12).

The exact W2 of a sampler on a 1024² Gaussian target takes seconds per run (a quarter of a million frequency groups
for 2 000 iterations), and the notebooks ask for hundreds of them — every length of every method, bisections for the
fewest NFE. :class:`ExactResults` keeps each in a :class:`pds.lab.store.Store`, described by

* the target (:func:`pds.exact.optimal.target_fingerprint`: its mean and spectrum, to 1e-4),
* the preconditioner (its frequency gain, to 1e-6: a filter estimated from float32 data differs in its last bits
  between CPUs) or none,
* the sampler settings and options, and
* :func:`behaviour`: what :mod:`pds.exact` computes on a canonical tiny target (every sampler and option used here,
  in float64; a numerical change of the recursions changes it beyond tolerance and the results are computed anew),

so that the default profile reads the shipped results on any machine (``data/results/exact/default``) and a new
setting is computed and kept (``runs/exact/<profile>``). What is kept of a PC run is :class:`ExactSummary`: W2, its
relative form, KL, NFE and the radial profiles of :meth:`pds.exact.ExactResult.radial`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch

from pds.exact import BUDGET_SAMPLERS, pc_exact, w2_within
from pds.exact.mechanism import best_scalar
from pds.exact.optimal import target_fingerprint
from pds.fingerprint import DATA_RTOL, Approx, Fingerprint, fingerprint
from pds.lab.store import Store
from pds.precondition import Preconditioner
from pds.samplers import Settings
from pds.scores import StationaryGaussianScore

__all__ = ["ExactResults", "ExactSummary", "behaviour", "BINS"]

BINS = 48  # rings of the radial profiles kept with a PC run


@dataclass(frozen=True)
class ExactSummary:
    """What is kept of one exact PC run: ``w2``, ``w2_relative``, ``kl``, ``nfe`` and, per ring of |k|, ``radius``,
    ``ratio`` (mean v/s) and ``w2_squared`` (the ring's part of W2²; :meth:`pds.exact.ExactResult.radial`)."""

    w2: float
    w2_relative: float
    kl: float
    nfe: int
    radius: tuple
    ratio: tuple
    w2_squared: tuple

    @classmethod
    def of(cls, result) -> ExactSummary:
        rings = result.radial(BINS)
        return cls(result.w2, result.w2_relative, result.kl, int(result.nfe),
                   *(tuple(rings[k]) for k in ("radius", "ratio", "w2_squared")))


def _settings(settings) -> dict:
    keys = ("sigma_min", "sigma_max", "levels", "snr")
    return {k: float(getattr(settings, k)) if k != "levels" else int(settings.levels) for k in keys}


@functools.cache
def behaviour() -> Fingerprint:
    """What :mod:`pds.exact` computes, on a canonical tiny target (8 × 6, two channels, fixed images) with a fixed
    statistics filter: :func:`pds.exact.w2_within` of every budget sampler at two budgets and :func:`pds.exact.pc_exact`
    with the options the notebooks use (priors, predictors, denoising), in float64."""
    x = 0.5 * torch.rand(24, 2, 8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.25
    target = StationaryGaussianScore.from_images(x)
    pre = Preconditioner(freq=torch.log1p(target.expected_power()), alpha=5.0)

    settings, parts = Settings(0.01, 3.0, 30, snr=0.16), []
    for sampler in BUDGET_SAMPLERS:
        parts += [w2_within(target, settings, sampler, nfe, pre) for nfe in (8, 21)]
    for options in ({}, {"denoise": False}, {"prior": "vanilla", "predictor": "kept"}, {"predictor": "vanilla"}):
        r = pc_exact(target, 0.01, 3.0, 30, 0.16, iterations=7, preconditioner=pre, **options)
        parts += [r.var, r.delta.abs(), *(torch.tensor(v, dtype=torch.float64) for v in r.radial(3).values())]
    return fingerprint("pds.exact", *parts)  # every number within its tolerance: lists would be hashed bit for bit


def _options(options: dict) -> dict:
    """pc_exact's options as a description holds them: given corrector steps (computed numbers, whose last bits differ
    between CPUs) by their fingerprint within 1e-9, the others as they are."""
    out = dict(sorted(options.items()))
    if out.get("steps") is not None:
        out["steps"] = fingerprint("corrector steps", Approx(torch.tensor(out["steps"], dtype=torch.float64), 1e-9))
    return out


class ExactResults:
    """Exact results kept in ``folder`` (``shipped``: a read-only copy consulted too); see the module docstring."""

    def __init__(self, folder, shipped=None):
        self.store = Store(folder, shipped=shipped, name="exact")
        self._fingerprints: dict = {}  # id(object) -> (object, fingerprint): targets and preconditioners

    def _fingerprint(self, obj, make) -> Fingerprint:
        if id(obj) not in self._fingerprints:
            self._fingerprints[id(obj)] = (obj, make(obj))  # the object kept alive, so that its id is not reused
        return self._fingerprints[id(obj)][1]

    def _described(self, target, preconditioner, **settings) -> dict:
        if preconditioner is not None and not isinstance(preconditioner, Preconditioner):
            raise TypeError(f"preconditioner must be a pds.Preconditioner or None, got {type(preconditioner).__name__}")
        pre = None if preconditioner is None else self._fingerprint(
            preconditioner, lambda p: fingerprint("frequency gain", Approx(p.freq_gain, DATA_RTOL),
                                                  p.space_gain is not None))
        return {"code": behaviour(), "target": self._fingerprint(target, target_fingerprint), "preconditioner": pre,
                **settings}

    def within(self, target: StationaryGaussianScore, settings, sampler: str, nfe: int,
               preconditioner: Preconditioner | None = None) -> float:
        """:func:`pds.exact.w2_within` (the relative W2 of a budget sampler within ``nfe`` evaluations), kept."""
        desc = self._described(target, preconditioner if BUDGET_SAMPLERS.get(sampler, (None, False))[1] else None,
                               computation="w2_within", settings=_settings(settings), sampler=sampler, nfe=int(nfe))
        row = self.store.get_or_compute(desc, lambda: {"w2_relative": w2_within(target, settings, sampler, nfe,
                                                                                preconditioner)})
        return float(row["w2_relative"])

    def pc(self, target: StationaryGaussianScore, sigma_min: float, sigma_max: float, num_scales: int, snr: float, *,
           iterations: int, preconditioner: Preconditioner | None = None, **options) -> ExactSummary:
        """:func:`pds.exact.pc_exact` in ``iterations`` iterations (``options``: its ``denoise``, ``prior``,
        ``predictor``), kept as an :class:`ExactSummary`."""
        settings = {"sigma_min": float(sigma_min), "sigma_max": float(sigma_max), "levels": int(num_scales),
                    "snr": float(snr)}
        desc = self._described(target, preconditioner, computation="pc_exact", settings=settings,
                               iterations=int(iterations), options=_options(options), bins=BINS)
        row = self.store.get_or_compute(desc, lambda: asdict(ExactSummary.of(pc_exact(
            target, sigma_min, sigma_max, num_scales, snr, iterations=iterations, preconditioner=preconditioner,
            **options))))
        return ExactSummary(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()
                               if k in ExactSummary.__dataclass_fields__})

    def best_scalar(self, target: StationaryGaussianScore, settings, iterations: int,
                    bounds=(0.5, 4.0)) -> tuple[float, float]:
        """:func:`pds.exact.mechanism.best_scalar` (the single drift gain with the least exact W2 of the PC sampler in
        ``iterations`` iterations, and that W2), kept."""
        desc = self._described(target, None, computation="best_scalar", settings=_settings(settings),
                               iterations=int(iterations), bounds=[float(b) for b in bounds])
        row = self.store.get_or_compute(desc, lambda: dict(zip(("p", "w2_relative"), best_scalar(
            target, settings, iterations, bounds), strict=True)))
        return float(row["p"]), float(row["w2_relative"])

    def ship(self, dst) -> int:
        return self.store.ship(dst)
