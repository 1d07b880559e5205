"""Wall-clock timing for the benchmark scripts: warm-up, synchronised on CUDA, median of repeats."""

from __future__ import annotations

import statistics
import time

import torch

__all__ = ["median_time"]


def median_time(fn, repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu") -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
