"""pds.cache and pds.fingerprint: result keys by behaviour, not by source text.

A refactor or a comment keeps every key; a numerical change of the sampler, preconditioner, network or metric changes
it; the shipped runs are keyed by what the current code computes, and one of them, drawn again from scratch, is
identical to the stored one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_experiments import counting_score, toy

import pds.experiments as E
from pds.cache import (
    ResultCache,
    method_of,
    metric_fingerprint,
    network_fingerprint,
    recompute,
    sampling_fingerprint,
)
from pds.data import DataNotFoundError
from pds.experiments import Method, SmallModel
from pds.fingerprint import digest
from pds.paths import DATA_DIR, REPO_ROOT

SHIPPED = DATA_DIR / "results" / "quality" / "default"


def shipped_rows() -> list[dict]:
    """The shipped runs of the models trained here, scored by the classifier FD against the test set (notebooks 05,
    06, 09, 10, and 11's and 12's trained-model side): what these tests can rebuild from a name. Notebook 11's
    exact-score runs and notebook 12's runs with its optimised filter files are rebuilt by the notebooks themselves,
    which read every one of them in the default profile."""
    return [r for r in ResultCache._rows(SHIPPED)
            if not r.get("name", "").startswith("exact:") and r.get("reference") == "Fashion-MNIST test set"
            and r["method"].get("filter") != "file"]


@pytest.fixture(scope="module")
def classifier_fd():
    from pds.data import load_idx_images
    from pds.metrics import ClassifierFD, load_classifier

    try:
        test = load_idx_images("fashion-mnist", "test")
    except DataNotFoundError as exc:
        pytest.skip(str(exc))
    return ClassifierFD(load_classifier(), test, "Fashion-MNIST test set")


def test_quantised_digest_ignores_rounding_noise_and_sees_real_changes():
    a = np.random.default_rng(0).standard_normal(1000)
    assert digest(a) == digest(a * (1 + 1e-15)) == digest(torch.from_numpy(a))
    assert digest(a) != digest(a * (1 + 1e-6))
    assert digest(np.array([1.0, -0.0, 1e-20])) == digest(np.array([1.0, 0.0, 0.0]))  # noise below the scale
    assert len({digest(np.array([1.0, v])) for v in (0.0, np.nan, np.inf, -np.inf)}) == 4
    assert digest(np.zeros(4)) != digest(np.zeros((2, 2)))
    assert digest("x", 3, [1, 2]) != digest("x", 3, [1, 3])


def test_alpha_5_and_5_0_are_one_method_with_one_key(tmp_path):
    assert Method("statistics", alpha=5) == Method("statistics", alpha=5.0)
    assert Method("statistics", alpha=5).alpha == 5.0 and isinstance(Method(omega=1).omega, float)
    model, (score_fn, calls) = toy("ncsnpp"), counting_score()
    cache = ResultCache(tmp_path)
    keys = {cache.key(model, Method("statistics", alpha=a), 3, 2, 0, score_fn) for a in (5, 5.0, np.float32(5))}
    assert len(keys) == 1 and calls == []
    assert cache.key(model, Method("statistics", alpha=2), 3, 2, 0, score_fn) not in keys
    with pytest.raises(TypeError, match="alpha must be a number"):
        Method("statistics", alpha="5")
    with pytest.raises(ValueError, match="stats_n"):
        Method("statistics", stats_n=0)


@pytest.mark.parametrize("kind,name", [("ncsnpp", "pc_sampler"), ("ncsn", "annealed_langevin")])
def test_a_refactor_keeps_the_sampling_fingerprint_and_a_numerical_change_does_not(kind, name, monkeypatch):
    model, method = toy(kind), Method("parametric", r=0.2, lam=1.6)
    base, vanilla = sampling_fingerprint(model, method), sampling_fingerprint(model, Method())
    real = getattr(E, name)
    monkeypatch.setattr(E, name, lambda *a, **k: real(*a, **k))  # other code, the same numbers
    assert sampling_fingerprint(model, method) == base

    def off(*a, **k):
        x, nfe = real(*a, **k)
        return x * (1 + 1e-6), nfe

    monkeypatch.setattr(E, name, off)
    assert sampling_fingerprint(model, method) != base
    monkeypatch.setattr(E, name, real)
    # the preconditioner's drift changed: PDS runs get new keys, vanilla runs keep theirs
    drift = E.Preconditioner.drift
    monkeypatch.setattr(E.Preconditioner, "drift", lambda self, v: drift(self, v) * (1 + 1e-6))
    assert sampling_fingerprint(model, method) != base and sampling_fingerprint(model, Method()) == vanilla


def test_a_modern_samplers_numbers_are_in_its_fingerprint(monkeypatch):
    model = toy("ncsnpp")
    base = {s: sampling_fingerprint(model, Method(sampler=s)) for s in ("euler", "heun")}
    assert base["euler"] != base["heun"]
    real = E.EXTRA_SAMPLERS["euler"]

    def off(*a, **k):
        x, nfe = real(*a, **k)
        return x + 1e-6, nfe

    monkeypatch.setitem(E.EXTRA_SAMPLERS, "euler", off)
    assert sampling_fingerprint(model, Method(sampler="euler")) != base["euler"]
    assert sampling_fingerprint(model, Method(sampler="heun")) == base["heun"]


def test_the_network_fingerprint_sees_a_changed_weight_not_a_copy():
    model = SmallModel("ncsnpp_fashion32")
    base = network_fingerprint(model)
    assert network_fingerprint(SmallModel("ncsnpp_fashion32")) == base  # loaded again: same numbers
    with torch.no_grad():
        p = next(model.score.parameters())
        p.view(-1)[0] += 1e-3 * float(p.abs().max())
    assert network_fingerprint(model) != base
    assert network_fingerprint(SmallModel("ncsnpp_fashion32_10k")) != base


def test_the_metric_fingerprint_sees_its_weights_and_reference():
    from pds.metrics import ClassifierFD, FashionClassifier

    torch.manual_seed(0)
    net = FashionClassifier()
    ref = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    base = ClassifierFD(net, ref, "random").fingerprint()
    assert ClassifierFD(net, ref.clone(), "random").fingerprint() == base
    assert ClassifierFD(net, ref[:299], "random").fingerprint() != base
    with torch.no_grad():
        net.head.weight[0, 0] += 1.0  # the head is not part of the features: same metric
        assert ClassifierFD(net, ref, "random").fingerprint() == base
        net.body[0].weight[0, 0, 0, 0] += 1e-3
    assert ClassifierFD(net, ref, "random").fingerprint() != base
    score_fn, _ = counting_score()
    assert metric_fingerprint(score_fn) == "name:counting_score.<locals>.score_fn"


def test_n_steps_each_is_none_for_ncsnpp_and_a_clear_error_without_steps():
    assert SmallModel("ncsnpp_fashion32").n_steps_each is None and SmallModel("ncsnpp_fashion32").full_T == 1000
    model = toy("ncsn")
    model.experiment = dataclasses.replace(model.experiment, n_steps_each=None)
    with pytest.raises(ValueError, match="no Langevin steps per level"):
        _ = model.full_T


def test_every_shipped_run_is_keyed_by_what_the_current_code_computes(classifier_fd):
    """A change that alters what a shipped run would compute orphans it: this test says so (then `make results`
    redraws them) instead of letting notebooks 05, 06, 09 and 10 recompute for hours."""
    rows = shipped_rows()
    assert len(rows) > 200 and len({r["key"] for r in rows}) == len(rows)
    cache, models = ResultCache(SHIPPED / "_unused_"), {}
    try:
        stale = []
        for row in rows:
            model = models.setdefault(row["name"], SmallModel(row["name"]))
            key = cache.key(model, method_of(row), row["T"], row["n"], row["seed"], classifier_fd,
                            batch_size=row["batch_size"], device=row["device"])
            assert (SHIPPED / f"{row['key']}.npz").is_file()
            if key != row["key"]:
                stale.append(f"{row['key']} ({row['label']}, T={row['T']}, seed {row['seed']})")
    finally:
        shutil.rmtree(SHIPPED / "_unused_", ignore_errors=True)
    assert not stale, f"{len(stale)} shipped runs no longer match the code: {stale[:5]}"


KEYS_SCRIPT = """
import json, sys
from pds.cache import ResultCache, method_of
from pds.data import load_idx_images
from pds.experiments import SmallModel
from pds.metrics import ClassifierFD, load_classifier
rows = json.loads(sys.stdin.read())
score_fn = ClassifierFD(load_classifier(), load_idx_images("fashion-mnist", "test"), "Fashion-MNIST test set")
cache, models = ResultCache(sys.argv[1]), {}
print(json.dumps([cache.key(models.setdefault(r["name"], SmallModel(r["name"])), method_of(r), r["T"], r["n"],
                            r["seed"], score_fn, batch_size=r["batch_size"]) for r in rows]))
"""


def test_a_comment_appended_to_the_sampler_source_keeps_every_key(tmp_path, classifier_fd):
    """The issue's criterion, literally: a copy of the package whose samplers.py ends in a comment computes the same
    keys for shipped runs of every sampler (one run per model, sampler and filter kind)."""
    (tmp_path / "src").mkdir()
    shutil.copytree(REPO_ROOT / "src" / "pds", tmp_path / "src" / "pds", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "data").symlink_to(DATA_DIR)
    with open(tmp_path / "src" / "pds" / "samplers.py", "a") as f:
        f.write("\n# a comment: the source text changed, what the code computes did not\n")
    picked = {}
    for row in shipped_rows():
        picked.setdefault((row["name"], row["method"]["sampler"], row["method"]["filter"],
                           row["method"]["solenoidal"]), row)
    rows = list(picked.values())
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    out = subprocess.run([sys.executable, "-c", KEYS_SCRIPT, str(tmp_path / "cache")], input=json.dumps(rows),
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert len(rows) >= 10 and json.loads(out.stdout.strip().splitlines()[-1]) == [r["key"] for r in rows]


def test_a_shipped_run_recomputed_from_scratch_is_identical(classifier_fd):
    """EDM's stochastic sampler with PDS (statistics R) on the NCSN++ trained here, 256 samples: the same key, the
    same image statistics of all samples and NFE, the 32 shipped samples byte for byte, and the FD to rounding (the
    metric's covariance products go through OpenBLAS, whose kernels depend on the CPU; the shipped runs were drawn
    on an AVX-512 machine: see ``python -m pds.cache verify``)."""
    (row,) = [r for r in shipped_rows() if r["name"] == "ncsnpp_fashion32" and r["method"]["sampler"] == "edm_churn"
              and r["method"]["filter"] == "statistics" and r["T"] == 10 and r["seed"] == 0]
    with np.load(SHIPPED / f"{row['key']}.npz") as data:
        stored = data["samples"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the shipped runs were drawn
    try:
        res = recompute(row, SmallModel("ncsnpp_fashion32"), classifier_fd, stored)
    finally:
        torch.set_num_threads(threads)
    assert res["key_now"] == row["key"] and res["nfe_now"] == row["nfe"]
    assert res["image_stats_now"] == row["image_stats"] and res["samples_compared"] == 32 and res["samples_identical"]
    assert res["value_rel_diff"] <= 1e-12, res
