"""Notebook 11's laboratory: runs of a model of a real image set — the exact score of :mod:`pds.lab.image_sets`, where
every departure is the sampler's — and of a trained network beside the exact score of its own training set, and the
rules that turn a comparison into a verdict. What is compared, by which rule and measure, is written in the notebooks
(11 and 13) as tables of :class:`Compare`; :func:`judge` and :func:`twin_verdicts` apply them.

:class:`Runs` holds the runs of one target (each (T, method) over seeds, read from the result cache or drawn), by the
method names of the ``*_METHODS`` tables."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pds.lab.cache import ResultCache
from pds.lab.experiments import Method, SmallModel, Verdict, beats, matches, run_seeds, values
from pds.lab.image_sets import LANDED_RADIUS, covers, measures

__all__ = ["Runs", "landed_all", "Compare", "judge", "FIG3_METHODS", "TABLE1_LOW_METHODS", "CHURN_METHODS",
           "FIG5_METHODS", "fig1_methods", "twin_verdicts", "TWIN_KINDS", "TWINS", "twin_runs", "novelty",
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


@dataclass(frozen=True)
class Compare:
    """One claim of a notebook's table, as the notebook words it: ``rule`` "lands" (the runs of ``side``, a (T, method)
    pair, land in every seed: :func:`landed_all`), "covers" (they reach the images like uniform draws:
    :func:`pds.lab.image_sets.covers`), "beats" or "matches" (``side``'s ``measure`` against ``other``'s, a (T, method)
    pair or a list of values: :func:`pds.lab.experiments.beats` / :func:`~pds.lab.experiments.matches`, a run with no
    value the worst); ``floor``: the measure of perfect draws, reported beside the verdict."""

    claim: str
    rule: str
    side: tuple
    other: tuple | list | None = None
    measure: str = "fd"
    floor: list | None = None

    def __post_init__(self):
        if self.rule not in ("lands", "covers", "beats", "matches"):
            raise ValueError(f"Compare(rule={self.rule!r}): choose 'lands', 'covers', 'beats' or 'matches'")
        if (self.other is None) != (self.rule in ("lands", "covers")):
            raise ValueError(f"Compare({self.claim!r}): {self.rule!r} needs "
                             f"{'no other side' if self.rule in ('lands', 'covers') else 'another side'}")


def judge(runs: Runs, table: dict[str, Compare]) -> dict[str, Verdict]:
    """The verdict of each :class:`Compare` of a notebook's ``table`` on ``runs``, by the table's keys."""
    def side(x, measure):
        return runs.col(*x, measure) if isinstance(x, tuple) else list(x)

    out = {}
    for key, c in table.items():
        if c.rule == "lands":
            out[key] = landed_all(runs[c.side], c.claim)
        elif c.rule == "covers":
            out[key] = covers(runs[c.side], c.claim)
        else:
            rule = vbeats if c.rule == "beats" else vmatches
            out[key] = rule(side(c.side, c.measure), side(c.other, c.measure), c.claim, floor=c.floor)
    return out


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


def twin_verdicts(kind: str, twins: dict[str, Runs], Ts, rules: dict) -> tuple[dict[str, Verdict], list[dict]]:
    """The notebook's ``rules`` — {verdict: (rule "beats" | "matches", side, other)}, a side being (method, whether at
    the shortened length) — at each shortened length ``Ts[1:]`` against the full length ``Ts[0]``, on the trained
    network and on the exact score of its training set (``twins``: {"trained": Runs, "exact": Runs}, methods "vanilla"
    and "PDS"), and on the ELS machine where ``twins`` has an "ELS" entry (notebook 13; a verdict whose runs it did not
    draw is left out). Returns the verdicts and one line per (T, verdict) saying whose it is: "the sampler" when it is
    the same on the network and the exact score, else "the network"; with ELS, also its verdict and whose side it
    takes."""
    out, lines = {}, []
    for T in Ts[1:]:
        for what, (rule, side, other) in rules.items():
            got = {}
            for label, runs in twins.items():
                keys = [(T if short else Ts[0], name) for name, short in (side, other)]
                if not all(k in runs for k in keys):
                    got[label] = None
                    continue
                against = other[0] if other[1] else f"T={Ts[0]}"
                claim = f"{kind} ({label}): {side[0]} at T={T} {rule} {against}"
                v = (vbeats if rule == "beats" else vmatches)(*(runs.values(*k) for k in keys), claim)
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
    :class:`pds.empirical.EmpiricalScore`) — the median distance to the nearest image in units of σ_min·√D (the model's
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


def show_nearest(ax, runs: Runs, method: Method, T: int, title: str, count: int = 8, images=None) -> None:
    """The first ``count`` samples of the first seed's run of ``method`` at ``T`` (top row) above the nearest image of
    the set to each (bottom row), on ``ax``; the set: ``images`` (a :class:`pds.empirical.EmpiricalScore`), default the
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
