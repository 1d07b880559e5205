"""pds.lab.image_sets: sampler-only measures on exact image-set targets, and models built on the exact score."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pds.configs import experiment
from pds.lab.image_sets import ImageSet, LandingMetric, els_twin, exact_model, exact_twin, hit_statistics, image_set


def test_hit_statistics_against_uniform():
    even = hit_statistics(np.repeat(np.arange(10), 5), 10, labels=np.arange(10) % 2)
    assert even["kl"] == 0.0 and even["chi2"] == 0.0 and even["distinct"] == 10 and even["class_tv"] == 0.0
    assert even["kl_floor"]["mean"] > 0 and even["distinct_uniform"] == pytest.approx(10 * (1 - 0.9**50))
    one = hit_statistics(np.zeros(50, int), 10, labels=np.arange(10) % 2)
    assert one["kl"] == pytest.approx(math.log(10)) and one["distinct"] == 1 and one["class_tv"] == pytest.approx(0.5)
    assert one["chi2"] == pytest.approx(9 * 50)  # (50 − 5)²/5 + 9·5²/5
    none = hit_statistics([], 10)
    assert none["hits"] == 0 and none["kl"] is None
    with pytest.raises(ValueError, match="indices must lie"):
        hit_statistics([10], 10)
    with pytest.raises(ValueError, match="one class per image"):
        hit_statistics([1], 10, labels=[0, 1])


def test_landing_metric_tells_landed_from_strayed_samples():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 1, 8, 8, generator=g)
    labels = torch.arange(40) % 4
    metric = LandingMetric(X, sigma_min=0.01, labels=labels, primary="strayed")
    near = (X.repeat(2, 1, 1, 1) + 0.002 * torch.randn(80, 1, 8, 8, generator=g)).clamp(0, 1)
    res = metric(near, nfe=10, seed=0)
    assert res.value == 0.0 and res.extra["landed"] == 1.0
    assert res.extra["hits"]["distinct"] == 40 and res.extra["hits"]["kl"] == pytest.approx(0)
    far = torch.rand(30, 1, 8, 8, generator=g)
    res = metric(far, nfe=10, seed=0)
    assert res.value == 1.0 and res.extra["hits"]["hits"] == 0 and res.extra["relative_distance"]["median"] > 10
    assert metric.fingerprint().same(LandingMetric(X.clone(), 0.01, labels=labels, primary="strayed").fingerprint())
    assert not metric.fingerprint().same(LandingMetric(X, 0.02, labels=labels, primary="strayed").fingerprint())
    assert not metric.fingerprint().same(LandingMetric(X, 0.01, labels=labels).fingerprint())  # another measure
    with pytest.raises(ValueError, match="needs classifier_fd"):
        LandingMetric(X, 0.01, primary="fd")
    X2 = X.clone()
    X2[0, 0, 0, 0] += 0.5
    assert not metric.fingerprint().same(LandingMetric(X2, 0.01, labels=labels, primary="strayed").fingerprint())


def test_exact_model_runs_the_samplers_and_the_cache(tmp_path):
    from pds.lab.cache import ResultCache
    from pds.lab.experiments import Method

    g = torch.Generator().manual_seed(1)
    X = torch.rand(12, 1, 8, 8, generator=g)
    exp = dataclasses.replace(experiment("cifar10_ncsnpp"), sigma_max=8.0, levels=100)
    model = exact_model(ImageSet("toy", X, None, {"set": "toy"}), exp, pad=2)
    assert model.name == "exact:toy-pad2" and model.config["source"]["experiment"] == "cifar10_ncsnpp"
    assert model.shape == (1, 12, 12) and model.kind == "ncsnpp" and model.full_T == 100
    metric = LandingMetric(X, sigma_min=exp.sigma_min, primary="strayed")
    cache = ResultCache(tmp_path)
    row = cache.run(model, Method(), 100, 24, 0, metric)
    assert row["value"] <= 0.1 and row["extra"]["hits"]["distinct"] >= 8  # zero model error: it lands on the set
    one, three = (cache.run(model, Method(), T, 24, 0, metric) for T in (1, 3))
    assert one["value"] == 1.0  # one iteration leaves the noise of σ_max: nothing lands
    assert row["extra"]["relative_distance"]["median"] < three["extra"]["relative_distance"]["median"] < 1.5
    pds = cache.run(model, Method("statistics", alpha=5.0), 100, 24, 0, metric)
    assert pds["key"] != row["key"] and cache.run(model, Method(), 100, 24, 0, metric) == row
    churn = cache.run(model, Method(sampler="edm_churn"), 20, 24, 0, metric)
    assert churn["nfe"] == 39
    ncsn = exact_model(ImageSet("toy", X, None, {}), dataclasses.replace(experiment("mnist_ncsn"), levels=5))
    assert ncsn.kind == "ncsn" and len(ncsn.config["sigmas"]) == 5 and ncsn.full_T == 500


def test_exact_twin_copies_the_trained_models_settings():
    from pds.lab.experiments import SmallModel

    trained = SmallModel("ncsnpp_fashion32")
    X = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    twin = exact_twin(trained, ImageSet("ten images", X, None, {"set": "ten"}))
    assert twin.shape == trained.shape and twin.full_T == trained.full_T and twin.pad == trained.pad
    assert twin.config["sigma_max"] == trained.config["sigma_max"] and twin.experiment is trained.experiment
    assert "file_sha256" not in twin.config and twin.config["source"] == {"set": {"set": "ten"},
                                                                         "twin_of": "ncsnpp_fashion32"}
    with pytest.raises(ValueError, match="has shape"):
        exact_twin(trained, ImageSet("wrong size", torch.rand(10, 1, 30, 30), None, {}))


def test_els_twin_is_the_local_score_machine_with_the_trained_models_settings(tmp_path):
    from pds.lab.cache import ResultCache
    from pds.lab.experiments import Method, SmallModel
    from pds.lab.metrics import MetricResult
    from pds.lab.recompute import rebuild
    from pds.models.local_score import LocalScore, PatchSchedule

    trained = SmallModel("ncsnpp_fashion32")
    three = image_set({"set": "fashion-mnist", "split": "train", "first": 3})
    patch = PatchSchedule((0.1, 1.0), (3, 5))
    twin = els_twin(trained, three, patch)
    assert twin.name == "els:fashion-mnist-train-3" and twin.shape == trained.shape and twin.full_T == trained.full_T
    assert isinstance(twin.score, LocalScore) and twin.score.equivariant and twin.score.patch_size(0.5) == 5
    assert twin.config["source"] == {"set": three.recipe, "twin_of": "ncsnpp_fashion32",
                                     "els": {"sigmas": [0.1, 1.0], "ks": [3, 5]}}
    other = els_twin(trained, three, PatchSchedule((0.1, 1.0), (3, 7)))
    metric = lambda x, nfe=None, seed=None: MetricResult("mean", float(x.mean()), len(x), "none", seed, nfe, {})  # noqa: E731
    cache = ResultCache(tmp_path / "cache")
    row = cache.run(twin, Method(), 2, 2, 0, metric)
    assert cache.key(other, Method(), 2, 2, 0, metric) != row["key"]  # the schedule is in the key
    model, _, _ = rebuild({**row, "metric_source": {"classifier_fd": "fashion-mnist/test"}}, tmp_path)
    assert model.score.patch_size(0.5) == 5 and model.name == "els:fashion-mnist-train-3"


def test_image_set_recipes_rebuild_the_notebooks_sets():
    faces = image_set({"set": "lfw-faces"})
    assert faces.name == "lfw-faces-25" and faces.images.shape == (100, 1, 25, 25) and faces.labels is None
    crops = image_set({"set": "photo-crops", "n": 3, "size": 16, "seed": 0})
    assert crops.images.shape == (3, 3, 16, 16) and torch.equal(
        crops.images, image_set({"set": "photo-crops", "n": 3, "size": 16, "seed": 0}).images)
    with pytest.raises(ValueError, match="unknown image set recipe"):
        image_set({"set": "cifar"})


def test_covers_reads_the_floor_of_uniform_draws():
    from pds.lab.image_sets import covers

    def row(indices):
        return {"extra": {"hits": hit_statistics(indices, 20)}}

    rng = np.random.default_rng(0)
    even = [row(rng.integers(0, 20, 200)) for _ in range(3)]
    skewed = [row(rng.integers(0, 5, 200)) for _ in range(3)]
    assert covers(even, "x").holds and not covers(skewed, "x").holds
    assert not covers([row([]), *even], "x").holds  # a run that landed nothing does not cover
