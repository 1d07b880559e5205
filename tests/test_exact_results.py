"""pds.lessons.exact_results: exact results kept and found again by the target, the preconditioner, the settings and
what pds.exact computes; ExactResult.radial's rings sum to W2²."""

from __future__ import annotations

import math

import pytest
import torch

import pds.lessons.exact_results as er
from pds.configs import experiment
from pds.exact import pc_exact, w2_within
from pds.lessons.exact_results import ExactResults
from pds.precondition import Preconditioner
from pds.scores import StationaryGaussianScore

SETTINGS = experiment("cifar10_ncsnpp")


def images():
    return 0.5 * torch.rand(40, 3, 12, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.2


@pytest.fixture(scope="module")
def target():
    return StationaryGaussianScore.from_images(images())


def test_radial_rings_sum_to_w2_squared(target):
    pre = Preconditioner(freq=torch.log1p(target.expected_power()), alpha=5.0)
    for options in ({}, {"predictor": "kept", "prior": "vanilla"}):
        r = pc_exact(target, 0.01, 5.0, 30, 0.16, iterations=9, preconditioner=pre, **options)
        rings = r.radial(bins=5)
        assert math.isclose(sum(rings["w2_squared"]), r.w2**2, rel_tol=1e-12)
        assert len(rings["radius"]) == len(rings["ratio"]) == len(rings["w2_squared"]) <= 5
        dense = r.variance_ratio()  # the ring means are means of v/s on the half plane
        assert min(rings["ratio"]) >= float(dense.min()) - 1e-12 and max(rings["ratio"]) <= float(dense.max()) + 1e-12


def test_results_are_computed_once_and_equal_the_exact_ones(tmp_path, target, monkeypatch):
    pre = Preconditioner(freq=torch.log1p(target.expected_power()), alpha=5.0)
    results = ExactResults(tmp_path)
    got = results.within(target, SETTINGS, "PC + PDS (released)", 40, pre)
    assert got == w2_within(target, SETTINGS, "PC + PDS (released)", 40, pre)
    summary = results.pc(target, 0.01, 5.0, 30, 0.16, iterations=9, preconditioner=pre, denoise=False)
    exact = pc_exact(target, 0.01, 5.0, 30, 0.16, iterations=9, preconditioner=pre, denoise=False)
    assert summary.w2 == exact.w2 and summary.kl == exact.kl and summary.nfe == exact.nfe
    assert list(summary.w2_squared) == exact.radial(er.BINS)["w2_squared"]

    def fail(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(er, "w2_within", fail)
    monkeypatch.setattr(er, "pc_exact", fail)
    again = ExactResults(tmp_path)  # a new process reads the folder; a rebuilt target and filter are the same
    same_target = StationaryGaussianScore.from_images(images())
    same_pre = Preconditioner(freq=torch.log1p(same_target.expected_power()), alpha=5.0)
    assert again.within(same_target, SETTINGS, "PC + PDS (released)", 40, same_pre) == got
    assert again.pc(same_target, 0.01, 5.0, 30, 0.16, iterations=9, preconditioner=same_pre, denoise=False) == summary
    with pytest.raises(AssertionError, match="computed again"):  # another setting is another result
        again.pc(same_target, 0.01, 5.0, 30, 0.16, iterations=9, preconditioner=same_pre)
    with pytest.raises(AssertionError, match="computed again"):
        again.within(same_target, SETTINGS, "PC + PDS (released)", 40,
                     Preconditioner(freq=torch.log1p(same_target.expected_power()), alpha=20.0))


def test_the_code_fingerprint_sees_a_numerical_change_of_the_recursion(monkeypatch):
    import pds.exact.recursions as exact

    before = er.behaviour()
    original = exact.pc_recursion

    def nudged(*args, **kwargs):
        amp, var, steps = original(*args, **kwargs)
        return amp, var * (1 + 1e-7), steps

    monkeypatch.setattr(exact, "pc_recursion", nudged)
    er.behaviour.cache_clear()
    try:
        assert not er.behaviour().same(before)
    finally:
        monkeypatch.undo()
        er.behaviour.cache_clear()
    assert er.behaviour().same(before)


def test_the_code_fingerprint_keeps_its_id_under_last_bit_changes(monkeypatch):
    """Another CPU rounds the recursion's float64 sums otherwise in their last bits: the code fingerprint keeps its
    exact part (its id's first half) and matches, so the shipped results are still found by their key's fingerprints
    (the radial profiles were once hashed bit for bit, and another kernel set recomputed notebook 03)."""
    import pds.exact.recursions as exact

    before = er.behaviour()
    original = exact.pc_recursion

    def last_bits(*args, **kwargs):
        amp, var, steps = original(*args, **kwargs)
        return amp * (1 + 3e-16), var * (1 - 4e-16), steps

    monkeypatch.setattr(exact, "pc_recursion", last_bits)
    er.behaviour.cache_clear()
    try:
        after = er.behaviour()
        assert after.exact == before.exact and after.same(before)
    finally:
        monkeypatch.undo()
        er.behaviour.cache_clear()


def test_the_shipped_results_are_found_by_the_current_code():
    """Every shipped exact result names a code fingerprint that is the current code's (within tolerance): a numerical
    change of pds.exact that would make `make notebooks` compute them all again fails here first (then: make
    results)."""
    from pds.lab.store import Store
    from pds.storage import DATA_DIR

    shipped = Store(DATA_DIR / "results" / "exact" / "default", name="exact")
    codes = {row["description"]["code"] for row in shipped.rows()}
    assert len(shipped.rows()) > 100 and codes
    now = er.behaviour()
    assert all(shipped.table.known[c].same(now) for c in codes), "pds.exact computes otherwise: run make results"


def test_given_corrector_steps_are_found_again_when_their_last_bits_differ(tmp_path, target, monkeypatch):
    """Fixed corrector steps are computed numbers: another CPU gives them otherwise in their last bits, and the result
    kept for them is still found; steps that differ truly are another result."""
    steps = [0.5 / (i + 1) for i in range(9)]
    first = ExactResults(tmp_path).pc(target, 0.01, 5.0, 30, 0.16, iterations=9, steps=steps)

    def fail(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(er, "pc_exact", fail)
    nudged = [s * (1 + 4e-16) for s in steps]
    assert ExactResults(tmp_path).pc(target, 0.01, 5.0, 30, 0.16, iterations=9, steps=nudged) == first
    with pytest.raises(AssertionError, match="computed again"):
        ExactResults(tmp_path).pc(target, 0.01, 5.0, 30, 0.16, iterations=9, steps=[s * 1.01 for s in steps])
