"""Notebooks 05, 06 and 11's laboratory: the paper's Table 1 and Fig. 6 on a model — :func:`table1_stand_in` (α
searched on the first seed, then every seed, against vanilla at full length), :func:`parametric_grid` and
:func:`grid_verdicts` (the (r, λ) grid of the parametric filter and Fig. 6's sentences read off it) — on the runs of
:mod:`pds.lab.experiments`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pds.lab.experiments import Method, SmallModel, run_seeds, values
from pds.lab.verdicts import Verdict, beats, matches, spread, summary

__all__ = ["Table1", "table1_stand_in", "parametric_grid", "grid_verdicts"]


@dataclass
class Table1:
    """The Table 1 stand-in on one model (:func:`table1_stand_in`): the rows (T, NFE, method, FD mean and std over
    seeds), the first seed's FD of each α and the α chosen at each T, the values of every run by (T, label) and the
    verdicts by name."""

    rows: list[dict]
    search: dict[int, dict[float, float]]
    alpha: dict[int, float]
    values: dict[tuple[int, str], list[float]]
    verdicts: dict[str, Verdict]


def table1_stand_in(cache, model: SmallModel, score_fn, n: int, seeds, table_T, alphas, full,
                    floor=None, full_T: int | None = None, device=None) -> Table1:
    """Table 1 of the paper on ``model`` (an NCSN++: T predictor-corrector iterations, 2T evaluations): at each T in
    ``table_T``, vanilla and PDS with the statistics filter R (Eq. 14) over ``seeds``, α chosen among ``alphas`` by
    the FD of the first seed alone (a small search in PDS's favour, as a user tuning it would do), against the
    values ``full`` of vanilla at full length (``full_T`` iterations, default the model's). Verdicts, keyed
    ``"beats T"`` (PDS at T beats vanilla at T), ``"matches T"`` (PDS at T matches full length) and ``"vanilla
    matches T"``; ``floor``: the FD of real images at the same n, printed with the first. Every run goes through
    ``cache`` (read when finished, else drawn and stored)."""
    seeds = list(seeds)
    if not seeds or not list(alphas):
        raise ValueError(f"need at least one seed and one α, got seeds={seeds}, alphas={list(alphas)}")
    full_T = model.full_T if full_T is None else full_T

    def fd(method, T, which):
        return values(run_seeds(cache, model, method, T, n, which, score_fn, device=device))

    rows, searched, alpha, vals, verdicts = [], {}, {}, {}, {}
    for T in table_T:
        searched[T] = search = {float(a): fd(Method("statistics", alpha=float(a)), T, seeds[:1])[0] for a in alphas}
        alpha[T] = min(search, key=search.get)
        pds = Method("statistics", alpha=alpha[T])
        for method in (Method(), pds):
            vals[(T, method.label)] = v = fd(method, T, seeds)
            m, s, _ = spread(v)
            rows.append({"T": T, "NFE": 2 * T, "method": method.label, "FD mean": m, "FD std": s})
        van, ours = vals[(T, "vanilla")], vals[(T, pds.label)]
        verdicts[f"beats {T}"] = beats(ours, van, f"PDS (statistics R, α={alpha[T]:g}) at T={T} beats vanilla at "
                                       f"T={T}", floor=floor)
        verdicts[f"matches {T}"] = matches(ours, full, f"PDS (statistics R) at T={T} matches vanilla at T={full_T}")
        verdicts[f"vanilla matches {T}"] = matches(van, full, f"vanilla at T={T} matches vanilla at T={full_T}")
    m, s, _ = spread(full)
    rows.append({"T": full_T, "NFE": 2 * full_T, "method": "vanilla (full length)", "FD mean": m, "FD std": s})
    return Table1(rows, searched, alpha, vals, verdicts)


def parametric_grid(cache, model: SmallModel, T: int, n: int, seed: int, r_values, lam_values, score_fn,
                    device=None) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 6's grid: the parametric filter (literal reading) at every (r, λ), one run of n samples with ``seed`` at
    T iterations each (through ``cache``). Returns two arrays of shape (len(r_values), len(lam_values)): the FD and
    the samples' contrast (mean per-image pixel standard deviation, :func:`pds.lab.metrics.image_statistics`), the
    inputs of :func:`grid_verdicts`."""
    fd = np.zeros((len(r_values), len(lam_values)))
    contrast = np.zeros_like(fd)
    for i, r in enumerate(r_values):
        for j, lam in enumerate(lam_values):
            row = cache.run(model, Method("parametric", r=r, lam=lam), T, n, seed, score_fn, device=device)
            fd[i, j] = row["value"]
            stats = cache.image_stats(row)
            contrast[i, j] = math.nan if stats is None else stats["contrast"]
    return fd, contrast


def grid_verdicts(fd, contrast, r_values, lam_values, vanilla, data_contrast: float, T: int) -> dict[str, Verdict]:
    """Fig. 6's sentences about the parametric filter's (r, λ) grid, as verdicts on one seed's grid at T iterations.

    ``fd``, ``contrast``: arrays of shape (len(r_values), len(lam_values)), the FD and the samples' contrast (mean
    per-image pixel standard deviation) of each cell; ``vanilla``: vanilla's FD over seeds at the same T;
    ``data_contrast``: the data's contrast. A cell is *good* when its FD is below vanilla's mean by more than two of
    vanilla's standard deviations, *like vanilla* when within two, *pale* when its contrast is below the data's.
    The paper: "λ too high or r too low → PDS degrades to the vanilla sampling"; "λ too low or r too high →
    over-suppressing high-frequency signals, pale images"; and where the good cells lie.
    """
    fd, contrast = np.asarray(fd, dtype=np.float64), np.asarray(contrast, dtype=np.float64)
    r = np.repeat(np.asarray(r_values, dtype=np.float64)[:, None], len(lam_values), axis=1)
    lam = np.repeat(np.asarray(lam_values, dtype=np.float64)[None, :], len(r_values), axis=0)
    if fd.shape != r.shape or contrast.shape != r.shape:
        raise ValueError(f"fd {fd.shape} and contrast {contrast.shape} must both have shape {r.shape} "
                         "(len(r_values), len(lam_values))")
    m, s, _ = spread(vanilla)
    good, near, pale = fd < m - 2 * s, np.abs(fd - m) <= 2 * s, contrast < data_contrast

    def cells(mask):
        return ", ".join(f"({a:g}H, {b:g})" for a, b in zip(r[mask], lam[mask], strict=True)) or "none"

    def row(values):
        return [float(f"{v:.3g}") for v in values]

    van = f"vanilla {m:.4g} ± {s:.2g}"
    rel = contrast / data_contrast
    nums = {"r": [float(v) for v in r_values], "lam": [float(v) for v in lam_values], "fd": fd.tolist(),
            "contrast_relative": rel.tolist(), "vanilla": summary(vanilla), "data_contrast": float(data_contrast)}
    found = {
        "grid good side": Verdict(f"T={T}: every grid cell that beats vanilla has λ < 1", bool(good.any() and
                                  (lam[good] < 1).all()), f"{int(good.sum())} of {good.size} good: {cells(good)}"),
        "grid high λ is vanilla": Verdict(f"T={T}: λ too high degrades to vanilla (at the largest λ every r is within "
                                          "vanilla ± 2 std)", bool(near[:, -1].all()),
                                          f"FD at λ = {lam_values[-1]:g}: {row(fd[:, -1])}, {van}"),
        "grid low r is vanilla": Verdict(f"T={T}: r too low degrades to vanilla (at the smallest r every λ is within "
                                         "vanilla ± 2 std)", bool(near[0].all()),
                                         f"FD at r = {r_values[0]:g}H: {row(fd[0])}, {van}"),
        "grid low λ is pale": Verdict(f"T={T}: λ too low gives pale images (at the smallest λ every r has less "
                                      "contrast than the data)", bool(pale[:, 0].all()),
                                      f"contrast / data at λ = {lam_values[0]:g}: {row(rel[:, 0])}"),
        "grid high r is pale": Verdict(f"T={T}: r too high gives pale images (at the largest r every λ has less "
                                       "contrast than the data)", bool(pale[-1].all()),
                                       f"contrast / data at r = {r_values[-1]:g}H: {row(rel[-1])}"),
    }
    return {k: Verdict(v.claim, v.holds, v.detail, nums) for k, v in found.items()}


