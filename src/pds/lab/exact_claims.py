"""Notebook 11's laboratory: the paper's claims (Figs 1, 3, 5, 6, Table 1) as verdicts on runs of a model of a real
image set — the exact score of :mod:`pds.lab.image_sets`, where every departure is the sampler's — and the same
verdicts on a trained network and on the exact score of its own training set, to tell whose a verdict is.

:class:`Runs` holds the runs of one target (each (T, method) over seeds, read from the result cache or drawn); each
``*_verdicts`` function reads the runs its claim needs by the method names of its ``*_METHODS`` table and returns the
verdicts keyed as the notebook's expected verdicts (``notebooks/expected/11_exact_real_scores.json``) name them."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import torch

from pds.lab.cache import ResultCache
from pds.lab.experiments import Method, SmallModel, Table1, Verdict, beats, matches, run_seeds, values
from pds.lab.image_sets import LANDED_RADIUS, covers, measures

__all__ = ["Runs", "landed_all", "FIG3_METHODS", "TABLE1_LOW_METHODS", "CHURN_METHODS", "FIG5_METHODS", "fig1_methods",
           "fig3_verdicts", "fig6_verdicts", "table1_verdicts", "fig1_verdicts", "fig5_verdicts", "twin_verdicts",
           "TWIN_KINDS", "TWINS", "twin_runs", "novelty", "novelty_verdicts",
           "show_nearest"]

# a run with no value (diverged, nothing landed) is the worst
vbeats = functools.partial(beats, nonfinite="worst")
vmatches = functools.partial(matches, nonfinite="worst")

PARAMETRIC = Method("parametric", r=0.2, lam=1.6)  # Fig. 6's filter (0.2H, 1.6), the paper's (literal) reading
PARAMETRIC_DC = Method("parametric", r=0.2, lam=1.6, centre="dc")  # its other reading
STATISTICS = Method("statistics", alpha=5.0)  # R of Eq. 14, estimated from the set
FIG3_METHODS = {"vanilla": Method(), "PDS (0.2H, 1.6) paper": PARAMETRIC,
                "PDS (0.2H, 1.6) dc": PARAMETRIC_DC, "scalar control": Method("flat", r=0.2, lam=1.6),
                "statistics R, α=5": STATISTICS}
TABLE1_LOW_METHODS = {"vanilla": Method(), "statistics R, α=5": STATISTICS, "PDS (0.2H, 1.6) paper": PARAMETRIC,
                      "PDS (0.2H, 1.6) dc": PARAMETRIC_DC}
CHURN_METHODS = {"Heun": Method(sampler="heun"), "EDM churn": Method(sampler="edm_churn"),
                 "EDM churn + PDS": Method("statistics", alpha=5.0, sampler="edm_churn")}
FIG5_METHODS = {"vanilla": Method(), "statistics R, α=5": STATISTICS}


def fig1_methods(filter_file) -> dict[str, Method]:
    """Fig. 1's methods with R and A estimated from the set (a filter file, :func:`statistics_filter_file`)."""
    return {"vanilla": Method(), "R, α=5": Method("file", path=str(filter_file), alpha=5.0),
            "R + A, α=5": Method("file", path=str(filter_file), alpha=5.0, space=True)}


class Runs:
    """The runs of one target — ``model`` scored by ``metric`` with ``n`` samples per seed — by (T, method name): the
    rows of its seeds, each read from ``cache`` or drawn and stored there (:func:`pds.lab.experiments.run_seeds`)."""

    def __init__(self, cache: ResultCache, model: SmallModel, metric, n: int, seeds, device=None):
        self.cache, self.model, self.metric, self.n, self.device = cache, model, metric, n, device
        self.seeds = tuple(seeds)
        self.rows: dict[tuple[int, str], list[dict]] = {}

    def draw(self, T: int, name: str, method: Method, seeds=None) -> list[dict]:
        """The rows of ``method`` at ``T`` over ``seeds`` (default the target's), kept under (T, name)."""
        self.rows[(T, name)] = rows = run_seeds(self.cache, self.model, method, T, self.n,
                                                self.seeds if seeds is None else seeds, self.metric, device=self.device)
        return rows

    def draw_all(self, Ts, methods: dict[str, Method]) -> None:
        """Every method at every T of ``Ts``."""
        for T in Ts:
            for name, method in methods.items():
                self.draw(T, name, method)

    def __getitem__(self, key: tuple[int, str]) -> list[dict]:
        return self.rows[key]

    def __contains__(self, key: tuple[int, str]) -> bool:
        """Whether (T, method name) was drawn."""
        return key in self.rows

    def col(self, T: int, name: str, key: str) -> list[float]:
        """One measure (:func:`pds.lab.image_sets.measures`) of the runs of (T, name), a value per seed."""
        return [measures(r)[key] for r in self.rows[(T, name)]]

    def values(self, T: int, name: str) -> list[float]:
        """The metric's values of the runs of (T, name) as stored (``inf`` where a run diverged)."""
        return values(self.rows[(T, name)])

    def table(self, keys=("value", "landed", "distance", "distinct", "kl", "kl_floor")) -> pd.DataFrame:
        """One line per (T, method): NFE and the mean over seeds of each measure (± std for the primary value)."""
        out = []
        for (T, name), rows in self.rows.items():
            m = pd.DataFrame([measures(r) for r in rows])
            line = {"T": T, "NFE": rows[0]["nfe"], "method": name, **{k: m[k].mean() for k in keys}}
            line["value std"] = m["value"].std(ddof=1) if len(m) > 1 else 0.0
            out.append(line)
        return pd.DataFrame(out)


def landed_all(rows, claim: str, at_least: float = 0.9) -> Verdict:
    """"The samples land on the set": the landed fraction is at least ``at_least`` in every run (seed)."""
    got = [measures(r)["landed"] for r in rows]
    return Verdict(claim, bool(np.all(np.nan_to_num(got) >= at_least)),
                   f"landed fractions {np.round(got, 3).tolist()} (required ≥ {at_least} in every seed)")


def fig3_verdicts(runs: Runs, full_T: int, T: int, T_mid: int, fd_floor) -> dict[str, Verdict]:
    """Fig. 3 on NCSN's annealed Langevin: vanilla at full length (``full_T``) against vanilla and PDS (0.2H, 1.6) at
    ``T``, and the statistics filter at ``T_mid``; ``fd_floor``: the FD of perfect draws at the same n."""
    full, van, pds = runs[(full_T, "vanilla")], runs[(T, "vanilla")], runs[(T, "PDS (0.2H, 1.6) paper")]
    fd = functools.partial(runs.col, key="fd")
    return {
        "A full lands": landed_all(full, f"vanilla at T={full_T} lands on the set"),
        "A full covers": covers(full, f"vanilla at T={full_T} reaches the images like uniform draws (KL of the hits "
                                      "within the floor)"),
        "A full matches floor": vmatches(fd(full_T, "vanilla"), fd_floor,
                                         f"vanilla at T={full_T}: FD within the floor's"),
        "A vanilla lands": landed_all(van, f"vanilla at T={T} lands on the set"),
        "A pds lands": landed_all(pds, f"PDS (0.2H, 1.6) at T={T} lands on the set"),
        "A pds beats vanilla": vbeats(fd(T, "PDS (0.2H, 1.6) paper"), fd(T, "vanilla"),
                                      f"PDS (0.2H, 1.6) at T={T} beats vanilla (FD)", floor=fd_floor),
        "A pds matches full": vmatches(fd(T, "PDS (0.2H, 1.6) paper"), fd(full_T, "vanilla"),
                                       f"PDS (0.2H, 1.6) at T={T} matches vanilla at T={full_T} (FD)"),
        "A stats beats vanilla mid": vbeats(fd(T_mid, "statistics R, α=5"), fd(T_mid, "vanilla"),
                                            f"the statistics filter (α=5) at T={T_mid} beats vanilla (FD)"),
        "A vanilla mid covers better": vbeats(runs.col(T_mid, "vanilla", "kl"), runs.col(full_T, "vanilla", "kl"),
                                              f"vanilla at T={T_mid} reaches the images more evenly than at "
                                              f"T={full_T} (KL of the hits)"),
    }


def fig6_verdicts(runs: Runs, T: int) -> dict[str, Verdict]:
    """Fig. 6's parametric filter at ``T``: the DC reading against the literal one, the shape against a scalar."""
    fd = functools.partial(runs.col, key="fd")
    return {"A dc beats paper": vbeats(fd(T, "PDS (0.2H, 1.6) dc"), fd(T, "PDS (0.2H, 1.6) paper"),
                                       f"at T={T} the DC reading beats the literal one (FD)"),
            "A shape matters": vbeats(fd(T, "PDS (0.2H, 1.6) paper"), fd(T, "scalar control"),
                                      f"at T={T} the literal filter beats its scalar control (FD)")}


def table1_verdicts(runs: Runs, table1: Table1, full_T: int, low_T, churn_T: int) -> dict[str, Verdict]:
    """Table 1 on the PC sampler: the stand-in's verdicts (:func:`pds.lab.experiments.table1_stand_in`), then at each T
    of ``low_T`` vanilla against full length and PDS against vanilla, and EDM's samplers at ``churn_T`` steps."""
    out = {f"B {k}": v for k, v in table1.verdicts.items()}
    full_fd = runs.col(full_T, "vanilla", "fd")
    for T in low_T:
        van, stats = runs[(T, "vanilla")], (T, "statistics R, α=5")
        out |= {
            f"B vanilla {T} matches full": vmatches(runs.col(T, "vanilla", "fd"), full_fd,
                                                    f"vanilla at T={T} matches vanilla at T={full_T} (FD)"),
            f"B vanilla {T} lands": landed_all(van, f"vanilla at T={T} lands on the set"),
            f"B stats {T} beats vanilla": vbeats(runs.col(*stats, "fd"), runs.col(T, "vanilla", "fd"),
                                                 f"the statistics filter (α=5) at T={T} beats vanilla (FD)"),
            f"B stats {T} lands closer": vbeats(runs.col(*stats, "distance"), runs.col(T, "vanilla", "distance"),
                                                f"the statistics filter (α=5) at T={T} ends nearer the images than "
                                                "vanilla (median relative distance)"),
            f"B vanilla {T} covers": covers(van, f"vanilla at T={T} reaches the images like uniform draws"),
            f"B stats {T} covers better": vbeats(runs.col(*stats, "kl"), runs.col(T, "vanilla", "kl"),
                                                 f"the statistics filter (α=5) at T={T} reaches the images more "
                                                 "evenly than vanilla (KL of the hits)"),
            f"B parametric {T} beats vanilla": vbeats(runs.col(T, "PDS (0.2H, 1.6) paper", "fd"),
                                                      runs.col(T, "vanilla", "fd"),
                                                      f"PDS (0.2H, 1.6) at T={T} beats vanilla (FD)"),
        }
    nfe = {name: runs[(churn_T, name)][0]["nfe"] for name in CHURN_METHODS}
    out["B churn pds beats churn"] = vbeats(runs.col(churn_T, "EDM churn + PDS", "fd"),
                                            runs.col(churn_T, "EDM churn", "fd"),
                                            f"EDM churn + PDS at {nfe['EDM churn']} NFE beats plain churn (FD)")
    out["B heun matches full"] = vmatches(runs.col(churn_T, "Heun", "fd"), full_fd,
                                          f"Heun at {nfe['Heun']} NFE matches vanilla PC at T={full_T} (FD)")
    return out


def fig1_verdicts(runs: Runs, Ts, T_cover: int, eq13_refused: bool) -> dict[str, Verdict]:
    """Fig. 1 on aligned faces: whether Eq. 13's space filter was refused, then at each T of ``Ts`` landing and
    distance of vanilla, R and R + A, and the coverage of vanilla and R + A at ``T_cover``."""
    out = {"C eq13 refused": Verdict("Eq. 13's space filter makes M singular on these faces and is refused",
                                     eq13_refused, "Preconditioner(space=log E[x] + 1) raised" if eq13_refused else
                                     "accepted")}
    for T in Ts:
        out |= {f"C vanilla {T} lands": landed_all(runs[(T, "vanilla")], f"vanilla at T={T} lands on the faces"),
                f"C R {T} lands": landed_all(runs[(T, "R, α=5")], f"PDS (R) at T={T} lands on the faces"),
                f"C RA {T} lands": landed_all(runs[(T, "R + A, α=5")], f"PDS (R + A) at T={T} lands on the faces"),
                f"C RA {T} beats vanilla": vbeats(runs.col(T, "R + A, α=5", "distance"),
                                                  runs.col(T, "vanilla", "distance"),
                                                  f"PDS (R + A) at T={T} ends nearer the faces than vanilla")}
    out["C vanilla covers"] = covers(runs[(T_cover, "vanilla")], f"vanilla at T={T_cover} reaches the faces like "
                                                                 "uniform draws (KL within the floor)")
    out["C RA covers"] = covers(runs[(T_cover, "R + A, α=5")], f"PDS (R + A) at T={T_cover} reaches the faces like "
                                                               "uniform draws (KL within the floor)")
    return out


def fig5_verdicts(runs: Runs, Ts) -> dict[str, Verdict]:
    """Fig. 5 on 256² crops: at each T of ``Ts`` whether vanilla and PDS (R) land, and whether PDS ends nearer."""
    out = {}
    for T in Ts:
        van, pds = runs[(T, "vanilla")], runs[(T, "statistics R, α=5")]
        out |= {f"D vanilla {T} lands": landed_all(van, f"vanilla at T={T} lands on the crops (no heavy noise)"),
                f"D stats {T} lands": landed_all(pds, f"PDS (R) at T={T} lands on the crops"),
                f"D stats {T} beats vanilla": vbeats(runs.col(T, "statistics R, α=5", "distance"),
                                                     runs.col(T, "vanilla", "distance"),
                                                     f"PDS (R) at T={T} ends nearer the crops than vanilla")}
    return out


TWIN_VERDICTS = ("vanilla matches full", "PDS matches full", "PDS beats vanilla")
# notebook 11's section 5 and notebook 13's sampling part: each trained network (its PDS method) against its twins
TWIN_KINDS = {"ncsnpp": ("ncsnpp_fashion32", STATISTICS), "ncsn": ("ncsn_fashion28", PARAMETRIC)}
# per profile: n per run, the training images of the exact twin (None: all), the lengths (the full one first), the
# seeds of the runs and of the full-length run (it costs most)
TWINS = {
    "smoke": dict(n=8, images=300, T={"ncsnpp": (12, 4), "ncsn": (20, 4)}, seeds=(0, 1),
                  full_seeds={"ncsnpp": (0, 1), "ncsn": (0,)}),
    "default": dict(n=256, images=None, T={"ncsnpp": (1000, 100, 50), "ncsn": (1000, 20)}, seeds=(0, 1, 2),
                    full_seeds={"ncsnpp": (0, 1, 2), "ncsn": (0,)}),
    "full": dict(n=1024, images=None, T={"ncsnpp": (1000, 200, 100, 50), "ncsn": (1000, 20)}, seeds=(0, 1, 2),
                 full_seeds={"ncsnpp": (0, 1, 2), "ncsn": (0, 1, 2)}),
}


def twin_runs(cache: ResultCache, model: SmallModel, metric, kind: str, n: int, seeds, Ts, full_seeds,
              device=None) -> Runs:
    """The runs of one twin of a :data:`TWIN_KINDS` network: vanilla at the full length ``Ts[0]`` over ``full_seeds``
    (none: not drawn), then vanilla and the network's PDS method ("PDS") at each shortened length ``Ts[1:]``."""
    runs = Runs(cache, model, metric, n, seeds, device)
    if full_seeds:
        runs.draw(Ts[0], "vanilla", Method(), seeds=full_seeds)
    runs.draw_all(Ts[1:], {"vanilla": Method(), "PDS": TWIN_KINDS[kind][1]})
    return runs


def _sides(got: dict) -> str:
    """Whose verdict the ELS machine's is: that of the network, of the exact score, of both or of neither."""
    if got.get("ELS") is None:
        return "not drawn"
    if got["trained"] == got["exact"]:
        return "both" if got["ELS"] == got["trained"] else "neither"
    return "the network" if got["ELS"] == got["trained"] else "the exact score"


def twin_verdicts(kind: str, twins: dict[str, Runs], Ts) -> tuple[dict[str, Verdict], list[dict]]:
    """Each verdict of notebooks 05/06 at the shortened lengths ``Ts[1:]`` against the full length ``Ts[0]``, on the
    trained network and on the exact score of its training set (``twins``: {"trained": Runs, "exact": Runs}, methods
    "vanilla" and "PDS"), and on the ELS machine where ``twins`` has an "ELS" entry (notebook 13; a verdict whose
    runs it did not draw is left out). Returns the verdicts and one line per (T, verdict) saying whose it is: "the
    sampler" when it is the same on the network and the exact score, else "the network"; with ELS, also its verdict
    and whose side it takes."""
    needs = {"vanilla matches full": (("vanilla", True), ("vanilla", False)),
             "PDS matches full": (("PDS", True), ("vanilla", False)),
             "PDS beats vanilla": (("PDS", True), ("vanilla", True))}
    out, lines = {}, []
    for T in Ts[1:]:
        for what in TWIN_VERDICTS:
            got = {}
            for label, runs in twins.items():
                keys = [(T if short else Ts[0], name) for name, short in needs[what]]
                if not all(k in runs for k in keys):
                    got[label] = None
                    continue
                a, b = (runs.values(*k) for k in keys)
                claim = {"vanilla matches full": f"{kind} ({label}): vanilla at T={T} matches T={Ts[0]}",
                         "PDS matches full": f"{kind} ({label}): PDS at T={T} matches T={Ts[0]}",
                         "PDS beats vanilla": f"{kind} ({label}): PDS at T={T} beats vanilla"}[what]
                v = (vbeats if what == "PDS beats vanilla" else vmatches)(a, b, claim)
                out[f"E {kind} {label} {T} {what}"] = v
                got[label] = v.holds
            line = {"model": kind, "T": T, "verdict": what, "trained network": got["trained"],
                    "exact score": got["exact"],
                    "about": "the sampler" if got["trained"] == got["exact"] else "the network"}
            if "ELS" in twins:
                els = "not drawn" if got["ELS"] is None else got["ELS"]
                line |= {"ELS machine": els, "ELS sides with": _sides(got)}
            lines.append(line)
    return out, lines


def novelty(runs: Runs, images) -> list[dict]:
    """Per (T, method) of ``runs``: the stored samples of its first seed's run against ``images`` (a
    :class:`pds.scores.EmpiricalScore`) — the median distance to the nearest image in units of σ_min·√D (the model's
    smallest noise level, D the values per sample: :class:`pds.lab.image_sets.LandingMetric`'s unit) and the fraction
    within :data:`LANDED_RADIUS` of them ("landed": a training image again, not a new one)."""
    out = []
    for (T, name), rows in runs.rows.items():
        x = runs.cache.samples(rows[0]["key"])
        if not len(x):
            continue
        unit = runs.model.sigma_range[1] * math.sqrt(x[0].numel())
        rel = (images.nearest(x)[1] / unit).cpu().numpy()
        out.append({"T": T, "method": name, "samples": len(x), "median distance": float(np.median(rel)),
                    "landed": float((rel <= LANDED_RADIUS).mean())})
    return out


def novelty_verdicts(table: pd.DataFrame) -> dict[str, Verdict]:
    """From a table of :func:`novelty` lines with columns ``kind``, ``model`` and ``against``: for each model, with
    vanilla at the longest length drawn, whether its samples are not training images (fewer than half landed on the
    set it is compared with; far from every training image is not yet a good image: the FD says that)."""
    out = {}
    for (kind, model, against), g in table[table.method == "vanilla"].groupby(["kind", "model", "against"], sort=False):
        line = g.loc[g["T"].idxmax()]
        T, landed = int(line["T"]), float(line["landed"])
        out[f"N {kind} {model} new against {against}"] = Verdict(
            f"{kind} ({model}), vanilla at T={T}: the samples are not training images (fewer than half within "
            f"{LANDED_RADIUS} σ_min√D of one of {against})", landed < 0.5,
            f"landed fraction {landed:.3g} of {int(line['samples'])} samples, median distance "
            f"{float(line['median distance']):.3g} σ_min√D", {"landed": landed, "T": T})
    return out


def show_nearest(ax, runs: Runs, method: Method, T: int, title: str, count: int = 8, images=None) -> None:
    """The first ``count`` samples of the first seed's run of ``method`` at ``T`` (top row) above the nearest image of
    the set to each (bottom row), on ``ax``; the set: ``images`` (a :class:`pds.scores.EmpiricalScore`), default the
    landing metric's."""
    row = runs.cache.run(runs.model, method, T, runs.n, runs.seeds[0], runs.metric, device=runs.device)
    x = runs.cache.samples(row["key"])[:count]
    ax.axis("off")
    if not len(x):
        ax.set_title(title + " (diverged)", fontsize=8)
        return
    images = runs.metric.set if images is None else images
    idx, _ = images.nearest(x)
    near = images.X[idx].reshape(len(x), *images.shape).cpu()
    from torchvision.utils import make_grid  # here: importing torchvision costs seconds, and only this needs it

    grid = make_grid(torch.cat([x, near]), nrow=len(x), padding=1, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).clamp(0, 1) if grid.shape[0] == 3 else grid[0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
