"""pds.lab.cache and pds.fingerprint: result keys by behaviour, not by source text.

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

import pds.lab.experiments as E
from pds.fingerprint import DATA_RTOL, RTOL, Approx, Fingerprint, FingerprintTable, fingerprint
from pds.lab.cache import (
    ResultCache,
    metric_fingerprint,
    network_fingerprint,
    sampling_fingerprint,
    stored_rows,
)
from pds.lab.data import DataNotFoundError
from pds.lab.experiments import Method, SmallModel
from pds.samplers import SAMPLERS
from pds.storage import DATA_DIR, REPO_ROOT

SHIPPED = DATA_DIR / "results" / "quality" / "default"
OPTIMAL = DATA_DIR / "results" / "optimal" / "default"


def shipped_rows() -> list[dict]:
    """Every shipped run of the default profile (notebooks 05, 06, 09, 10, 11, 12)."""
    return stored_rows(SHIPPED)


@pytest.fixture(scope="module")
def classifier_fd():
    from pds.lab.data import load_idx_images
    from pds.lab.metrics import ClassifierFD, load_classifier

    try:
        test = load_idx_images("fashion-mnist", "test")
    except DataNotFoundError as exc:
        pytest.skip(str(exc))
    return ClassifierFD(load_classifier(), test, "Fashion-MNIST test set")


def test_a_fingerprint_keeps_its_numbers_and_compares_them_within_tolerance():
    a = np.random.default_rng(0).standard_normal(1000)
    base = fingerprint(a)
    assert base.same(fingerprint(a * (1 + 1e-13))) and base.same(fingerprint(torch.from_numpy(a)))
    assert base.id == fingerprint(a.copy()).id  # an id names a fingerprint; equal numbers give equal ids
    assert not base.same(fingerprint(a * (1 + 1e-6)))  # a numerical change
    b = a.copy()
    b[17] += 1e-3  # one entry of a thousand
    assert not base.same(fingerprint(b))
    noisy = a * (1 + 1e-7 * np.random.default_rng(1).standard_normal(1000))  # float32-level noise
    assert not base.same(fingerprint(noisy)) and fingerprint(Approx(a, DATA_RTOL)).same(fingerprint(Approx(noisy,
                                                                                                        DATA_RTOL)))
    assert len({fingerprint(np.array([1.0, v])).exact for v in (0.0, np.nan, np.inf, -np.inf)}) == 4
    assert fingerprint(np.zeros(4)).exact != fingerprint(np.zeros((2, 2))).exact
    assert fingerprint(np.zeros(4, np.float32)).exact != fingerprint(np.zeros(4)).exact
    assert not fingerprint("x", 3, [1, 2]).same(fingerprint("x", 3, [1, 3]))
    assert Fingerprint.from_dict(base.to_dict()) == base and base.largest_difference(base) == 0.0
    nested = fingerprint("outer", base, 2.0)
    assert nested.same(fingerprint("outer", fingerprint(a * (1 + 1e-13)), 2.0 * (1 + 1e-12)))
    assert not nested.same(fingerprint("outer", base, 2.0 * (1 + 1e-6)))


def hashed_signs(start, n, j):
    """The fixed ±1 patterns of pds.fingerprint written from their rule, one index at a time in Python integers:
    splitmix-style mixing of i + 1, the sign is bit 40."""
    mult = 0x9E3779B97F4A7C15 ^ (0x632BE59BD9B4E019 * (j + 1) & 0xFFFFFFFFFFFFFFFF)
    out = []
    for i in range(start + 1, start + n + 1):
        v = (i * mult) & 0xFFFFFFFFFFFFFFFF
        v ^= v >> 31
        v = (v * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        v ^= v >> 29
        out.append(1.0 if (v >> 40) & 1 else -1.0)
    return np.array(out)


@pytest.mark.parametrize("start,n,j", [(0, 1000, 0), (2**22 - 7, 300, 3), (5, 17, 1), (123456789, 64, 2)])
def test_the_sign_patterns_follow_their_rule_and_their_kept_bits_come_back_the_same(start, n, j):
    from pds.fingerprint import _signs

    first, again = _signs(start, n, j), _signs(start, n, j)
    assert first.dtype == np.float64 and np.array_equal(first, hashed_signs(start, n, j))
    assert np.array_equal(again, first) and again is not first


def test_ids_near_a_rounding_boundary_differ_and_the_table_still_matches(tmp_path):
    """The case a hash of rounded numbers gets wrong: two values within tolerance on either side of a boundary."""
    lo, hi = fingerprint(0.1234567849999), fingerprint(0.1234567850001)
    assert lo.id != hi.id and lo.same(hi)
    table = FingerprintTable(tmp_path)
    table.add(lo, hi)
    assert table.matches({"T": 5, "f": lo.id}, {"T": 5, "f": hi.id})
    assert not table.matches({"T": 5, "f": lo.id}, {"T": 6, "f": hi.id})
    far = fingerprint(0.1234568)
    table.add(far)
    assert not table.matches({"T": 5, "f": lo.id}, {"T": 5, "f": far.id})
    assert RTOL < DATA_RTOL


def test_the_cache_finds_a_run_whose_fingerprint_id_came_out_otherwise(tmp_path, monkeypatch):
    """As on a machine whose float kernels round otherwise: one number of the network fingerprint lies at a rounding
    boundary of its id and moves across it by 4e-10 (within its tolerance, 1e-9): the key changes, the run is served
    from the cache all the same; moved by 1e-6 it is another network, and the run is drawn."""
    import pds.lab.cache as C

    model, (score_fn, calls) = toy("ncsnpp"), counting_score()
    real = C.network_fingerprint

    def with_number(v):  # the real fingerprint with the first normalised number set to v
        def fp(m):
            f = real(m)
            i = next(k for k, g in enumerate(f.groups) if g[1] == 1.0)
            r, fl, nums = f.groups[i]
            return Fingerprint(f.exact, f.groups[:i] + ((r, fl, (v, *nums[1:])),) + f.groups[i + 1:])
        return fp

    edge = 0.123456785  # between 0.12345678 and 0.12345679: the boundary of 8 decimals
    monkeypatch.setattr(C, "network_fingerprint", with_number(edge - 2e-10))
    row = ResultCache(tmp_path).run(model, Method(), 3, 2, 0, score_fn)
    monkeypatch.setattr(C, "network_fingerprint", with_number(edge + 2e-10))
    again = ResultCache(tmp_path)
    assert again.key(model, Method(), 3, 2, 0, score_fn) != row["key"]
    assert again.run(model, Method(), 3, 2, 0, score_fn) == row and len(calls) == 1
    monkeypatch.setattr(C, "network_fingerprint", with_number(edge + 1e-6))
    assert ResultCache(tmp_path).run(model, Method(), 3, 2, 0, score_fn)["key"] != row["key"] and len(calls) == 2


def test_a_shipped_run_is_found_when_a_setting_differs_in_its_last_bit(tmp_path):
    """What this AMD EPYC found (issue 37): np.exp rounds otherwise than on the machine that shipped the runs, so
    notebook 11's σ ladder of the NCSN settings came out 0.027825594022071267 instead of …264, the descriptions
    differed and 19 shipped runs were drawn again. A float of a description is compared within SETTINGS_RTOL: every
    shipped row with its σ ladder moved by one ulp is found, and rebuilt; moved by 1e-9 it is another setting."""
    import math

    from pds.fingerprint import SETTINGS_RTOL, alike
    from pds.lab.cache import description_of

    cache = ResultCache(tmp_path, shipped=SHIPPED)
    rows = [r for r in shipped_rows() if r["model"].get("sigmas")][:20]
    assert rows
    for row in rows:
        desc = description_of(row)

        def with_sigmas(change, desc=desc):
            return {**desc, "model": {**desc["model"], "sigmas": [change(s) for s in desc["model"]["sigmas"]]}}

        assert cache.find(with_sigmas(lambda s: math.nextafter(s, 1.0)))["key"] == row["key"]
        assert cache.find(with_sigmas(lambda s: s * (1 + 1e-9))) is None
    assert alike({"a": [0.1, 2]}, {"a": [0.1 * (1 + SETTINGS_RTOL / 2), 2]})
    assert not alike({"a": [0.1, 2]}, {"a": [0.1, 3]}) and not alike({"a": 0.1}, {"a": "0.1"})


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


@pytest.mark.parametrize("kind,name", [("ncsnpp", "pc"), ("ncsn", "annealed_langevin")])
def test_a_refactor_keeps_the_sampling_fingerprint_and_a_numerical_change_does_not(kind, name, monkeypatch):
    model, method = toy(kind), Method("parametric", r=0.2, lam=1.6)
    base, vanilla = sampling_fingerprint(model, method), sampling_fingerprint(model, Method())
    real = SAMPLERS[name]
    # other code, the same numbers
    monkeypatch.setitem(SAMPLERS, name, dataclasses.replace(real, fn=lambda *a, **k: real.fn(*a, **k)))
    assert sampling_fingerprint(model, method) == base  # the same numbers, bit for bit, in one process

    def off(*a, **k):
        x, nfe = real.fn(*a, **k)
        return x * (1 + 1e-6), nfe

    monkeypatch.setitem(SAMPLERS, name, dataclasses.replace(real, fn=off))
    assert not sampling_fingerprint(model, method).same(base)
    monkeypatch.setitem(SAMPLERS, name, real)
    # the preconditioner's drift changed: PDS runs get new keys, vanilla runs keep theirs
    drift = E.Preconditioner.drift
    monkeypatch.setattr(E.Preconditioner, "drift", lambda self, v: drift(self, v) * (1 + 1e-6))
    assert not sampling_fingerprint(model, method).same(base) and sampling_fingerprint(model, Method()) == vanilla


def test_a_modern_samplers_numbers_are_in_its_fingerprint(monkeypatch):
    model = toy("ncsnpp")
    base = {s: sampling_fingerprint(model, Method(sampler=s)) for s in ("euler", "heun")}
    assert not base["euler"].same(base["heun"])
    real = SAMPLERS["euler"]

    def off(*a, **k):
        x, nfe = real.fn(*a, **k)
        return x + 1e-6, nfe

    monkeypatch.setitem(SAMPLERS, "euler", dataclasses.replace(real, fn=off))
    assert not sampling_fingerprint(model, Method(sampler="euler")).same(base["euler"])
    assert sampling_fingerprint(model, Method(sampler="heun")) == base["heun"]


def test_the_network_fingerprint_sees_a_changed_weight_not_a_copy():
    model = SmallModel("ncsnpp_fashion32")
    base = network_fingerprint(model)
    assert network_fingerprint(SmallModel("ncsnpp_fashion32")) == base  # loaded again: same numbers
    with torch.no_grad():
        p = next(model.score.parameters())
        p.view(-1)[0] += 1e-3 * float(p.abs().max())
    assert not network_fingerprint(model).same(base)
    assert not network_fingerprint(SmallModel("ncsnpp_fashion32_10k")).same(base)


def test_the_metric_fingerprint_sees_its_weights_and_reference():
    from pds.lab.metrics import ClassifierFD, FashionClassifier

    torch.manual_seed(0)
    net = FashionClassifier()
    ref = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    base = ClassifierFD(net, ref, "random").fingerprint()
    assert ClassifierFD(net, ref.clone(), "random").fingerprint().same(base)
    assert not ClassifierFD(net, ref[:299], "random").fingerprint().same(base)
    with torch.no_grad():
        net.head.weight[0, 0] += 1.0  # the head is not part of the features: same metric
        assert ClassifierFD(net, ref, "random").fingerprint().same(base)
        net.body[0].weight[0, 0, 0, 0] += 1e-3
    assert not ClassifierFD(net, ref, "random").fingerprint().same(base)
    score_fn, _ = counting_score()
    assert metric_fingerprint(score_fn) == fingerprint("name:counting_score.<locals>.score_fn")


def test_n_steps_each_is_none_for_ncsnpp_and_a_clear_error_without_steps():
    assert SmallModel("ncsnpp_fashion32").n_steps_each is None and SmallModel("ncsnpp_fashion32").full_T == 1000
    model = toy("ncsn")
    model.experiment = dataclasses.replace(model.experiment, n_steps_each=None)
    with pytest.raises(ValueError, match="no Langevin steps per level"):
        _ = model.full_T


def test_every_kind_of_shipped_run_is_found_even_with_a_comment_appended_to_the_sampler_source(tmp_path):
    """A change that alters what a shipped run would compute orphans it: this test says so (then `make results`
    redraws them) instead of letting the notebooks recompute for hours; a change that does not (the issue's
    criterion, literally: samplers.py ends in a comment) orphans none. In a copy of the package so changed, one run of
    every kind (each model, sampler, filter and option once, at its shortest T: `python -m pds.lab.recompute found
    --kinds`) is rebuilt from what it records (pds.lab.recompute.rebuild: the models trained here, the exact image-set
    targets, their metrics and filter files) and looked up as the notebooks look it up (its key, or its fingerprints
    within tolerance). Every row, a few minutes: `python -m pds.lab.recompute found`, which `make ship` runs."""
    (tmp_path / "src").mkdir()
    shutil.copytree(REPO_ROOT / "src" / "pds", tmp_path / "src" / "pds", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "data").symlink_to(DATA_DIR)
    (REPO_ROOT / "build").mkdir(exist_ok=True)
    (tmp_path / "build").symlink_to(REPO_ROOT / "build")  # the memo of the metric's reference statistics
    with open(tmp_path / "src" / "pds" / "samplers.py", "a") as f:
        f.write("\n# a comment: the source text changed, what the code computes did not\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    out = subprocess.run([sys.executable, "-m", "pds.lab.recompute", "found", "--kinds"], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    print(out.stdout[-2000:])
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[0])
    assert got["rows"] > 500 and got["keys"] == got["rows"] and got["checked"] >= 40
    assert not got["stale"], f"{len(got['stale'])} shipped runs no longer match the code: {got['stale'][:5]}"


def test_one_of_each_kind_keeps_every_kind_once_at_its_shortest_length():
    from pds.lab.recompute import one_of_each_kind

    rows = stored_rows(SHIPPED)
    kept = one_of_each_kind(rows)

    def kind(row):
        method = {k: v for k, v in row["method"].items() if k not in ("alpha", "r", "lam", "omega")}
        return json.dumps([row["name"], row["model"].get("source"), method], sort_keys=True)

    assert len({kind(r) for r in kept}) == len(kept) == len({kind(r) for r in rows})
    assert all(r["T"] == min(o["T"] for o in rows if kind(o) == kind(r)) for r in kept)


OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}


def test_shipped_runs_recomputed_under_another_kernel_set_are_within_tolerance(classifier_fd):
    """Two shipped runs drawn again from scratch in a process whose float kernels round otherwise (ATen's scalar
    kernels, oneDNN's AVX2, OpenBLAS's Haswell ones): the released PC sampler with notebook 12's optimised filter
    (its file rebuilt from the stored optimum) on the NCSN++ trained here (256 samples, T = 10) and PDS (R + A from a
    filter file estimated at run time) on the exact score of the LFW faces (500 samples). `python -m pds.lab.recompute
    verify` finds them by their fingerprints and their samples, values and
    statistics within the float32 tolerances; it says whether they also came out bit for bit."""
    (trained,) = [r for r in shipped_rows() if r["name"] == "ncsnpp_fashion32" and r["method"]["sampler"] == "released"
                and r["method"]["filter"] == "file" and r["T"] == 10 and r["seed"] == 0]
    (faces,) = [r for r in shipped_rows() if r["name"] == "exact:lfw-faces-25" and r["method"]["space"]
                and r["T"] == 20 and r["seed"] == 0]
    env = {**os.environ, **OTHER_KERNELS, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "pds.lab.recompute", "verify", trained["key"], faces["key"]],
                         capture_output=True, text=True, env=env)
    print(out.stdout[-3000:], out.stderr[-3000:])
    assert out.returncode == 0, out.stderr[-2000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["key"] for r in results] == [trained["key"], faces["key"]]
    assert all(r["within_tolerance"] and r["fingerprints_match"] and r["samples_compared"] >= 1 for r in results)
