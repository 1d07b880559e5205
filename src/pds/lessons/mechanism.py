"""Notebook 14's laboratory: why PDS works, on the Gaussian targets of notebooks 03, 10 and 12 (:func:`targets`,
with the paper's settings, :data:`SETTINGS`) and on samples: the filters compared (:func:`methods`), the prediction
of section 5 (:func:`rule_gain`), W2 split over rings of |k| (:func:`rings_table`) and the power spectrum of samples
over the data's (:func:`power_ratio`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from pds.configs import experiment
from pds.exact.mechanism import freezing_gain, scalar_preconditioner, step_ratio
from pds.exact.optimal import Optimum, target_fingerprint
from pds.filters import parametric_preconditioner
from pds.fourier import power_spectrum, radial_profile
from pds.lab.data import natural_image_crops
from pds.lab.optima import OptimumStore
from pds.precondition import Preconditioner
from pds.scores import StationaryGaussianScore, fit_power_law, power_law_field

__all__ = ["SETTINGS", "targets", "methods", "paper_R", "rule_gain", "drift_gain", "optimum_gain",
           "rings_table", "power_ratio"]

SETTINGS = {16: experiment("cifar10_ncsnpp"), 32: experiment("cifar10_ncsnpp"), 256: experiment("bedroom_ncsnpp"),
            1024: experiment("ffhq_ncsnpp")}


def targets(sizes) -> dict[int, StationaryGaussianScore]:
    """The Gaussian targets of notebooks 10 and 12: fitted to 300 photograph crops (seed 0) at sizes ≤ 256, the
    power-law field fitted at 256² for 1024²."""
    out = {size: StationaryGaussianScore.from_images(natural_image_crops(300, size, seed=0).double())
           for size in sizes if size <= 256}
    if 1024 in sizes:
        base = out.get(256) or StationaryGaussianScore.from_images(natural_image_crops(300, 256, seed=0).double())
        out[1024] = power_law_field(fit_power_law(base), 1024, base.mean.mean((1, 2)))
    return {size: out[size] for size in sizes}


def drift_gain(pre: Preconditioner | None, shape) -> torch.Tensor:
    """p_k, the drift gain of a preconditioner (1 for none) on the full grid [C, H, W]."""
    if pre is None or pre.freq_gain is None:
        return torch.ones(shape, dtype=torch.float64)
    return pre.freq_gain.double().expand(shape) ** 2


def paper_R(target: StationaryGaussianScore, alpha: float = 5.0) -> Preconditioner:
    """The paper's statistics filter for a Gaussian target: R = log(E|F x|² + 1) (Eq. 14, exactly: the target's own
    expected power), normalised by ``alpha`` as released."""
    return Preconditioner(freq=torch.log1p(target.expected_power()), alpha=alpha)


def rule_gain(target: StationaryGaussianScore, settings, iterations: int) -> torch.Tensor:
    """The prediction of section 5, per frequency (drift gain p_k on [C, H, W]; no parameter fitted):

        p_k = p* (1 − w_k) + q_k w_k,   w_k = σ_min² / (s_k + σ_min²),   q_k = (1 − √(1 − w_k)) / w_k,

    p* (:func:`pds.exact.mechanism.freezing_gain` of the ladder's r²) for a frequency that freezes during the run
    (s_k ≫ σ_min²: its variance is set where σ² = s_k) and q_k for one that is still noise when the sampler stops: the
    last, noiseless predictor step (Tweedie's denoising, G² = σ_min²) maps u to (1 − p w)² u / (1 − w), which keeps
    u = 1 for p = q. Where 2r² < 1 (too few steps for an exact p*), p* is the gain that brings the fixed point (∗)
    closest to 1 at the freezing step (``freezing_gain(r2, closest=True)``)."""
    p_star = freezing_gain(step_ratio(settings.sigma_min, settings.sigma_max, iterations), closest=True)
    w = settings.sigma_min**2 / (target.spectrum + settings.sigma_min**2)
    q = (1.0 - torch.sqrt(1.0 - w)) / w
    return p_star * (1.0 - w) + q * w


def optimum_gain(store: OptimumStore, target: StationaryGaussianScore, settings, nfe: int, knots: int = 24,
                 max_iter: int = 150) -> Preconditioner | None:
    """Notebook 12's optimum of the released PC sampler at ``nfe`` evaluations on ``target`` (its search's
    description), as a preconditioner; None where notebook 12 did not search that budget."""
    desc = {"target": target_fingerprint(target), "settings": settings.name, "sampler": "pc", "nfe": int(nfe),
            "gains": False, "knots": knots, "max_iter": max_iter, "start": "paper R, alpha 5"}
    row = store.find(desc)
    if row is None:
        return None

    return Optimum.from_dict(row["optimum"]).filter.preconditioner(tuple(target.shape))


def methods(size: int, target: StationaryGaussianScore, iterations: int, store: OptimumStore | None = None,
            best: float | None = None) -> dict[str, Preconditioner | None]:
    """The filters compared at one size and length: vanilla, the paper's R (α = 5, 20), the parametric filter,
    notebook 12's optimum where it was searched, R's scalar control (its mean drift gain), the best scalar (``best``,
    when it is known at this length), the freezing gain p* and the rule of section 5 (:func:`rule_gain`)."""
    shape = tuple(target.shape)
    out: dict = {"vanilla": None, "R, α=5": paper_R(target, 5.0), "R, α=20": paper_R(target, 20.0),
                 "parametric (0.2H, 1.6)": parametric_preconditioner(target.shape, 0.2, 1.6, alpha=5.0)}
    opt = None if store is None else optimum_gain(store, target, SETTINGS[size], 2 * iterations)
    if opt is not None:
        out["optimum (notebook 12)"] = opt
    out["R's scalar control"] = scalar_preconditioner(shape, float(drift_gain(out["R, α=5"], shape).mean()))
    if best is not None:
        out["best scalar"] = scalar_preconditioner(shape, best)
    r2 = step_ratio(SETTINGS[size].sigma_min, SETTINGS[size].sigma_max, iterations)
    out["freezing gain p*"] = scalar_preconditioner(shape, freezing_gain(r2, closest=True))
    out["rule (section 5)"] = Preconditioner(freq=rule_gain(target, SETTINGS[size], iterations).rsqrt(), alpha=None)
    return out


def rings_table(summaries: dict) -> pd.DataFrame:
    """One row per (key, ring) of ``summaries`` {key tuple: ExactSummary}: the ring's radius, mean v/s, part of W2²
    and its share of W2², with the key's fields (``size``, ``method``, ``T``) as columns."""
    rows = []
    for (size, method, T), sm in summaries.items():
        total = sum(sm.w2_squared)
        for r, ratio, part in zip(sm.radius, sm.ratio, sm.w2_squared, strict=True):
            rows.append({"size": size, "method": method, "T": T, "radius": r, "frequency": r / size,
                         "v/s": ratio, "W2² part": part, "share": part / total if total else math.nan,
                         "W2 (relative)": sm.w2_relative})
    return pd.DataFrame(rows)


def power_ratio(samples: torch.Tensor, data: torch.Tensor, bins: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(radius, ratio): the mean power spectrum E|F[x]|² of ``samples`` over that of ``data`` (images [N, C, H, W] in
    [0, 1], the same size) per ring of |k| — above 1 too much power at those frequencies (noise), below 1 too little
    (missing detail)."""
    if samples.shape[1:] != data.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape[1:])} and data {tuple(data.shape[1:])} differ in shape")
    h, w = samples.shape[-2:]
    half = w // 2 + 1
    ps = power_spectrum(samples.double()).mean(0)[..., :half]
    pd_ = power_spectrum(data.double()).mean(0)[..., :half]
    radius, num = radial_profile(ps, h, w, bins=bins)
    _, den = radial_profile(pd_, h, w, bins=bins)
    return radius, num / den
