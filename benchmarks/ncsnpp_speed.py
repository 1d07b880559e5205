"""NCSN++ speed: the fast formulations against score_sde's, per official configuration, all measured in one run.

Prints (and with --json writes) for each configuration: one forward with score_sde's formulations ("before":
zero-insertion FIR, einsum attention and 1×1 layers, what pds ran before) and with the fast ones, their ratio, one
PC iteration (2 forwards) vanilla and with PDS, the preconditioner's own time and its share of a PDS iteration;
with --compile the same for the compiled network (and the compile time). First the FIR resampling alone.
Random weights: timing depends only on shapes. Usage:

    .venv/bin/python benchmarks/ncsnpp_speed.py                      # CPU: batch 1, reduced widths
    python benchmarks/ncsnpp_speed.py --device cuda --batch 8 --full-width --compile ffhq_1024 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pds.lessons.timing import device_name, median_time, time_pc_iteration
from pds.models import OFFICIAL_CONFIGS
from pds.models.ncsnpp import fir_downsample, fir_downsample_reference, fir_upsample, fir_upsample_reference

CPU_WIDTH = {"cifar10": 32, "cifar10_deep": 16, "bedroom": 32, "church": 32, "ffhq_1024": 4}


FIR_SHAPES = [(1, 32, 256, 256), (8, 128, 32, 32), (1, 16, 1024, 1024)]


def fir_table(device, repeats, shapes=FIR_SHAPES):
    rows = []
    for shape in shapes:
        x = torch.randn(*shape, device=device)
        k = (1, 3, 3, 1)
        row = {"shape": list(shape)}
        for name, new, old in (("up", fir_upsample, fir_upsample_reference),
                               ("down", fir_downsample, fir_downsample_reference)):
            t_new = median_time(lambda f=new, x=x, k=k: f(x, k), repeats, 1, device)
            t_old = median_time(lambda f=old, x=x, k=k: f(x, k), repeats, 1, device)
            row[f"{name}_old_ms"], row[f"{name}_new_ms"] = 1e3 * t_old, 1e3 * t_new
            row[f"{name}_ratio"] = t_old / t_new
        rows.append(row)
        print(f"FIR {str(shape):22s} up {row['up_old_ms']:8.2f} -> {row['up_new_ms']:7.2f} ms "
              f"({row['up_ratio']:5.1f}x)   down {row['down_old_ms']:8.2f} -> {row['down_new_ms']:7.2f} ms "
              f"({row['down_ratio']:5.1f}x)", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="default: 8 on a GPU, 1 on the CPU")
    ap.add_argument("--full-width", action="store_true", help="the official widths (default on a GPU)")
    ap.add_argument("--configs", nargs="+", default=["cifar10", "bedroom", "ffhq_1024"], choices=list(OFFICIAL_CONFIGS))
    ap.add_argument("--compile", nargs="*", default=[], choices=list(OFFICIAL_CONFIGS),
                    help="configurations to time compiled too (torch.compile, default mode)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fir-shapes", type=int, default=len(FIR_SHAPES), choices=range(len(FIR_SHAPES) + 1),
                    help=f"time the FIR resampling on the first N of {FIR_SHAPES} (default all; 0: none)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    dev = args.device
    gpu = torch.device(dev).type == "cuda"
    batch = args.batch or (8 if gpu else 1)
    full = args.full_width or gpu
    if not gpu:
        torch.set_num_threads(torch.get_num_threads())
    head = {"device": device_name(dev), "batch": batch, "repeats": args.repeats, "full_width": full,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    print(json.dumps(head), flush=True)
    out = {**head, "fir": fir_table(dev, args.repeats, FIR_SHAPES[:args.fir_shapes]), "configs": []}
    print(f"{'config':10s} {'nf':>4s} {'fwd before':>10s} {'fwd now':>8s} {'ratio':>6s} {'iter vanilla':>12s} "
          f"{'iter PDS':>9s} {'precond':>8s} {'share':>7s}", flush=True)
    for name in args.configs:
        nf = None if full else CPU_WIDTH[name]
        before = time_pc_iteration(name, batch, nf, dev, args.repeats, reference_ops=True)
        now = time_pc_iteration(name, batch, nf, dev, args.repeats)
        row = {"config": name, "before": before.as_dict(), "now": now.as_dict(),
               "forward_ratio": before.forward_ms / now.forward_ms}
        print(f"{name:10s} {now.nf:>4d} {before.forward_ms:>9.1f}ms {now.forward_ms:>6.1f}ms "
              f"{row['forward_ratio']:>5.2f}x {now.iteration_vanilla_ms:>10.1f}ms {now.iteration_pds_ms:>7.1f}ms "
              f"{now.preconditioner_ms:>6.2f}ms {100 * now.preconditioner_share:>6.2f}%", flush=True)
        out["configs"].append(row)
        save(out, args.json)  # after every row: a run stopped by a time limit keeps what it measured
    for row in out["configs"]:
        name = row["config"]
        if name not in args.compile:
            continue
        nf = None if full else CPU_WIDTH[name]
        t0 = time.perf_counter()
        try:
            compiled = time_pc_iteration(name, batch, nf, dev, args.repeats, warmup=3, compile=True)
        except Exception as exc:  # a compiler failure is a result too: record it, keep the eager numbers
            row["compiled_error"] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"{name}: compilation failed: {row['compiled_error']}", flush=True)
            save(out, args.json)
            continue
        row["compiled"] = compiled.as_dict()
        row["compiled_wall_s_including_compile"] = time.perf_counter() - t0
        print(f"{name + ' (compiled)':22s} fwd {compiled.forward_ms:.1f} ms, iteration vanilla "
              f"{compiled.iteration_vanilla_ms:.1f} ms, PDS {compiled.iteration_pds_ms:.1f} ms, share "
              f"{100 * compiled.preconditioner_share:.2f}% ({row['compiled_wall_s_including_compile']:.0f} s "
              "with compilation)", flush=True)
        save(out, args.json)


def save(out: dict, path) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
