"""One forward pass of each full official score-network configuration, next to the PDS preconditioner.

For each configuration (random weights in the official layout): median time of one forward at the
given batch (after warm-up, synchronised on a GPU), and the median time of the preconditioner's
``drift`` + ``noise`` on the same batch (real-FFT path, frequency + space filter, as Fig. 1 uses), with
its share of a forward. All numbers are measured in this run. Usage:

    .venv/bin/python benchmarks/model_forward.py [--batch 8] [--repeats 3] [--device cuda] [--configs ...]

On a 2-core CPU a full run at batch 8 takes tens of minutes (FFHQ 1024 alone several); use --batch 1
and --configs to pick.
"""

from __future__ import annotations

import argparse

import torch

from pds.filters import parametric_filter
from pds.lessons.timing import median_time
from pds.models import OFFICIAL_CONFIGS, CondRefineNetDilated, NCSNpp, NCSNv2, NCSNv2Deeper
from pds.precondition import Preconditioner


def builders():
    return {
        "ncsn_mnist": (lambda: CondRefineNetDilated(ngf=64, channels=1, num_classes=10), (1, 28), "labels"),
        "ncsnv2_cifar10": (lambda: NCSNv2(ngf=128, sigmas=torch.ones(232)), (3, 32), "labels"),
        "ncsnv2deeper_church": (lambda: NCSNv2Deeper(ngf=128, sigmas=torch.ones(788)), (3, 96), "labels"),
        "ncsnv2deeper_tower": (lambda: NCSNv2Deeper(ngf=128, sigmas=torch.ones(1086)), (3, 128), "labels"),
        **{f"ncsnpp_{k}": (lambda k=k: NCSNpp(OFFICIAL_CONFIGS[k]), (3, OFFICIAL_CONFIGS[k].image_size), "sigma")
           for k in ("cifar10", "cifar10_deep", "bedroom", "ffhq_1024")},
    }


def main(argv=None):
    table = builders()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", nargs="+", default=list(table), choices=list(table))
    args = ap.parse_args(argv)
    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; median of {args.repeats} after "
          f"{args.warmup} warm-up")
    print(f"{'configuration':24s} {'params (M)':>10s} {'input':>14s} {'forward ms':>11s} "
          f"{'precond ms':>11s} {'share':>7s}")
    for key in args.configs:
        build, (c, s), cond = table[key]
        torch.manual_seed(0)
        net = build().to(dev).eval()
        x = torch.rand(args.batch, c, s, s, device=dev)
        arg = (torch.zeros(args.batch, dtype=torch.long, device=dev) if cond == "labels"
               else torch.full((args.batch,), 1.0, device=dev))
        pc = Preconditioner(freq=parametric_filter(s, 0.2 * s, 1.6, channels=c), space=torch.rand(c, s, s) + 0.5)
        with torch.no_grad():
            t_net = median_time(lambda net=net, x=x, arg=arg: net(x, arg), args.repeats, args.warmup, dev)
            t_pc = median_time(lambda pc=pc, x=x: (pc.drift(x), pc.noise(x)), args.repeats, args.warmup, dev)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"{key:24s} {params:>10.2f} {str((args.batch, c, s, s)):>14s} {1e3 * t_net:>11.1f} {1e3 * t_pc:>11.1f} "
              f"{100 * t_pc / t_net:>6.2f}%", flush=True)
        del net


if __name__ == "__main__":
    main()
