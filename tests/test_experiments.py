"""pds.experiments: iteration counts, cropping, seeding, vanilla identity, and the result cache."""

from __future__ import annotations

import json

import pytest
import torch

from pds.experiments import Method, ResultCache, SmallModel, sample
from pds.metrics import MetricResult


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
    (tmp_path / f"{c['key']}.npy").unlink()  # samples lost: the run is redone
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
