"""`pds sample` scale-out: images per second with 1 and K processes, and the sharding overhead, in one run.

* overhead: one process drawing n samples through the sharded path (per-sample generators, shard files, manifest)
  against the same draws without shards or files (`pds.lab.experiments.draw` with the same generators, in memory);
* scaling: the same `pds sample` command with 1 process and under `torchrun --nproc_per_node=K` (CPU: gloo, one
  thread per process), images per second and their ratio.

    .venv/bin/python benchmarks/sample_scaling.py [--count 64] [--T 20] [--procs 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pds.lab.experiments import Method, crop_and_clip, draw
from pds.lab.generate import resolve_model, run_sharded, sample_seed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="ncsnpp_fashion32")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = resolve_model(args.checkpoint)
    method = Method("parametric", r=0.2, lam=1.6)
    work = Path(tempfile.mkdtemp(prefix="pds-scaling-"))
    dev = torch.device(args.device)
    try:
        pre = model.preconditioner(method)
        t0 = time.perf_counter()
        for start in range(0, args.count, args.batch):
            idx = range(start, min(start + args.batch, args.count))
            gens = [torch.Generator(device=dev).manual_seed(sample_seed(0, i)) for i in idx]
            x, _ = draw(model, pre, method, args.T, (len(gens), *model.shape), gens, dev, corrector="sample")
            crop_and_clip(x, model.pad).cpu()
        bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_sharded(model, method, args.T, args.count, 0, work / "one", batch=args.batch, shard_size=args.batch,
                    device=args.device, progress=False)
        sharded = time.perf_counter() - t0
        print(f"{args.count} samples of {model.name}, T={args.T}, batch {args.batch}, 1 thread per process")
        print(f"in memory, per-sample generators: {bare:.2f} s; sharded (files, manifest): {sharded:.2f} s; "
              f"sharding overhead {100 * (sharded / bare - 1):+.1f} %")
        cmd = ["--checkpoint", args.checkpoint, "--method", "pds", "--radius", "0.2", "--lam", "1.6",
               "--T", str(args.T), "--count", str(args.count), "--batch", str(args.batch),
               "--shard-size", str(args.batch), "--quiet", "--device", args.device]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        times = {}
        for procs in (1, args.procs):
            out = work / f"cli{procs}"
            launcher = [sys.executable, "-m", "pds"] if procs == 1 else [
                sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--master_port=29561",
                "-m", "pds"]
            t0 = time.perf_counter()
            subprocess.run([*launcher, "sample", *cmd, "--out", str(out)], env=env, check=True, capture_output=True)
            times[procs] = time.perf_counter() - t0
            print(f"{procs} process(es): {times[procs]:.2f} s end to end, {args.count / times[procs]:.2f} images/s")
        print(f"images/s ratio {args.procs} vs 1 process: {times[1] / times[args.procs]:.2f} "
              f"(ideal {args.procs}; start-up of each process included)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
