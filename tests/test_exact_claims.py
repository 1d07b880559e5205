"""pds.lessons.exact_claims: the rules that turn notebooks 11 and 13's tables of comparisons into verdicts, on synthetic
runs (no sampling): each rule reads the measure its row names, a table is refused where a row is malformed, a twin
verdict is called the sampler's exactly when it comes out the same on the trained network and on the exact score; and
the notebooks' own tables, as their committed findings recorded them, produce exactly the keys their expected verdicts
name."""

import numpy as np
import pytest

from pds.lessons import exact_claims as claims
from pds.publish.findings import expected


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


@pytest.mark.parametrize("notebook", ["11_exact_real_scores", "12_optimal_preconditioner", "13_network_like_scores"])
def test_the_tables_of_the_notebooks_give_the_keys_they_expect(notebook):
    """The comparisons are written in the notebooks; their committed findings (data/findings/default, written by the
    last run of the default profile) hold a verdict for every key of the expected verdicts and for no other."""
    import json

    from pds.storage import DATA_DIR

    doc = json.loads((DATA_DIR / "findings" / "default" / f"{notebook}.findings.json").read_text())
    keys = [f["key"] for c in doc["claims"] for f in c["findings"] if f["kind"] == "verdict"]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(expected(notebook))


def test_a_table_row_is_refused_where_it_is_malformed():
    with pytest.raises(ValueError, match="choose 'lands', 'covers', 'beats' or 'matches'"):
        claims.Compare("c", "wins", (20, "vanilla"), (20, "PDS"))
    with pytest.raises(ValueError, match="needs another side"):
        claims.Compare("c", "beats", (20, "vanilla"))
    with pytest.raises(ValueError, match="needs no other side"):
        claims.Compare("c", "lands", (20, "vanilla"), (20, "PDS"))


def test_landed_all_needs_every_seed():
    assert claims.landed_all([row(1, landed=0.95), row(1, landed=0.9)], "c").holds
    assert not claims.landed_all([row(1, landed=0.95), row(1, landed=0.5)], "c").holds
    assert not claims.landed_all([row(1, landed=float("nan"))], "c").holds


def test_each_verdict_reads_its_measure():
    """PDS far better in FD but farther from the images: "beats vanilla" on the FD holds, on the distance it does not;
    "matches" and "lands" read theirs; a diverged run is the worst."""
    def rows(T, name, seed):
        pds = name != "vanilla"
        return row(5.0 + 0.1 * seed if pds else 50.0 + seed, distance=0.9 if pds else 0.3, landed=0.5 if pds else 1.0)

    C = claims.Compare
    found = claims.judge(FakeRuns(rows), {
        "fd": C("PDS beats vanilla (FD)", "beats", (20, "PDS"), (20, "vanilla")),
        "distance": C("PDS ends nearer", "beats", (20, "PDS"), (20, "vanilla"), "distance"),
        "matches": C("vanilla matches PDS", "matches", (20, "vanilla"), (20, "PDS")),
        "floor": C("PDS within the floor", "matches", (20, "PDS"), [4.9, 5.0, 5.1], floor=[4.9, 5.0, 5.1]),
        "lands": C("PDS lands", "lands", (20, "PDS")), "vanilla lands": C("vanilla lands", "lands", (20, "vanilla")),
        "covers": C("vanilla covers", "covers", (20, "vanilla"))})
    assert found["fd"].holds and not found["distance"].holds and not found["matches"].holds and found["floor"].holds
    assert not found["lands"].holds and found["vanilla lands"].holds and found["covers"].holds
    assert found["fd"].claim == "PDS beats vanilla (FD)" and "floor" in found["floor"].detail
    runs = FakeRuns(lambda T, name, seed: row(1.0, distance=0.5))
    runs.rows[(20, "R + A, α=5")] = [{"value": float("inf"), "nfe": 40, "diverged": "NaN at step 3", "extra": {}}] * 3
    assert not claims.judge(runs, {"k": C("RA nearer", "beats", (20, "R + A, α=5"), (20, "vanilla"),
                                          "distance")})["k"].holds


# the rules notebooks 11 and 13 write for the verdicts of notebooks 05 and 06
TWIN_RULES = {"vanilla matches full": ("matches", ("vanilla", True), ("vanilla", False)),
              "PDS matches full": ("matches", ("PDS", True), ("vanilla", False)),
              "PDS beats vanilla": ("beats", ("PDS", True), ("vanilla", True))}


@pytest.mark.parametrize("trained_vanilla, whose", [(50.0, "the network"), (10.0, "the sampler")])
def test_twin_verdicts_say_whose_a_verdict_is(trained_vanilla, whose):
    """Vanilla at T = 20 matches the full length on the exact score; on the trained network it does (the sampler's
    verdict) or it does not (the network's)."""
    def trained(T, name, seed):
        return row((trained_vanilla if (T, name) == (20, "vanilla") else 10.0) + seed)

    twins = {"trained": FakeRuns(trained), "exact": FakeRuns()}
    found, lines = claims.twin_verdicts("ncsn", twins, (1000, 20), TWIN_RULES)
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
    found, lines = claims.twin_verdicts("ncsnpp", twins, (1000, 50), TWIN_RULES)
    beats = next(x for x in lines if x["verdict"] == "PDS beats vanilla")
    assert beats["about"] == "the network" and beats["ELS machine"] is True and beats["ELS sides with"] == "the network"
    assert found["E ncsnpp ELS 50 PDS beats vanilla"].holds and not found["E ncsnpp exact 50 PDS beats vanilla"].holds
    assert "E ncsnpp ELS 50 vanilla matches full" not in found
    full = next(x for x in lines if x["verdict"] == "vanilla matches full")
    assert full["ELS machine"] == "not drawn" and full["ELS sides with"] == "not drawn"
    twins["ELS"] = FakeRuns()
    lines = claims.twin_verdicts("ncsnpp", twins, (1000, 50), TWIN_RULES)[1]
    assert next(x for x in lines if x["verdict"] == "PDS beats vanilla")["ELS sides with"] == "the exact score"
    assert "ELS machine" not in claims.twin_verdicts("ncsnpp", {"trained": FakeRuns(), "exact": FakeRuns()},
                                                     (1000, 50), TWIN_RULES)[1][0]
    assert found["E ncsnpp trained 50 PDS matches full"].claim == "ncsnpp (trained): PDS at T=50 matches T=1000"
    assert found["E ncsnpp trained 50 PDS beats vanilla"].claim == "ncsnpp (trained): PDS at T=50 beats vanilla"


def test_novelty_counts_the_samples_within_the_landing_radius():
    import torch

    from pds.empirical import EmpiricalScore
    from pds.lab.image_sets import LANDED_RADIUS

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
    assert LANDED_RADIUS * unit > 0.04
