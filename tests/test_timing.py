"""pds.lessons.timing: what it promises — the median of timed calls after warm-up, a PC iteration timed with the
preconditioner's share measured and bounded, the N·log N fit and the extrapolation."""

from __future__ import annotations

import math
import time

import pytest

from pds.lessons.timing import extrapolate, fit_nlogn, median_time, time_pc_iteration


def test_median_time_is_the_median_of_the_timed_calls_after_warmup():
    """Calls that sleep 5, 30 and 10 ms after two warm-up calls of 80 ms: the median is the middle one's 10 ms (not
    the mean, not a warm-up's), within the scheduler's jitter."""
    sleeps = iter([0.08, 0.08, 0.005, 0.030, 0.010])
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(sleeps))

    t = median_time(fn, repeats=3, warmup=2)
    assert len(calls) == 5
    assert 0.010 <= t < 0.025  # the middle of 5, 30, 10 ms: a sleep lasts at least its time, jitter on top


def test_a_pc_iteration_is_timed_with_the_preconditioner_share_bounded():
    """One PC iteration of a small NCSN++ (nf 16, 32², batch 2): every time positive, an iteration at least as long as
    the two forwards it makes, and the preconditioner's four operations a share between 0 and 1 of the PDS iteration."""
    got = time_pc_iteration("cifar10", batch=2, nf=16, repeats=2, warmup=1)
    assert min(got.forward_ms, got.iteration_vanilla_ms, got.iteration_pds_ms, got.preconditioner_ms) > 0
    assert got.iteration_vanilla_ms >= 1.5 * got.forward_ms  # two forwards (timing noise: 1.5, not 2)
    assert 0 < got.preconditioner_share < 1
    assert got.as_dict()["preconditioner_share"] == got.preconditioner_share


def test_the_fft_cost_law_is_fitted_and_runs_are_extrapolated():
    sizes = [16, 32, 64, 128]
    seconds = [3e-9 * (s * s) * math.log2(s * s) + 1e-4 for s in sizes]
    a, b = fit_nlogn(sizes, seconds)
    assert a == pytest.approx(3e-9, rel=1e-9) and b == pytest.approx(1e-4, rel=1e-6)
    assert extrapolate(0.25, 2000) == 500.0
    with pytest.raises(ValueError, match="iterations >= 1"):
        extrapolate(0.25, 0)
