from __future__ import annotations


def test_median_time_counts_calls():
    from pds.lab.timing import median_time

    calls = []
    t = median_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and t >= 0
