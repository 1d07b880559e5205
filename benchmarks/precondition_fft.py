"""Cost of the PDS preconditioner: real-FFT path vs the released complex path, and its share of one
predictor-corrector iteration.

For each size it prints, all measured in this run on this machine (median of ``--repeats``):

* ``drift + noise`` time of the preconditioner on the real path (rfft2/irfft2) and on the complex
  path (fft2/ifft2, as released), and their ratio;
* the time of one PC-sampler iteration (two score evaluations, two drifts, two noises) without
  PDS and with PDS on each path, and the preconditioner's share of the PDS iteration,
  (t_PDS − t_vanilla) / t_PDS.

The score model here is the exact stationary-Gaussian oracle, which costs a few FFTs: far cheaper
than NCSN++, so the shares printed are upper bounds for a real network. Usage:

    .venv/bin/python benchmarks/precondition_fft.py [--sizes 256 1024] [--batch 8] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from pds.filters import parametric_filter
from pds.fourier import radius_squared
from pds.lessons.timing import median_time
from pds.precondition import Preconditioner
from pds.samplers import pc_sampler
from pds.schedules import ve_schedule
from pds.scores import StationaryGaussianScore


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    dev = args.device
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch} channels={args.channels} repeats={args.repeats}")
    header = (f"{'size':>5} {'real ms':>8} {'cplx ms':>8} {'cplx/real':>9} | {'iter vanilla':>12} "
              f"{'iter PDS real':>13} {'iter PDS cplx':>13} {'share real':>10} {'share cplx':>10}")
    print(header)
    for size in args.sizes:
        bench_size(size, args)


def bench_size(size: int, args) -> None:
    dev, c = args.device, args.channels
    freq = parametric_filter(size, 0.2 * size, 1.6, channels=c)
    spec = 1.0 / (1.0 + radius_squared(size, size)) * size * size
    score = StationaryGaussianScore(torch.full((c, size, size), 0.5), spec.expand(c, size, size))
    x = torch.randn(args.batch, c, size, size, device=dev)
    pcs = {mode: Preconditioner(freq=freq, fft=mode) for mode in ("real", "complex")}
    op = {m: median_time(lambda pc=pc: (pc.drift(x), pc.noise(x)), args.repeats, 1, dev) for m, pc in pcs.items()}

    def one_iteration(pc):
        # num_scales = 1: exactly one PC iteration, started from the given state x (no prior draw)
        return lambda: pc_sampler(score, x, ve_schedule(0.01, 100.0, 1), snr=0.16, preconditioner=pc, device=dev,
                                  generator=torch.Generator(device=dev).manual_seed(0))

    it = {"vanilla": median_time(one_iteration(None), args.repeats, 1, dev)}
    it.update({m: median_time(one_iteration(pc), args.repeats, 1, dev) for m, pc in pcs.items()})
    share = {m: (it[m] - it["vanilla"]) / it[m] for m in pcs}
    print(f"{size:>5} {1e3 * op['real']:>8.1f} {1e3 * op['complex']:>8.1f} {op['complex'] / op['real']:>9.2f} | "
          f"{1e3 * it['vanilla']:>10.1f}ms {1e3 * it['real']:>11.1f}ms {1e3 * it['complex']:>11.1f}ms "
          f"{100 * share['real']:>9.1f}% {100 * share['complex']:>9.1f}%")


if __name__ == "__main__":
    main()
