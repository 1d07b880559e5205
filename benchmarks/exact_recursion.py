"""Seconds of one pds.exact.pc_exact call (the PC moment recursion) on two targets: a 1024² one whose 525k
frequencies are all distinct (no merging helps) and a 32² image-like one (544 groups); one thread, best of 3.

Run it on two commits to compare recursions, e.g. the in-place loop issue 28 removed:
    git worktree add /tmp/old 48cbe47 && PYTHONPATH=/tmp/old/src python benchmarks/exact_recursion.py old
    python benchmarks/exact_recursion.py new
(benchmarks/README.md, "One recursion, no in-place fast path").
"""

import sys
import time

import torch

from pds.configs import experiment
from pds.exact import pc_exact
from pds.filters import parametric_filter
from pds.precondition import Preconditioner
from pds.scores import StationaryGaussianScore


def main():
    torch.set_num_threads(1)
    label = sys.argv[1] if len(sys.argv) > 1 else "this checkout"
    g = torch.Generator().manual_seed(0)
    for name, h, T in (("1024² non-radial (525k groups)", 1024, 20), ("32² image-like (544 groups)", 32, 200)):
        spec = (torch.rand(1, h, h, generator=g, dtype=torch.float64) + 0.1)
        spec = 0.5 * (spec + torch.roll(torch.flip(spec, (-2, -1)), (1, 1), (-2, -1)))
        mean = 0.5 + 0.1 * torch.rand(1, h, h, generator=g, dtype=torch.float64)
        target = StationaryGaussianScore(mean, spec * h * h)
        pre = Preconditioner(freq=parametric_filter(h, 2.0, 1.6))
        e = experiment("cifar10_ncsnpp")
        pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=2, preconditioner=pre)  # setup cached
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            r = pc_exact(target, e.sigma_min, e.sigma_max, e.levels, e.snr, iterations=T, preconditioner=pre)
            best = min(best, time.perf_counter() - t)
        print(f"{label} {name}: T={T} {best:.3f} s, w2 {r.w2:.15g}")


if __name__ == "__main__":
    main()
