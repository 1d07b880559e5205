"""pds.lab.exact_claims: notebook 11's verdicts on synthetic runs (no sampling): the keys they produce are those the
notebook's expected verdicts name, each verdict reads the measure it says, and a twin verdict is called the
sampler's exactly when it comes out the same on the trained network and on the exact score."""

import numpy as np
import pytest

from pds.lab import exact_claims as claims
from pds.lab.experiments import Table1, Verdict
from pds.lab.findings import expected


def row(value, landed=1.0, distance=0.5, kl=0.1, nfe=100):
    return {"value": value, "nfe": nfe, "extra": {"fd": value, "landed": landed,
                                                  "relative_distance": {"median": distance},
                                                  "hits": {"kl": kl, "kl_floor": {"mean": 0.1, "std": 0.01},
                                                           "distinct": 50}}}


class FakeRuns(claims.Runs):
    """Runs whose rows are given, not drawn: every (T, name) asked for has three seeds of ``default`` (a row factory)
    unless set."""

    def __init__(self, default=lambda T, name, seed: row(10.0 + seed), missing=()):
        super().__init__(cache=None, model=None, metric=None, n=10, seeds=(0, 1, 2))
        self.default, self.missing = default, set(missing)

    def __contains__(self, key):
        return key not in self.missing

    def __getitem__(self, key):
        if key not in self.rows:
            self.rows[key] = [self.default(*key, s) for s in self.seeds]
        return self.rows[key]

    def col(self, T, name, key):
        self[(T, name)]
        return super().col(T, name, key)

    def values(self, T, name):
        self[(T, name)]
        return super().values(T, name)


def test_the_verdicts_have_the_keys_notebook_11_expects():
    """With the default profile's lengths every builder together produces exactly the keys of
    notebooks/expected/11_exact_real_scores.json."""
    table1 = Table1([], {}, {}, {}, {f"{k} {T}": Verdict("x", True, "") for T in (100, 200)
                                     for k in ("beats", "matches", "vanilla matches")})
    keys = [*claims.fig3_verdicts(FakeRuns(), 1000, 20, 200, [9.0, 10.0, 11.0]),
            *claims.fig6_verdicts(FakeRuns(), 20),
            *claims.table1_verdicts(FakeRuns(), table1, 1000, (50, 20, 10, 5), 18),
            *claims.fig1_verdicts(FakeRuns(), (100, 66, 20, 10, 5), 66, True),
            *claims.fig5_verdicts(FakeRuns(), (166, 50, 20))]
    for kind, Ts in (("ncsnpp", (1000, 100, 50)), ("ncsn", (1000, 20))):
        keys += list(claims.twin_verdicts(kind, {"trained": FakeRuns(), "exact": FakeRuns()}, Ts)[0])
    assert len(keys) == len(set(keys))
    assert set(keys) == set(expected("11_exact_real_scores"))


def test_landed_all_needs_every_seed():
    assert claims.landed_all([row(1, landed=0.95), row(1, landed=0.9)], "c").holds
    assert not claims.landed_all([row(1, landed=0.95), row(1, landed=0.5)], "c").holds
    assert not claims.landed_all([row(1, landed=float("nan"))], "c").holds


def test_each_verdict_reads_its_measure():
    """PDS far better in FD but farther from the images: "beats vanilla" (FD) holds, "lands closer" (distance) does
    not; a diverged run is the worst."""
    def rows(T, name, seed):
        pds = name != "vanilla"
        return row(5.0 + 0.1 * seed if pds else 50.0 + seed, distance=0.9 if pds else 0.3)

    found = claims.table1_verdicts(FakeRuns(rows), Table1([], {}, {}, {}, {}), 1000, (20,), 18)
    assert found["B stats 20 beats vanilla"].holds and found["B parametric 20 beats vanilla"].holds
    assert not found["B stats 20 lands closer"].holds
    runs = FakeRuns(lambda T, name, seed: row(1.0, distance=0.5))
    runs.rows[(20, "R + A, α=5")] = [{"value": float("inf"), "nfe": 40, "diverged": "NaN at step 3", "extra": {}}] * 3
    assert not claims.fig1_verdicts(runs, (20,), 20, False)["C RA 20 beats vanilla"].holds


@pytest.mark.parametrize("trained_vanilla, whose", [(50.0, "the network"), (10.0, "the sampler")])
def test_twin_verdicts_say_whose_a_verdict_is(trained_vanilla, whose):
    """Vanilla at T = 20 matches the full length on the exact score; on the trained network it does (the sampler's
    verdict) or it does not (the network's)."""
    def trained(T, name, seed):
        return row((trained_vanilla if (T, name) == (20, "vanilla") else 10.0) + seed)

    found, lines = claims.twin_verdicts("ncsn", {"trained": FakeRuns(trained), "exact": FakeRuns()}, (1000, 20))
    line = next(x for x in lines if x["verdict"] == "vanilla matches full")
    assert line["about"] == whose
    assert line["trained network"] == found["E ncsn trained 20 vanilla matches full"].holds
    assert line["exact score"] is True
    assert np.isclose(found["E ncsn exact 20 vanilla matches full"].numbers["values"]["mean"], 11.0)


def test_the_els_column_takes_a_side_and_leaves_out_what_was_not_drawn():
    """Notebook 13's third column: PDS beats vanilla on the network and on the ELS machine but not on the exact score
    ("the network" is whose, and ELS sides with it); without a full-length ELS run its "matches full" verdicts are
    left out and the line says "not drawn"."""
    def better_pds(T, name, seed):
        return row((5.0 if name == "PDS" else 50.0) + seed)

    twins = {"trained": FakeRuns(better_pds), "ELS": FakeRuns(better_pds, missing={(1000, "vanilla")}),
             "exact": FakeRuns()}
    found, lines = claims.twin_verdicts("ncsnpp", twins, (1000, 50))
    beats = next(x for x in lines if x["verdict"] == "PDS beats vanilla")
    assert beats["about"] == "the network" and beats["ELS machine"] is True and beats["ELS sides with"] == "the network"
    assert found["E ncsnpp ELS 50 PDS beats vanilla"].holds and not found["E ncsnpp exact 50 PDS beats vanilla"].holds
    assert "E ncsnpp ELS 50 vanilla matches full" not in found
    full = next(x for x in lines if x["verdict"] == "vanilla matches full")
    assert full["ELS machine"] == "not drawn" and full["ELS sides with"] == "not drawn"
    twins["ELS"] = FakeRuns()
    lines = claims.twin_verdicts("ncsnpp", twins, (1000, 50))[1]
    assert next(x for x in lines if x["verdict"] == "PDS beats vanilla")["ELS sides with"] == "the exact score"
    assert "ELS machine" not in claims.twin_verdicts("ncsnpp", {"trained": FakeRuns(), "exact": FakeRuns()},
                                                     (1000, 50))[1][0]


def test_novelty_counts_the_samples_within_the_landing_radius():
    import pandas as pd
    import torch

    from pds.lab.image_sets import LANDED_RADIUS
    from pds.scores import EmpiricalScore

    images = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    unit = 0.025 * 4  # the model's σ_min · √D, D = 16

    class Model:
        sigma_range = (1.0, 0.025)

    # two samples on images (within the radius), one far from all
    samples = torch.cat([images[:2] + 0.01, torch.full((1, 1, 4, 4), 5.0)])

    class Cache:
        def samples(self, key):
            return samples

    runs = FakeRuns()
    runs.cache, runs.model, runs.rows[(50, "vanilla")] = Cache(), Model(), [{"key": "k"}]
    (line,) = claims.novelty(runs, EmpiricalScore(images))
    assert line["T"] == 50 and line["samples"] == 3 and line["landed"] == pytest.approx(2 / 3)
    assert line["median distance"] == pytest.approx(0.04 / unit, rel=1e-5)  # ‖0.01·1‖ over 16 pixels = 0.04
    where = {"kind": "ncsn", "model": "ELS", "against": "its own images"}
    table = pd.DataFrame([{**line, **where}, {**line, "T": 20, "landed": 0.25, **where}])
    (key, verdict), = claims.novelty_verdicts(table).items()  # vanilla at the longest length: T = 50, 2/3 landed
    assert key == "N ncsn ELS new against its own images" and not verdict.holds and verdict.numbers["T"] == 50
    table.loc[0, "T"] = 10
    assert claims.novelty_verdicts(table)[key].holds  # now T = 20 is the longest: a quarter landed
    assert LANDED_RADIUS * unit > 0.04
