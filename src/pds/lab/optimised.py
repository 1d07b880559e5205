"""Notebook 12's laboratory around :mod:`pds.exact.optimal`: the verdicts of the optimum at each budget, and the step
from Gaussians to real data — the filter optimised on the Gaussian fitted to a set's images, against the paper's R,
vanilla and EDM's churn with PDS at the same NFE, on a model of that set (an exact score or a network), each run
found in the result cache or drawn."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from pds.exact.optimal import Frequencies, OptimumStore, RadialFilter, optimise, target_fingerprint
from pds.lab.cache import ResultCache
from pds.lab.experiments import Method, SmallModel, Verdict, beats, spread
from pds.lab.image_sets import measures
from pds.precondition import Preconditioner
from pds.scores import StationaryGaussianScore

__all__ = ["carry_over", "carry_table", "budget_verdicts", "CARRY_METHODS"]

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
    methods = dict(zip(CARRY_METHODS, ((Method(), nfe // 2), (Method("statistics", alpha=5.0), nfe // 2),
                                       (Method("file", path=str(path), alpha=None), nfe // 2),
                                       (Method("statistics", alpha=5.0, sampler="edm_churn"), (nfe + 1) // 2)),
                       strict=True))
    runs = {name: [cache.run(model, m, T, n, s, metric, device=device) for s in seeds]
            for name, (m, T) in methods.items()}
    return runs, (opt.w2_start, opt.w2)


def carry_table(carry: dict, carry_w2: dict) -> pd.DataFrame:
    """One row per (target, budget, method) of :func:`carry_over`'s runs: the value's mean and spread over seeds, the
    Gaussian W2 of the start and of the optimum, and for the exact scores the landed fraction and distance."""
    out = []
    for (label, nfe, name), rows in carry.items():
        vals = [r["value"] if not r.get("diverged") else float("nan") for r in rows]
        w_start, w_opt = carry_w2[(label, nfe)]
        line = {"target": label, "NFE budget": nfe, "method": name, "NFE": rows[0]["nfe"],
                "value mean": spread(vals)[0], "value std": spread(vals)[1],
                "Gaussian W2 (R fit → optimum)": f"{w_start:.3g} → {w_opt:.3g}"}
        if label != "trained":
            m = pd.DataFrame([measures(r) for r in rows])
            line.update(landed=m["landed"].mean(), distance=m["distance"].mean())
        out.append(line)
    return pd.DataFrame(out)


def budget_verdicts(optima: dict, variants, budgets: dict, others: Callable[[int, int], dict], ref: dict,
                    full_nfe: dict, max_iter: int, moonshot=None) -> dict[str, Verdict]:
    """The verdicts of the optimum at each size and budget (``optima[(size, nfe, variant)]``) against the paper's R in
    the released PC sampler, the best of ``others(size, nfe)`` (each sampler's W2 there) and vanilla's full-length W2
    ``ref[size]`` (at ``full_nfe[size]``); with ``moonshot`` = (size, nfe), whether that W2 is reached within nfe."""
    found = {}
    for size, nfes in budgets.items():
        for nfe in nfes:
            pc = optima[(size, nfe, "PC + optimised R")]
            best = min((optima[(size, nfe, name)] for name in variants), key=lambda o: o.w2)
            note, pc_note, other = best.bound_note(max_iter), pc.bound_note(max_iter), others(size, nfe)
            found[f"{size} {nfe} beats R"] = beats(
                [pc.w2], [other["PC + PDS (released)"]], f"{size}² at {nfe} NFE: the optimised filter beats the "
                f"paper's R in the released PC sampler (W2){pc_note}")
            found[f"{size} {nfe} beats best"] = beats(
                [best.w2], [min(other.values())], f"{size}² at {nfe} NFE: the best optimised sampler beats the best of "
                f"notebook 10's ({min(other, key=other.get)}){note}")
            found[f"{size} {nfe} reaches full"] = Verdict(
                f"{size}² at {nfe} NFE: an optimised sampler reaches vanilla PC's full-length W2{note}",
                best.w2 <= ref[size], f"best optimised W2 {best.w2:.4g} vs full length {ref[size]:.4g}",
                {"best": best.w2, "full length": ref[size]})
    if moonshot:
        size, nfe = moonshot
        within = {name: min((optima[(size, n, name)] for n in budgets[size] if n <= nfe), key=lambda o: o.w2)
                  for name in variants}
        best = min(within, key=lambda name: within[name].w2)
        note, w = within[best].bound_note(max_iter), within[best].w2
        found["moonshot"] = Verdict(
            f"{size}²: vanilla PC's full-length W2 ({full_nfe[size]} NFE) is reached within {nfe} NFE by an optimised "
            f"sampler{note}", w <= ref[size], f"best within {nfe} NFE: {best} {w:.4g} vs full length {ref[size]:.4g} "
            f"(ratio {w / ref[size]:.3g})", {"best": w, "full length": ref[size], "ratio": w / ref[size]})
    return found
