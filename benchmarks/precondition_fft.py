"""Cost of the PDS preconditioner: real-FFT path vs the released complex path.

Prints, for each size, the median time of ``drift`` + ``noise`` (what one sampler step applies)
on the real path (rfft2/irfft2) and on the complex path (fft2/ifft2, as released), and their
ratio, all measured in this run on this machine. Usage:

    .venv/bin/python benchmarks/precondition_fft.py [--sizes 256 1024] [--batch 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pds.filters import parametric_filter
from pds.precondition import Preconditioner


def timed(fn, x, repeats: int, device: str) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(x)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch} channels={args.channels}")
    print(f"{'size':>6} {'space':>6} {'real ms':>10} {'complex ms':>11} {'complex/real':>13}")
    for size in args.sizes:
        freq = parametric_filter(size, 0.2 * size, 1.6, channels=args.channels)
        space = torch.rand(args.channels, size, size, generator=torch.Generator().manual_seed(0)) + 0.1
        x = torch.randn(args.batch, args.channels, size, size, device=args.device)
        for sp in (None, space):
            res = {}
            for mode in ("real", "complex"):
                pc = Preconditioner(freq=freq, space=sp, fft=mode)
                res[mode] = timed(lambda v, pc=pc: (pc.drift(v), pc.noise(v)), x, args.repeats, args.device)
            print(f"{size:>6} {'A' if sp is not None else '-':>6} {1e3 * res['real']:>10.1f} "
                  f"{1e3 * res['complex']:>11.1f} {res['complex'] / res['real']:>13.2f}")


if __name__ == "__main__":
    main()
