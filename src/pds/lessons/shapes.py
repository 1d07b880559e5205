"""The full profile at the paper's shapes, on any machine: every experiment of :mod:`pds.configs` with random
weights
in its official layout and configuration, through the code the ``full`` profile runs, for one or two iterations.

Per experiment (each in a process of its own, so that its peak memory is its own): a random-weight checkpoint at the
official configuration and image size is written into ``build/`` (:func:`pds.lab.official.write_random_official` with
``full=True``; never shipped), found by name (:func:`pds.models.checkpoints.find_checkpoint`), loaded
(:meth:`pds.lab.experiments.SmallModel.official` → :func:`pds.models.checkpoints.load_official`), its filters are made
at that
size (synthetic, of the shape the paper's estimates have: R, and A for FFHQ; the parametric filter for the NCSN family)
and written as a filter file, and then, timed, one sampler iteration vanilla and one with PDS
(:func:`pds.lab.experiments.draw`, ``iterations`` of them) and ``pds sample`` for one shard of ``batch`` images
(:func:`pds.lab.generate.run_sharded`). The table has the experiment, the network's parameters, the image size, the
batch, seconds per iteration vanilla and PDS, the seconds of the shard, and the peak memory: the process's resident
high-water mark on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU (also the sampling's own peak, the mark
reset once the network is loaded: ``/proc/self/clear_refs`` on Linux). Any error fails the run.
:func:`derive_memory` extrapolates the sampling peak of two such tables linearly to another batch; on a CPU that is a
lower bound (activations reuse pages the loading freed), so the README's batch-8 memory is measured at batch 8.

    python -m pds.lessons.shapes                          # make full-shapes: every experiment, batch 1, on this machine
    python -m pds.lessons.shapes --device cuda --batch 8  # the same at the paper's batch on a GPU
    python -m pds.lessons.shapes --tiny                   # tiny networks at tiny sizes (what the tests run)
    python -m pds.lessons.shapes --derive b1.json b2.json --to 8   # the sampling peak at batch 8 from two --json tables
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from pds.configs import EXPERIMENTS, experiment
from pds.filters import save_filters, synthetic_filters
from pds.lab.experiments import Method, SmallModel, draw
from pds.lab.generate import run_sharded
from pds.lab.official import write_random_official
from pds.models.checkpoints import find_checkpoint
from pds.storage import BUILD_DIR

__all__ = ["run_one", "run_all", "format_table", "derive_memory", "format_derived", "TINY_SIZE"]

TINY_SIZE = 16  # image side of --tiny (networks: pds.lab.official.tiny_ncsnpp_config, ngf 4)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # the high-water mark since the last reset (getrusage's never resets)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak(device: torch.device) -> bool:
    """Start the peak over from what the process holds now (a GPU's allocator statistics; on Linux the resident
    high-water mark, through /proc/self/clear_refs). False where it cannot be reset (then the peak is the process's)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _method(exp, filter_file: Path | None) -> Method:
    if exp.filters_file is None:  # the NCSN family: the parametric filter of Fig. 3 / 4
        return Method("parametric", r=exp.r or 0.2, lam=exp.lam or 1.6)
    return Method("file", path=str(filter_file), alpha=5.0, space="space" in exp.filter)


def run_one(name: str, root, device: str = "cpu", batch: int = 1, iterations: int = 1, tiny: bool = False) -> dict:
    """One experiment's row (see the module docstring), in this process."""
    exp = experiment(name)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start_mb = _peak_mb(dev)  # the process before any network (libraries; 0 on a GPU)
    root = Path(root)
    size = TINY_SIZE if tiny else exp.size
    t0 = time.perf_counter()
    path, config = write_random_official(exp, root / "checkpoints", size=size, full=not tiny)
    write_s = time.perf_counter() - t0
    found = find_checkpoint(exp.checkpoint, root / "checkpoints")
    model = SmallModel.official(found, experiment=exp, config=config, image_size=size)
    filter_file = None
    if exp.filters_file is not None:
        freq, space = synthetic_filters(model.shape[0], size, space=True)
        filter_file = save_filters(root / "filters" / exp.filters_file, freq, space, source="synthetic (full-shapes)")
    pds = _method(exp, filter_file)
    if isinstance(model.score, torch.nn.Module):
        model.score.to(dev)
    loading_peak_mb = _peak_mb(dev)
    reset = _reset_peak(dev)
    row = {"experiment": name, "figure": exp.figure, "network": exp.model, "image_size": size, "batch": batch,
           "iterations": iterations, "device": str(dev), "checkpoint_s": write_s,
           "parameters": sum(p.numel() for p in model.score.parameters())
           if isinstance(model.score, torch.nn.Module) else 0, "pds": pds.label}
    for label, method in (("vanilla", Method()), ("pds", pds)):
        pre = model.preconditioner(method)
        g = torch.Generator(device=dev).manual_seed(0)
        t0 = time.perf_counter()
        x, nfe = draw(model, pre, method, iterations, (batch, *model.shape), g, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        row[f"{label}_s_per_iteration"] = (time.perf_counter() - t0) / iterations
        row[f"{label}_nfe"] = nfe
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(f"{name} ({label}): non-finite samples")
    samples = root / "samples" / name
    shutil.rmtree(samples, ignore_errors=True)  # a scratch run: drawn afresh every time
    t0 = time.perf_counter()
    summary = run_sharded(model, pds, iterations, batch, 0, samples, batch=batch, shard_size=batch, device=device,
                          progress=False)
    row["sample_shard_s"] = time.perf_counter() - t0
    if summary.get("n") != batch:
        raise RuntimeError(f"{name}: pds sample wrote {summary.get('n')} images, expected {batch}")
    row["sampling_peak_MB"] = _peak_mb(dev)  # the network loaded, the weights included, during the sampling
    row["peak_memory_MB"] = max(row["sampling_peak_MB"], loading_peak_mb)
    row["peak_above_start_MB"] = row["peak_memory_MB"] - start_mb
    row["sampling_peak_separate"] = reset
    row["memory"] = "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "resident high-water mark"
    return row


def run_all(root=None, device: str = "cpu", batch: int = 1, iterations: int = 1, tiny: bool = False,
            names=None, progress: bool = True) -> list[dict]:
    """Every experiment (or ``names``), each in a subprocess of its own (``python -m pds.lessons.shapes --one NAME``); a
    failing one raises with its output."""
    root = Path(root or BUILD_DIR / "full_shapes")
    rows = []
    for name in names or list(EXPERIMENTS):
        out = root / f"{name}.json"
        cmd = [sys.executable, "-m", "pds.lessons.shapes", "--one", name, "--root", str(root), "--device", device,
               "--batch", str(batch), "--iterations", str(iterations), "--json", str(out)]
        cmd += ["--tiny"] if tiny else []
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"full-shapes: {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        row = json.loads(out.read_text())
        row["process_s"] = time.perf_counter() - t0
        rows.append(row)
        if progress:
            print(f"  {name}: done in {row['process_s']:.0f} s", file=sys.stderr, flush=True)
    return rows


def derive_memory(rows_a: list[dict], rows_b: list[dict], batch: int) -> list[dict]:
    """The peak memory of each experiment at ``batch``, derived from two runs at smaller batches (``rows_a``,
    ``rows_b``: the tables of ``make full-shapes`` at two batch sizes, same device): the sampling peak is taken as
    linear in the batch, ``peak(b) = peak(a) + (b - a)·slope``, with the slope per image measured between the two;
    the loading peak (the checkpoint read) does not depend on the batch. Rows: experiment, the two measured sampling
    peaks, MB per image, and the estimate at ``batch`` (the larger of it and the loading peak)."""
    by_b = {r["experiment"]: r for r in rows_b}
    out = []
    for a in rows_a:
        b = by_b.get(a["experiment"])
        if b is None:
            continue
        if a["batch"] == b["batch"]:
            raise ValueError(f"{a['experiment']}: both runs have batch {a['batch']}; two different batches are needed")
        if not (a.get("sampling_peak_separate") and b.get("sampling_peak_separate")):
            raise ValueError(f"{a['experiment']}: the sampling peak was not measured apart from loading (rerun "
                             "make full-shapes with this version, on Linux or a GPU)")
        per_image = (b["sampling_peak_MB"] - a["sampling_peak_MB"]) / (b["batch"] - a["batch"])
        est = a["sampling_peak_MB"] + (batch - a["batch"]) * max(per_image, 0.0)
        loading = a["peak_memory_MB"] if a["peak_memory_MB"] > a["sampling_peak_MB"] else 0.0
        out.append({"experiment": a["experiment"], "image_size": a["image_size"], "device": a["device"],
                    "batches": (a["batch"], b["batch"]), "sampling_peak_MB": (a["sampling_peak_MB"],
                                                                               b["sampling_peak_MB"]),
                    "MB_per_image": per_image, "batch": batch, "estimate_MB": max(est, loading)})
    return out


def format_derived(rows: list[dict]) -> str:
    """:func:`derive_memory`'s rows as a Markdown table."""
    lines = ["| experiment | image size | sampling peak at batch a / b | MB per image | estimated peak at batch "
             f"{rows[0]['batch'] if rows else ''} |", "|---|---|---|---|---|"]
    for r in rows:
        (ba, bb), (pa, pb) = r["batches"], r["sampling_peak_MB"]
        lines.append(f"| {r['experiment']} | {r['image_size']}² | {pa:.0f} MB ({ba}) / {pb:.0f} MB ({bb}) | "
                     f"{r['MB_per_image']:.0f} | {r['estimate_MB'] / 1024:.1f} GB |")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (what ``make full-shapes`` prints and benchmarks/README.md records)."""
    head = ("| experiment | figure | network | parameters | image size | batch | s / iteration vanilla | "
            "s / iteration PDS | `pds sample` shard s | peak memory | of which above the process's start |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['experiment']} | {r['figure']} | {r['network']} | {r['parameters'] / 1e6:.1f} M | "
                     f"{r['image_size']}² | {r['batch']} | {r['vanilla_s_per_iteration']:.3g} | "
                     f"{r['pds_s_per_iteration']:.3g} | {r['sample_shard_s']:.3g} | {r['peak_memory_MB']:.0f} MB | "
                     f"{r['peak_above_start_MB']:.0f} MB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pds.lessons.shapes", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="tiny networks at 16² (a quick check of the code path)")
    ap.add_argument("--root", default=str(BUILD_DIR / "full_shapes"))
    ap.add_argument("--only", nargs="+", default=None, choices=list(EXPERIMENTS))
    ap.add_argument("--json", default=None, help="write the rows here (with --one: that experiment's row)")
    ap.add_argument("--one", default=None, choices=list(EXPERIMENTS), help=argparse.SUPPRESS)
    ap.add_argument("--derive", nargs=2, metavar=("TABLE_A", "TABLE_B"), default=None,
                    help="print the peak memory at --to, derived from two --json tables at different batches")
    ap.add_argument("--to", type=int, default=8, help="the batch of --derive (default 8)")
    args = ap.parse_args(argv)
    if args.derive:
        try:
            tables = [json.loads(Path(t).read_text()) for t in args.derive]
            print(format_derived(derive_memory(*tables, args.to)))
        except (OSError, ValueError, KeyError) as exc:
            print(f"python -m pds.lessons.shapes: error: --derive: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.batch < 1 or args.iterations < 1:
        print("python -m pds.lessons.shapes: error: --batch and --iterations must be positive", file=sys.stderr)
        return 2
    if args.one:
        row = run_one(args.one, args.root, args.device, args.batch, args.iterations, args.tiny)
        Path(args.json).write_text(json.dumps(row, indent=1))
        return 0
    t0 = time.perf_counter()
    try:
        rows = run_all(args.root, args.device, args.batch, args.iterations, args.tiny, args.only)
    except RuntimeError as exc:
        print(f"python -m pds.lessons.shapes: error: {exc}", file=sys.stderr)
        return 1
    print(format_table(rows))
    where = rows[0]["device"] if rows else args.device
    print(f"\n{len(rows)} experiments in {time.perf_counter() - t0:.0f} s on {where}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
