"""Seconds per evaluation of pds.models.local_score.LocalScore (Kamb & Ganguli's LS and ELS machines) on Fashion-MNIST
training images, for a batch of 256 at 28² and 32² (zero-padded) against 100 and 1 000 images, patch 5, σ = 0.5,
float32, this CPU with its default threads — and the ratio to the operation count: nanoseconds per (sample, image,
pixel) for LS (one candidate patch per image and pixel, box-filtered: O(1) in k), per (query pixel, candidate patch) for
ELS (B·H·W queries against N·H·W patches, O(k²C) each as one matrix product).

Then the authors' ELS rule for zero padding (``candidates="inside"``, the boundary-broken ELS) at 32² against 1 000
images, k = 3, 9, 15, with every candidate patch stored (``dedup=False``) and with each distinct patch stored once
(the default): nanoseconds per (query pixel, candidate) — the candidates the rule gives each pixel, counted before
deduplication, so that the two lines divide the same work — and the patches stored.

Both costs are linear in the batch: ``--measured M`` times M samples and scales to 256 (default 32, about three
minutes in all here; ``--measured 256`` measures the batch itself, about twenty).

    .venv/bin/python benchmarks/local_score.py [--measured 256] [--authors-only]
"""

import argparse
import time

import torch

from pds.lab.data import load_idx_images
from pds.models.local_score import LocalScore

BATCH, PATCH, SIGMA = 256, 5, 0.5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", type=int, default=32, help="samples timed (scaled to 256)")
    parser.add_argument("--authors-only", action="store_true", help="only the authors' ELS rule, with and without "
                        "deduplication")
    args = parser.parse_args()
    m = args.measured
    if not 1 <= m <= BATCH:
        parser.error(f"--measured must be between 1 and {BATCH}, got {m}")
    train = load_idx_images("fashion-mnist", "train")
    if args.authors_only:
        return authors(train, min(m, 4))
    print(f"batch {BATCH} (timed on {m}), patch {PATCH}, σ = {SIGMA}, float32")
    print(f"{'machine':<5} {'size':>4} {'images':>6} {'s / eval':>9} {'ns / unit':>10}  unit")
    for size in (28, 32):
        pad = (size - 28) // 2
        images = torch.nn.functional.pad(train[:1000], (pad,) * 4)
        x = images[:m] + SIGMA * torch.randn(m, 1, size, size, generator=torch.Generator().manual_seed(0))
        for n in (100, 1000):
            for els in (False, True):
                machine = LocalScore(images[:n], PATCH, equivariant=els, dtype=torch.float32)
                machine(x[:1], SIGMA)  # the per-k set-up (patch norms, the patch set) once
                t0 = time.perf_counter()
                machine(x, SIGMA)
                seconds = (time.perf_counter() - t0) * BATCH / m
                units = BATCH * size * size * n * (size * size if els else 1)
                print(f"{'ELS' if els else 'LS':<5} {size:>4} {n:>6} {seconds:>9.2f} {seconds / units * 1e9:>10.3f}  "
                      f"{'(query pixel, candidate patch)' if els else '(sample, image, pixel)'}")
    authors(train, min(m, 4))


def pairs(machine: LocalScore, k: int) -> int:
    """Per sample, Σ over pixels of the candidates the authors' zero-padding rule gives that pixel (N times the
    positions clipped as it is)."""
    h, w = machine.shape[1:]
    rows, cols = machine._clip(h, k // 2), machine._clip(w, k // 2)
    return machine.n * sum(rows.count(a) * cols.count(b) for a in rows for b in cols)


def authors(train: torch.Tensor, m: int) -> None:
    images = torch.nn.functional.pad(train[:1000], (2,) * 4)
    x = images[:m] + SIGMA * torch.randn(m, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    print(f"\nthe authors' boundary-broken ELS, 32², 1 000 images, float32, timed on {m} samples")
    print(f"{'k':>3} {'dedup':>6} {'s / sample':>11} {'ns / pair':>10} {'patches stored':>15}")
    for k in (3, 9, 15):
        for dedup in (False, True):
            machine = LocalScore(images, k, candidates="inside", dtype=torch.float32, dedup=dedup)
            machine(x[:1], SIGMA)  # the per-class candidate sets once
            t0 = time.perf_counter()
            machine(x, SIGMA)
            seconds = (time.perf_counter() - t0) / m
            stored = sum(e.n for e in machine._per_k.values())
            print(f"{k:>3} {str(dedup):>6} {seconds:>11.3f} {seconds / pairs(machine, k) * 1e9:>10.3f} {stored:>15}")


if __name__ == "__main__":
    main()
