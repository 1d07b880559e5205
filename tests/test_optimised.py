"""pds.lessons.optimised.error_aware (issue 31, item 4): the filter optimised with a network's measured score error, run
on the model beside vanilla, the paper's R and the optimum without the error; its table is the exact W2 of each."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pds.configs import experiment
from pds.exact import optimal
from pds.lab.cache import ResultCache
from pds.lab.image_sets import ImageSet, exact_model
from pds.lab.metrics import MetricResult
from pds.lab.optima import OptimumStore
from pds.lessons.optimised import ERROR_METHODS, error_aware, own_settings


def mean_metric(x, nfe=None, seed=None):
    return MetricResult("mean", float(x.mean()), len(x), "none", seed, nfe, {})


mean_metric.name = "mean of the samples (test)"


def test_error_aware_filter_lowers_the_w2_with_the_error_and_runs_every_method(tmp_path):
    X = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = dataclasses.replace(experiment("cifar10_ncsnpp"), sigma_max=5.0, levels=40)
    model = exact_model(ImageSet("toy", X, None, {}), e)
    assert own_settings(model).sigma_max == 5.0 and own_settings(model).levels == 40
    rings = np.arange(6, dtype=np.float64)
    measured = {0.1: (rings, 2e4 / (1 + rings)), 1.0: (rings, np.full(6, 200.0))}  # as large as the score

    def start_of(pre, shape):
        return optimal.RadialFilter.fit(pre.freq_gain.expand(shape) ** 2, n_knots=5)

    store = OptimumStore(tmp_path / "store")
    cache = ResultCache(tmp_path / "cache")
    runs, table, profiles = error_aware(store, cache, model, mean_metric, 4, X, 12, (0, 1), measured, start_of, 5, 20,
                                        tmp_path)
    assert list(runs) == list(ERROR_METHODS) and all(len(rows) == 2 for rows in runs.values())
    assert {rows[0]["nfe"] for rows in runs.values()} == {12}
    w = table.set_index("method")
    with_error = w["Gaussian W2 with the network's error"]
    assert with_error["optimised R, error-aware"] <= with_error["paper's R"]
    assert with_error["optimised R, error-aware"] < with_error["optimised R"]
    assert w["Gaussian W2"]["optimised R"] <= w["Gaussian W2"]["paper's R"]
    assert (with_error > w["Gaussian W2"]).all()  # the error costs every filter
    assert (profiles[profiles.curve == "p: vanilla"]["value"] == 1).all()
    assert all(g["radius"].is_monotonic_increasing for _, g in profiles.groupby("curve"))
    assert {c for c in profiles.curve if c.startswith("E·")} == {f"E·(s + σ²) at σ = {s}" for s in (0.01, 0.1, 1, 5)}
    assert len(store.store.rows()) == 2  # the two searches, found again the second time
    again, _, _ = error_aware(store, ResultCache(tmp_path / "cache"), model, mean_metric, 4, X, 12, (0, 1), measured,
                           start_of, 5, 20, tmp_path)
    assert len(store.store.rows()) == 2 and again == runs
    with pytest.raises(ValueError):
        error_aware(store, ResultCache(tmp_path / "cache"), model, mean_metric, 4, X, 12, (0,), {}, start_of, 5, 20,
                    tmp_path)


def test_carry_table_shows_a_method_with_a_diverged_seed_as_nan():
    """A diverged run has no value: its method's mean and spread are NaN in the table (spread refuses non-finite
    values, so the table once raised instead)."""
    from pds.lessons.optimised import carry_table

    ok = [{"value": v, "nfe": 20} for v in (1.0, 3.0)]
    bad = [{"value": 2.0, "nfe": 20}, {"value": float("inf"), "nfe": 20, "diverged": True}]
    table = carry_table({("trained", 20, "vanilla"): ok, ("trained", 20, "PDS"): bad}, {("trained", 20): (0.5, 0.25)})
    assert table.loc[0, "value mean"] == 2.0 and table.loc[0, "value std"] == pytest.approx(2 ** 0.5)
    assert np.isnan(table.loc[1, "value mean"]) and np.isnan(table.loc[1, "value std"])
