"""Notebook 12's laboratory around :mod:`pds.exact.optimal` (its verdicts are written in the notebook): the step
from Gaussians to real data — the filter optimised on the Gaussian fitted to a set's images, against the paper's R,
vanilla and EDM's churn with PDS at the same NFE, on a model of that set (an exact score or a network), each run
found in the result cache or drawn. And notebook 13's prediction (issue 31, item 4): :func:`error_aware`, the same
optimum with a network's measured score error in the recursion, on that network."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pds.exact.optimal import Frequencies, RadialFilter, optimise, sampler_w2, target_fingerprint
from pds.fingerprint import Approx, fingerprint
from pds.lab.cache import ResultCache
from pds.lab.experiments import Method, SmallModel, run_seeds, spread
from pds.lab.image_sets import measures
from pds.lab.optima import OptimumStore
from pds.lessons.exact_claims import STATISTICS
from pds.lessons.network_like import error_model
from pds.precondition import Preconditioner
from pds.scores import StationaryGaussianScore

__all__ = ["carry_over", "carry_table", "CARRY_METHODS", "own_settings", "error_aware", "ERROR_METHODS"]

# the methods compared at a budget of ``nfe`` evaluations: (Method, its steps)
CARRY_METHODS = ("vanilla", "paper's R", "optimised R", "edm_churn + PDS (paper's R)")


def carry_over(store: OptimumStore, cache: ResultCache, model: SmallModel, metric, settings, n: int,
               images: torch.Tensor, nfe: int, seeds, start_of: Callable[[Preconditioner, tuple], RadialFilter],
               knots: int, max_iter: int, filter_path: Path, device="cpu") -> tuple[dict, tuple[float, float]]:
    """The released PC sampler's filter optimised for ``nfe`` on the Gaussian fitted to ``images`` (from ``store``, or
    searched from ``start_of``(the paper's R, shape)), saved to ``filter_path``; then ``n`` samples of ``model`` per
    seed with each of :data:`CARRY_METHODS` at ``nfe`` evaluations, scored by ``metric`` (from ``cache``, or drawn).
    Returns ({method: its rows, one per seed}, (W2 of the start, W2 of the optimum) on the Gaussian)."""
    g = StationaryGaussianScore.from_images(images.double())
    pre_g = Preconditioner(freq=torch.log1p(g.expected_power()), alpha=5.0)
    desc = {"target": target_fingerprint(g), "settings": settings.name, "sampler": "pc", "nfe": nfe, "gains": False,
            "knots": knots, "max_iter": max_iter, "start": "paper R, alpha 5"}
    opt = store.get_or_run(desc, functools.partial(optimise, Frequencies(g), settings, "pc", nfe,
                                                   start_of(pre_g, g.shape), max_iter=max_iter))
    path = store.save_filter(desc, g.shape, filter_path)
    methods = dict(zip(CARRY_METHODS, ((Method(), nfe // 2), (STATISTICS, nfe // 2),
                                       (Method("file", path=str(path), alpha=None), nfe // 2),
                                       (dataclasses.replace(STATISTICS, sampler="edm_churn"), (nfe + 1) // 2)),
                       strict=True))
    runs = {name: run_seeds(cache, model, m, T, n, seeds, metric, device=device) for name, (m, T) in methods.items()}
    return runs, (opt.w2_start, opt.w2)


def carry_table(carry: dict, carry_w2: dict) -> pd.DataFrame:
    """One row per (target, budget, method) of :func:`carry_over`'s runs: the value's mean and spread over seeds, the
    Gaussian W2 of the start and of the optimum, and for the exact scores the landed fraction and distance."""
    out = []
    for (label, nfe, name), rows in carry.items():
        diverged = any(r.get("diverged") for r in rows)  # a diverged seed: the method has no value (NaN)
        mean, std = (float("nan"),) * 2 if diverged else spread(r["value"] for r in rows)[:2]
        w_start, w_opt = carry_w2[(label, nfe)]
        line = {"target": label, "NFE budget": nfe, "method": name, "NFE": rows[0]["nfe"],
                "value mean": mean, "value std": std,
                "Gaussian W2 (R fit → optimum)": f"{w_start:.3g} → {w_opt:.3g}"}
        if label != "trained":
            m = pd.DataFrame([measures(r) for r in rows])
            line.update(landed=m["landed"].mean(), distance=m["distance"].mean())
        out.append(line)
    return pd.DataFrame(out)


ERROR_METHODS = ("vanilla", "paper's R", "optimised R", "optimised R, error-aware")


def own_settings(model: SmallModel):
    """``model``'s paper experiment with the model's own σ range and number of scales (a network trained here may use
    a smaller σ_max than the paper's), named after the model: the settings its PC sampler runs with."""
    cfg = model.config
    return dataclasses.replace(model.experiment, name=f"{model.name} (own settings)", sigma_min=float(cfg["sigma_min"]),
                               sigma_max=float(cfg["sigma_max"]), levels=int(cfg["num_scales"]))


def error_aware(store: OptimumStore, cache: ResultCache, model: SmallModel, metric, n: int, images: torch.Tensor,
                nfe: int, seeds, measured: dict, start_of: Callable[[Preconditioner, tuple], RadialFilter], knots: int,
                max_iter: int, folder: Path, device="cpu") -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """A filter chosen from a network's measured error spectrum, tried on the network (issue 31, item 4).

    On the Gaussian fitted to ``images``, with ``model``'s own PC settings (:func:`own_settings`), the released PC
    sampler's filter is optimised for ``nfe`` evaluations twice from ``start_of`` (the paper's R): as in notebook 12,
    and with the score error of :func:`pds.lessons.network_like.error_model` (``measured``: {σ: (ring radii, power)} of
    :func:`pds.lessons.network_like.error_spectrum`) in the exact recursion (both in ``store``; files in ``folder``).
    Then ``n`` samples of ``model`` per seed with each of :data:`ERROR_METHODS` at ``nfe`` evaluations, scored by
    ``metric`` (from ``cache`` or drawn). Returns ({method: rows, one per seed}, a table of each filter's W2 on the
    Gaussian without and with the error: what the error model predicts, and the filters and the error as radial
    profiles: the drift gain p of each method and, at a few σ, the error's variance over the exact score's,
    E·(s + σ²) — above 1 the error is the larger part of what the network returns at that frequency)."""
    settings = own_settings(model)
    g = StationaryGaussianScore.from_images(images.double())
    freqs = Frequencies(g)
    err = error_model(measured, g.shape[-2:], freqs.radius)
    start = start_of(Preconditioner(freq=torch.log1p(g.expected_power()), alpha=5.0), g.shape)
    levels = sorted(measured)
    error_fp = fingerprint("score error spectrum", [float(s) for s in levels],
                           *[Approx(np.asarray(measured[s][1], dtype=np.float64), 1e-3) for s in levels],
                           *[np.asarray(measured[s][0], dtype=np.float64) for s in levels])
    settings_of = {k: getattr(settings, k) for k in ("sigma_min", "sigma_max", "levels", "snr")}
    filters, paths = {"vanilla": torch.ones_like(freqs.s), "paper's R": start.p(freqs.radius)}, {}
    for name, with_error in (("optimised R", False), ("optimised R, error-aware", True)):
        desc = {"target": target_fingerprint(g), "settings": settings_of, "sampler": "pc", "nfe": nfe, "gains": False,
                "knots": knots, "max_iter": max_iter, "start": "paper R, alpha 5",
                "score error": error_fp if with_error else None}
        opt = store.get_or_run(desc, functools.partial(optimise, freqs, settings, "pc", nfe, start, max_iter=max_iter,
                                                       score_error=err if with_error else None))
        filters[name] = opt.filter.p(freqs.radius)
        file = f"{model.name}-{nfe}nfe-{'error-aware' if with_error else 'optimum'}.npz"
        paths[name] = store.save_filter(desc, g.shape, Path(folder) / file)
    with torch.no_grad():
        table = pd.DataFrame([{"method": name,
                               "Gaussian W2": float(sampler_w2(freqs, settings, "pc", nfe, p)[0]),
                               "Gaussian W2 with the network's error": float(
                                   sampler_w2(freqs, settings, "pc", nfe, p, score_error=err)[0])}
                              for name, p in filters.items()])
    order = torch.argsort(freqs.radius, stable=True)
    radius = freqs.radius[order].numpy()
    profiles = pd.concat([pd.DataFrame({"curve": f"p: {name}", "radius": radius, "value": p[order].numpy()})
                          for name, p in filters.items()]
                         + [pd.DataFrame({"curve": f"E·(s + σ²) at σ = {sg:g}", "radius": radius,
                                          "value": (err(sg) * (freqs.s + sg**2))[order].numpy()})
                            for sg in (settings.sigma_min, *levels, settings.sigma_max)])
    methods = {"vanilla": Method(), "paper's R": STATISTICS,
               **{name: Method("file", path=str(path), alpha=None) for name, path in paths.items()}}
    runs = {name: run_seeds(cache, model, m, nfe // 2, n, seeds, metric, device=device) for name, m in methods.items()}
    return runs, table, profiles
