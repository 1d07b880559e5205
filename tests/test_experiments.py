"""pds.lab.experiments: iteration counts, cropping, seeding, vanilla identity, and the result cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pds.lab.cache import ResultCache
from pds.lab.experiments import Method, SmallModel, sample
from pds.lab.metrics import MetricResult


def gaussian_score(x, sigma):  # data N(0.5, 0.2²) per pixel, blurred by σ (the samplers pass σ as a float)
    var = 0.04 + float(sigma) ** 2
    return -(x - 0.5) / var


def toy(kind):
    images = torch.rand(300, 1, 32 if kind == "ncsnpp" else 28, 32 if kind == "ncsnpp" else 28,
                        generator=torch.Generator().manual_seed(0))
    if kind == "ncsnpp":
        config = {"kind": "ncsnpp", "net": {"image_size": 32, "channels": 1}, "num_scales": 1000,
                  "sigma_min": 0.01, "sigma_max": 5.0, "data": {"pad": 2}}
    else:
        config = {"kind": "ncsn", "net": {"image_size": 28, "channels": 1},
                  "sigmas": [1.0, 0.46, 0.22, 0.1, 0.046, 0.022, 0.01]}
    return SmallModel(f"toy-{kind}", score=gaussian_score, config=config, train_images=images)


@pytest.mark.parametrize("kind,T", [("ncsn", 20), ("ncsn", 3), ("ncsnpp", 7), ("ncsnpp", 300)])
def test_iteration_counts_shapes_and_seeds(kind, T):
    model = toy(kind)
    x, nfe = sample(model, Method(), T, n=5, seed=1, batch_size=3)
    assert nfe == (2 * T if kind == "ncsnpp" else T)
    assert x.shape == (5, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    y, _ = sample(model, Method(), T, n=5, seed=1, batch_size=3)
    z, _ = sample(model, Method(), T, n=5, seed=2, batch_size=3)
    assert torch.equal(x, y) and not torch.equal(x, z)


@pytest.mark.parametrize("kind", ["ncsn", "ncsnpp"])
def test_identity_filter_is_vanilla_and_a_real_filter_is_not(kind):
    model = toy(kind)
    vanilla, _ = sample(model, Method(), 10, n=4, seed=0)
    ones, _ = sample(model, Method("parametric", r=0.2, lam=1.0), 10, n=4, seed=0)
    pds, _ = sample(model, Method("parametric", r=0.2, lam=1.6), 10, n=4, seed=0)
    stats, _ = sample(model, Method("statistics", alpha=5.0, stats_n=50), 10, n=4, seed=0)
    assert torch.equal(vanilla, ones)
    assert not torch.equal(vanilla, pds) and not torch.equal(vanilla, stats)


def test_method_validation_and_labels():
    with pytest.raises(ValueError, match="filter must be"):
        Method("space")
    with pytest.raises(ValueError, match="needs r"):
        Method("parametric", r=0.2)
    assert Method().label == "vanilla"
    assert "λ=1.6" in Method("parametric", r=0.2, lam=1.6).label and "α=5" in Method("statistics", alpha=5).label


def test_full_T_uses_the_official_schedule():
    model = toy("ncsn")
    assert model.full_T == 700
    assert toy("ncsnpp").full_T == 1000


def counting_score():
    """A metric (the sample mean) that records the seed of every call, to see which runs were computed."""
    calls = []

    def score_fn(x, nfe, seed):
        calls.append(seed)
        return MetricResult("mean", float(x.mean()), len(x), "none", seed, nfe)

    return score_fn, calls


def test_cache_reads_finished_runs_and_survives_a_cut_line(tmp_path):
    model = toy("ncsn")
    score_fn, calls = counting_score()

    cache = ResultCache(tmp_path)
    a = cache.run(model, Method(), 4, 3, 0, score_fn)
    b = cache.run(model, Method(), 4, 3, 0, score_fn)
    c = cache.run(model, Method(), 4, 3, 1, score_fn)
    assert calls == [0, 1] and a == b and a["key"] != c["key"] and a["nfe"] == 4
    x, _ = sample(model, Method(), 4, 3, 0)
    torch.testing.assert_close(cache.samples(a["key"]), x, atol=0.5 / 255 + 1e-6, rtol=0)
    with open(cache.path, "a") as f:
        f.write('{"key": "cut')  # a write killed half-way
    assert [r["key"] for r in ResultCache(tmp_path).rows()] == [a["key"], c["key"]]
    (tmp_path / f"{c['key']}.npz").unlink()  # samples lost: the run is redone
    cache.run(model, Method(), 4, 3, 1, score_fn)
    assert calls == [0, 1, 1]
    cache.run(model, Method(), 4, 3, 1, score_fn)  # the redone row was written on a line of its own
    assert calls == [0, 1, 1]
    assert json.loads(cache.path.read_text().splitlines()[0])["label"] == "vanilla"


def test_cache_key_changes_with_the_weights(tmp_path):
    model = toy("ncsn")
    score_fn, calls = counting_score()

    cache = ResultCache(tmp_path)
    model.config["file_sha256"] = "a" * 64
    first = cache.run(model, Method(), 3, 2, 0, score_fn)
    model.config["file_sha256"] = "b" * 64  # retrained: the cached row must not be reused
    second = cache.run(model, Method(), 3, 2, 0, score_fn)
    assert calls == [0, 0] and first["key"] != second["key"]


def test_verdicts_matches_and_beats():
    from pds.lab.experiments import beats, matches, spread
    from pds.publish.notebooks import check_verdict

    assert spread([1.0, 3.0]) == (2.0, pytest.approx(2**0.5), 2) and spread([5.0]) == (5.0, 0.0, 1)
    full = [100.0, 110.0, 90.0]  # mean 100, std 10: bound 120
    assert matches([119.0, 121.0, 119.0], full, "x").holds
    assert not matches([125.0, 121.0, 124.0], full, "x").holds
    v = beats([50.0, 52.0, 48.0], [100.0, 104.0, 96.0], "PDS beats vanilla", floor=[40.0, 41.0])
    assert v.holds and "floor" in v.detail and "over 3" in v.detail
    # a difference within two standard errors is not a win
    assert not beats([95.0, 105.0, 100.0], [101.0, 111.0, 106.0], "x").holds
    assert beats([1.0], [2.0], "exact").holds and not beats([2.0], [2.0], "exact").holds
    with pytest.raises(ValueError, match="finite"):
        spread([float("nan")])
    check_verdict(v, True)
    with pytest.raises(AssertionError, match="finding changed"):
        check_verdict(v, False)


def test_grid_verdicts_read_fig6_sentences_off_the_grid():
    from pds.lessons.paper_figures import grid_verdicts

    r, lam = (0.05, 0.2, 0.5), (0.5, 1.0, 2.0)
    vanilla = [100.0, 102.0, 98.0]  # mean 100, std 2: good below 96, like vanilla within 96 … 104
    # the paper's picture: good in the middle, vanilla at high λ and low r, pale at low λ and high r
    fd = np.array([[101.0, 99.0, 100.0], [50.0, 60.0, 103.0], [70.0, 80.0, 97.0]])
    contrast = np.array([[0.5, 1.0, 1.0], [0.6, 1.0, 1.0], [0.4, 0.7, 0.9]])
    v = grid_verdicts(fd, contrast, r, lam, vanilla, data_contrast=1.0, T=20)
    assert {k: x.holds for k, x in v.items()} == {"grid good side": False, "grid high λ is vanilla": True,
                                                   "grid low r is vanilla": True, "grid low λ is pale": True,
                                                   "grid high r is pale": True}
    assert "4 of 9 good" in v["grid good side"].detail and "(0.2H, 1)" in v["grid good side"].detail
    # the opposite picture: good only at λ < 1, worse than vanilla at high λ, nothing pale
    fd2 = np.array([[60.0, 100.0, 300.0], [70.0, 100.0, 400.0], [100.0, 100.0, 100.0]])
    v2 = grid_verdicts(fd2, np.ones((3, 3)) * 1.2, r, lam, vanilla, data_contrast=1.0, T=20)
    assert {k: x.holds for k, x in v2.items()} == {"grid good side": True, "grid high λ is vanilla": False,
                                                    "grid low r is vanilla": False, "grid low λ is pale": False,
                                                    "grid high r is pale": False}
    # no good cell at all: the good side is not established
    assert not grid_verdicts(np.full((3, 3), 100.0), contrast, r, lam, vanilla, 1.0, 20)["grid good side"].holds
    with pytest.raises(ValueError, match="shape"):
        grid_verdicts(fd[:2], contrast, r, lam, vanilla, 1.0, 20)


def test_shipped_cache_is_read_before_anything_is_drawn(tmp_path):
    model = toy("ncsnpp")
    score_fn, calls = counting_score()
    shipped = ResultCache(tmp_path / "shipped")
    row = shipped.run(model, Method(), 3, 2, 0, score_fn)
    assert set(row["fingerprints"]) == {"sampling", "network", "metric"}
    local = ResultCache(tmp_path / "local", shipped=tmp_path / "shipped")
    assert local.run(model, Method(), 3, 2, 0, score_fn) == row and calls == [0]  # read from the shipped cache
    assert torch.equal(local.samples(row["key"]), shipped.samples(row["key"]))
    assert not (tmp_path / "local" / "results.jsonl").exists()


def test_flat_control_has_the_filters_mean_drift_gain_and_the_step_option():
    from pds.filters import parametric_filter
    from pds.lab.experiments import flat_equivalent
    from pds.precondition import Preconditioner

    f = parametric_filter(28, 0.2 * 28, 1.6)
    c = flat_equivalent(f, None)
    gain = Preconditioner(freq=f, alpha=None).freq_gain
    assert c**-2 == pytest.approx(float((gain**2).mean()), rel=1e-12)
    model = toy("ncsn")
    flat = model.preconditioner(Method("flat", r=0.2, lam=1.6))
    assert torch.allclose(flat.freq_gain, torch.full_like(flat.freq_gain, 1 / c))
    a, _ = sample(model, Method(), 20, n=2, seed=0)
    b, _ = sample(model, Method(step="keep"), 20, n=2, seed=0)
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="step must be"):
        Method(step="shrink")
    assert "scalar control" in Method("flat", r=0.2, lam=1.6).label


def test_a_constant_filter_is_the_scalar_drift_gain_and_equals_the_exact_analysis():
    """Method("constant", lam=λ): drift gain 1/λ² at every frequency (the scalar control of any filter), the same
    preconditioner as pds.exact.mechanism.scalar_preconditioner; bad settings refused in one line."""
    from pds.exact.mechanism import scalar_preconditioner

    model = toy("ncsnpp")
    pre = model.preconditioner(Method("constant", lam=1.2**-0.5))
    ref = scalar_preconditioner(model.shape, 1.2)
    assert torch.allclose(pre.freq_gain.double() ** 2, ref.freq_gain**2, rtol=1e-6)
    assert "scalar drift gain 1.2" in Method("constant", lam=1.2**-0.5).label
    a, _ = sample(model, Method(), 5, n=2, seed=0)
    b, _ = sample(model, Method("constant", lam=1.0), 5, n=2, seed=0)
    assert torch.allclose(a, b, atol=1e-6)  # gain 1: vanilla
    for bad in (dict(lam=None), dict(lam=-1.0), dict(lam=1.0, alpha=5.0), dict(lam=1.0, r=0.2)):
        with pytest.raises(ValueError, match="a constant filter needs lam > 0"):
            Method("constant", **bad)


def test_solenoidal_methods_reach_the_sampler():
    model = toy("ncsnpp")
    base, _ = sample(model, Method(), 5, n=2, seed=0)
    paper, _ = sample(model, Method(solenoidal="paper", omega=1000.0), 5, n=2, seed=0)
    central, _ = sample(model, Method(solenoidal="central_hw", omega=10.0), 5, n=2, seed=0)
    assert torch.equal(base, paper)  # the printed S is the zero operator: bit-identical to ω = 0
    assert not torch.equal(base, central)
    with pytest.raises(ValueError, match="solenoidal must be one of"):
        Method(solenoidal="curl")


def test_a_diverging_run_is_cached_as_such(tmp_path):
    model = toy("ncsnpp")
    score_fn, calls = counting_score()
    cache = ResultCache(tmp_path)
    method = Method(solenoidal="central_hw", omega=1e9)
    row = cache.run(model, method, 5, 2, 0, score_fn)
    assert row["value"] == float("inf") and "non-finite" in row["diverged"] and calls == []
    assert cache.run(model, method, 5, 2, 0, score_fn)["key"] == row["key"] and calls == []
    assert cache.samples(row["key"]).shape[0] == 0


def test_ship_cache_keeps_rows_statistics_and_the_first_samples(tmp_path):
    from pds.lab.cache import ship_cache
    from pds.lab.metrics import image_statistics

    model = toy("ncsnpp")
    score_fn, calls = counting_score()
    local = ResultCache(tmp_path / "local")
    row = local.run(model, Method(), 3, 6, 0, score_fn)
    stored = image_statistics(local.samples(row["key"]))  # from the uint8 samples: equal to rounding
    assert row["image_stats"] == pytest.approx(stored, abs=1e-4)
    assert ship_cache(tmp_path / "local", tmp_path / "shipped", keep=4) == {"runs": 1, "rows": 1}
    reader = ResultCache(tmp_path / "fresh", shipped=tmp_path / "shipped")
    again = reader.run(model, Method(), 3, 6, 0, score_fn)
    assert calls == [0] and again["value"] == row["value"] and again["samples_kept"] == 4
    assert reader.samples(row["key"]).shape[0] == 4
    assert reader.image_stats(again) == row["image_stats"]  # from all 6 samples, not the 4 kept


def test_table1_stand_in_picks_alpha_on_the_first_seed_and_states_the_three_claims(tmp_path):
    from pds.lab.experiments import matches, spread
    from pds.lessons.paper_figures import table1_stand_in

    model = toy("ncsnpp")
    score_fn, calls = counting_score()
    cache = ResultCache(tmp_path)
    full = [0.5, 0.52, 0.49]
    table = table1_stand_in(cache, model, score_fn, n=3, seeds=(0, 1), table_T=(2, 3), alphas=(2.0, 5.0),
                            full=full, full_T=1000)
    # per T: 2 α on seed 0, then vanilla on 2 seeds and the chosen α on seed 1 (its seed-0 run is the search's)
    assert calls == [0, 0, 0, 1, 1] * 2
    for T in (2, 3):
        search = {a: cache.run(model, Method("statistics", alpha=a), T, 3, 0, score_fn)["value"] for a in (2.0, 5.0)}
        assert table.search[T] == search and table.alpha[T] == min(search, key=search.get)
        pds = Method("statistics", alpha=table.alpha[T])
        assert table.values[(T, pds.label)][0] == search[table.alpha[T]]
        assert table.verdicts[f"matches {T}"].holds == matches(table.values[(T, pds.label)], full, "x").holds
        assert set(table.verdicts) >= {f"beats {T}", f"matches {T}", f"vanilla matches {T}"}
    assert calls == [0, 0, 0, 1, 1] * 2  # the checks above read the cache
    assert [r["T"] for r in table.rows] == [2, 2, 3, 3, 1000] and table.rows[-1]["NFE"] == 2000
    assert table.rows[0]["FD mean"] == spread(table.values[(2, "vanilla")])[0]
    again = table1_stand_in(cache, model, score_fn, 3, (0, 1), (2, 3), (2.0, 5.0), full, full_T=1000)
    assert calls == [0, 0, 0, 1, 1] * 2 and again.rows == table.rows
    with pytest.raises(ValueError, match="at least one seed"):
        table1_stand_in(cache, model, score_fn, 3, (), (2,), (2.0,), full)


def test_parametric_grid_runs_every_cell_and_r_half_is_vanilla(tmp_path):
    from pds.lab.metrics import image_statistics
    from pds.lessons.paper_figures import parametric_grid

    model = toy("ncsnpp")
    score_fn, calls = counting_score()
    cache = ResultCache(tmp_path)
    fd, contrast = parametric_grid(cache, model, 3, 4, 0, (0.2, 0.5), (0.7, 1.6, 2.2), score_fn)
    assert fd.shape == contrast.shape == (2, 3) and len(calls) == 6
    van = cache.run(model, Method(), 3, 4, 0, score_fn)
    # r = 0.5H: the literal circle (h − H/2)² + (w − W/2)² ≤ 2r² covers the whole spectrum, so the filter is 1
    np.testing.assert_array_equal(fd[1], van["value"])
    assert not np.any(fd[0] == van["value"])
    x, _ = sample(model, Method("parametric", r=0.2, lam=1.6), 3, 4, 0)
    assert contrast[0, 1] == pytest.approx(image_statistics(x)["contrast"], abs=2e-3)  # samples stored as uint8


def test_plot_fig6_grid_draws_both_heatmaps():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pds.publish.notebooks import plot_fig6_grid

    fd = np.array([[80.0, 300.0], [120.0, 100.0]])
    fig = plot_fig6_grid(fd, np.ones_like(fd), (0.1, 0.5), (0.7, 1.6), [100.0, 104.0], 2.0, "FD at T=50")
    left, right = fig.axes[:2]  # the colour bars come after the two heatmaps
    assert "vanilla 102 ± 3" in left.get_title() and [t.get_text() for t in left.get_yticklabels()] == ["0.1H", "0.5H"]
    assert sorted(t.get_text() for t in left.texts) == ["100", "120", "300", "80"]
    assert {t.get_text() for t in right.texts} == {"0.50"}
    plt.close(fig)


def test_verdicts_can_count_a_run_without_value_as_the_worst():
    from pds.lab.experiments import beats, matches

    inf, nan = float("inf"), float("nan")
    with pytest.raises(ValueError, match="finite"):
        beats([1.0, inf], [2.0, 3.0], "x")
    assert not beats([1.0, inf], [2.0, 3.0], "x", nonfinite="worst").holds
    assert beats([1.0, 1.1], [2.0, nan], "x", nonfinite="worst").holds
    assert not matches([nan], [1.0], "x", nonfinite="worst").holds
    assert not matches([1.0], [1.0, inf], "x", nonfinite="worst").holds
    assert beats([1.0, 1.1], [2.0, 2.1], "x", nonfinite="worst").holds == beats([1.0, 1.1], [2.0, 2.1], "x").holds
    with pytest.raises(ValueError, match="nonfinite must be"):
        beats([1.0], [2.0], "x", nonfinite="ignore")


def test_ship_cache_merges_into_what_is_shipped_and_caps_the_bytes(tmp_path):
    from pds.lab.cache import ship_cache

    model = toy("ncsnpp")
    score_fn, calls = counting_score()
    first, second = ResultCache(tmp_path / "a"), ResultCache(tmp_path / "b")
    r1 = first.run(model, Method(), 3, 6, 0, score_fn)
    r2 = second.run(model, Method(), 3, 6, 1, score_fn)
    ship_cache(tmp_path / "a", tmp_path / "shipped", keep=4)
    assert ship_cache(tmp_path / "b", tmp_path / "shipped", keep=4, keep_bytes=784) == {"runs": 1, "rows": 2}
    reader = ResultCache(tmp_path / "fresh", shipped=tmp_path / "shipped")
    assert reader.get(r1["key"])["samples_kept"] == 4 and reader.get(r2["key"])["samples_kept"] == 1
    assert reader.samples(r2["key"]).shape[0] == 1  # 784 bytes: one 28² sample
