"""pds.lessons.network_like: r² against closed forms, the patch calibration finding the machine it was given, the error
spectrum finding the frequency of a known difference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pds.lessons.network_like import (
    agreement,
    calibrate_patch,
    error_model,
    error_spectrum,
    noised,
    paired,
    per_image,
    r2,
    versus,
)
from pds.models.local_score import LocalScore


def test_r2_of_itself_its_mean_and_a_known_error():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(5, 1, 6, 6, dtype=torch.float64, generator=gen)
    assert torch.equal(r2(ref, ref), torch.ones(5, dtype=torch.float64))
    mean = ref.flatten(1).mean(1)[:, None, None, None].expand_as(ref)
    torch.testing.assert_close(r2(ref, mean), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-12)
    err = torch.randn(5, 1, 6, 6, dtype=torch.float64, generator=gen)
    spread = ((ref - mean) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(r2(ref, ref + err), 1 - (err**2).flatten(1).sum(1) / spread, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="one shape"):
        r2(ref, ref[:2])
    with pytest.raises(ValueError, match="constant"):
        r2(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_agreement_and_calibration_find_the_reference():
    gen = torch.Generator().manual_seed(1)
    X = torch.rand(5, 1, 6, 6, dtype=torch.float64, generator=gen)
    held_out = torch.rand(4, 1, 6, 6, dtype=torch.float64, generator=gen)
    truth = (LocalScore(X, 3, equivariant=False), torch.float64)
    table = agreement(truth, {"itself": truth, "zero": (lambda x, s: torch.zeros_like(x), torch.float64)}, held_out,
                      [0.1, 1.0])
    assert list(table["sigma"]) == [0.1, 0.1, 1.0, 1.0]
    assert (table[table.model == "itself"]["r2 median"] == 1.0).all()
    assert (table[table.model == "zero"]["r2 median"] < 1.0).all()
    cal = calibrate_patch(truth, lambda k: LocalScore(X, k, equivariant=False), [1, 3, 5], held_out, [0.1, 0.5])
    assert set(cal[cal.best]["k"]) == {3} and len(cal) == 6


def exact_wilcoxon_p(diff: np.ndarray) -> float:
    """The two-sided exact p-value of the signed-rank statistic, by enumerating every sign pattern (no ties)."""
    ranks = np.argsort(np.argsort(np.abs(diff))) + 1
    observed = ranks[diff > 0].sum()
    stats = [sum(r for r, s in zip(ranks, signs, strict=True) if s) for signs in itertools.product((0, 1),
                                                                                              repeat=len(diff))]
    mean = ranks.sum() / 2
    return float(np.mean([abs(t - mean) >= abs(observed - mean) for t in stats]))


def test_per_image_pairs_the_models_and_versus_is_wilcoxon():
    """per_image's medians are agreement's (the same noise for every model); versus's p-value is the exact signed-rank
    test enumerated over every sign pattern; paired names the best model and compares it with each other one."""
    gen = torch.Generator().manual_seed(4)
    X = torch.rand(7, 1, 5, 5, dtype=torch.float64, generator=gen)
    held_out = torch.rand(9, 1, 5, 5, dtype=torch.float64, generator=gen)
    truth = (LocalScore(X, 3, equivariant=False), torch.float64)
    models = {f"k={k}": (LocalScore(X, k, equivariant=False), torch.float64) for k in (1, 3, 5)}
    table = per_image(truth, models, held_out, [0.2, 0.8])
    medians = table.groupby(["sigma", "model"], sort=False)["r2"].median().to_numpy()
    np.testing.assert_allclose(medians, agreement(truth, models, held_out, [0.2, 0.8])["r2 median"], rtol=1e-14)
    for _, g in table.groupby("sigma"):
        wide = g.pivot(index="image", columns="model", values="r2")
        got = versus(g, "k=1", "k=5")
        diff = (wide["k=1"] - wide["k=5"]).to_numpy()
        assert got["p"].iloc[0] == pytest.approx(exact_wilcoxon_p(diff), rel=1e-12)
        assert got["closer"].iloc[0] == (got["p"].iloc[0] < 0.05 and np.median(diff) > 0)
    best = paired(table)
    assert set(best["best"]) == {"k=3"}  # the reference itself
    others = best[best.model != "k=3"]
    assert (others["closer"] == (others["p"] < 0.05)).all() and (others["median difference"] > 0).all()


def test_noised_is_seeded():
    x = torch.zeros(2, 1, 3, 3)
    assert torch.equal(noised(x, 0.5, 3), noised(x, 0.5, 3)) and not torch.equal(noised(x, 0.5, 3), noised(x, 0.5, 4))


def test_error_spectrum_finds_the_frequency_of_a_known_difference():
    h = w = 16
    f = 4  # a cosine of 4 cycles along W
    wave = torch.cos(2 * math.pi * f * torch.arange(w, dtype=torch.float64) / w).expand(h, w)

    def a(x, sigma):
        return x + wave

    def b(x, sigma):
        return x

    x = torch.rand(3, 1, h, w, dtype=torch.float64)
    radius, power = error_spectrum((a, torch.float64), (b, torch.float64), x, 0.5, bins=16)
    peak = radius[power.argmax()]
    assert abs(peak - f) < 1.0 and power.max() > 1e3 * power[radius < f - 1].max()


def test_error_model_reads_the_measured_spectrum_and_interpolates_in_log():
    rings, hw = np.array([0.0, 2.0, 4.0]), 16.0
    measured = {0.1: (rings, np.array([8.0, 4.0, 2.0])), 1.0: (rings, np.array([1.0, 1.0, 1.0]))}
    radius = torch.tensor([0.0, 1.0, 2.0, 4.0, 9.0], dtype=torch.float64)
    model = error_model(measured, (4, 4), radius)
    # at a measured σ and ring: the power over H·W; between rings geometric; beyond the last ring held
    assert torch.allclose(model(0.1), torch.tensor([8, 8 / 2**0.5, 4, 2, 2], dtype=torch.float64) / hw, rtol=1e-12)
    assert torch.allclose(model(1.0), torch.full((5,), 1 / hw, dtype=torch.float64), rtol=1e-12)
    # between σ's, σ²E is geometric in σ; beyond them σ²E is held
    mid = 0.1**0.5
    want = torch.sqrt(model(0.1) * 0.01 * model(1.0)) / mid**2
    assert torch.allclose(model(mid), want, rtol=1e-12)
    assert torch.allclose(model(10.0), model(1.0) / 100, rtol=1e-12)
    assert torch.allclose(model(0.01), model(0.1) * 100, rtol=1e-12)
    with pytest.raises(ValueError, match="positive powers"):
        error_model({0.1: (rings, np.array([1.0, 0.0, 1.0]))}, (4, 4), radius)
    with pytest.raises(ValueError, match="at least one"):
        error_model({}, (4, 4), radius)


class Calls(torch.nn.Module):
    """A score network (a torch module with one weight) that counts its calls."""

    def __init__(self, w: float = 1.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))
        self.calls = 0

    def forward(self, x, sigma):
        self.calls += 1
        return -self.w.to(x.dtype) * x / (1 + sigma**2)


def test_stored_tables_are_found_again_by_what_they_depend_on(tmp_path):
    """With a store, agreement / calibrate_patch / error_spectrum compute once, are read back equal (in a new store
    object on the same folder, and from a shipped copy), and are computed anew when a score, the images or a setting
    changes."""
    from pds.lab.store import Store

    gen = torch.Generator().manual_seed(3)
    X, held = torch.rand(5, 1, 6, 6, generator=gen, dtype=torch.float64), torch.rand(3, 1, 6, 6, generator=gen)
    net = Calls()
    machine = (LocalScore(X, 3, equivariant=False), torch.float64)
    plain = agreement(net, {"LS": machine}, held, [0.1, 1.0])
    store = Store(tmp_path / "runs", name="tables")
    first = agreement(net, {"LS": machine}, held, [0.1, 1.0], store=store)
    calls = net.calls
    again = agreement(net, {"LS": machine}, held, [0.1, 1.0], store=Store(tmp_path / "runs", name="tables"))
    assert net.calls == calls  # read, not computed (fingerprinting the network calls a float64 copy, not it)
    columns = ["sigma", "r2 median", "r2 q25", "r2 q75"]
    for table in (first, again):
        assert list(table["model"]) == list(plain["model"])
        assert np.allclose(table[columns].to_numpy(), plain[columns].to_numpy(), rtol=0, atol=1e-12)
    Store(tmp_path / "runs", name="tables").ship(tmp_path / "shipped")
    shipped = Store(tmp_path / "elsewhere", shipped=tmp_path / "shipped", name="tables")
    agreement(net, {"LS": machine}, held, [0.1, 1.0], store=shipped)
    assert net.calls == calls
    for changed in (dict(reference=Calls(1.01)), dict(images=held + 1e-3), dict(sigmas=[0.1, 2.0]), dict(seed=1)):
        args = {"reference": net, "images": held, "sigmas": [0.1, 1.0], "seed": 0, **changed}
        before = len(store.rows())
        agreement(args["reference"], {"LS": machine}, args["images"], args["sigmas"], args["seed"], store=store)
        assert len(store.rows()) == before + 1, changed
    table = calibrate_patch(net, lambda k: LocalScore(X, k, equivariant=False), (1, 3), held, [0.5], store=store)
    assert table.equals(calibrate_patch(net, lambda k: LocalScore(X, k, equivariant=False), (1, 3), held, [0.5],
                                        store=store))
    x = noised(held, 0.5, seed=2)
    radius, power = error_spectrum(net, machine, x, 0.5, bins=4, store=store)
    calls = net.calls
    radius2, power2 = error_spectrum(net, machine, x, 0.5, bins=4, store=store)
    assert net.calls == calls and np.array_equal(radius, radius2) and np.array_equal(power, power2)
    expect = error_spectrum(net, machine, x, 0.5, bins=4)
    assert np.allclose(power, expect[1], rtol=1e-6, atol=0) and np.array_equal(radius, expect[0])


def test_the_code_fingerprint_sees_a_numerical_change(monkeypatch):
    """behaviour() is the module's results on canonical inputs: a change of r² by 1e-6 changes it beyond tolerance."""
    import pds.lessons.network_like as nl

    before = nl.behaviour()
    nl.behaviour.cache_clear()
    assert nl.behaviour().same(before)
    original = nl.r2
    monkeypatch.setattr(nl, "r2", lambda a, b: original(a, b) * (1 + 1e-6))
    nl.behaviour.cache_clear()
    try:
        assert not nl.behaviour().same(before)
    finally:
        monkeypatch.undo()
        nl.behaviour.cache_clear()


def test_the_shipped_tables_are_found_by_the_current_code():
    """Notebook 13's shipped tables name the current code's fingerprint and the shipped networks' (within
    tolerance): a change that would recompute them (20 minutes) fails here first."""
    from pds.fingerprint import score_fingerprint
    from pds.lab.experiments import SmallModel
    from pds.lab.store import Store
    from pds.lessons.network_like import behaviour
    from pds.storage import DATA_DIR

    shipped = Store(DATA_DIR / "results" / "network_like" / "default", name="tables")
    rows = shipped.rows()
    assert len(rows) >= 10
    now = behaviour()
    assert all(shipped.table.known[r["description"]["code"]].same(now) for r in rows)
    net = SmallModel("ncsnpp_fashion32")
    first = next(r for r in rows if r["description"]["computation"] == "agreement"
                 and len(r["description"]["sigmas"]) == 4)  # the NCSN++ is compared at 4 σ, the NCSN at 3
    fp = score_fingerprint(net.score, net.shape, first["description"]["sigmas"])
    assert shipped.table.known[first["description"]["reference"]["score"]].same(fp)
