"""Seconds per evaluation of pds.models.local_score.LocalScore (Kamb & Ganguli's LS and ELS machines) on Fashion-MNIST
training images, for a batch of 256 at 28² and 32² (zero-padded) against 100 and 1 000 images, patch 5, σ = 0.5,
float32, this CPU with its default threads — and the ratio to the operation count: nanoseconds per (sample, image,
pixel) for LS (one candidate patch per image and pixel, box-filtered: O(1) in k), per (query pixel, candidate patch) for
ELS (B·H·W queries against N·H·W patches, O(k²C) each as one matrix product).

Both costs are linear in the batch: ``--measured M`` times M samples and scales to 256 (default 32, about three
minutes in all here; ``--measured 256`` measures the batch itself, about twenty).

    .venv/bin/python benchmarks/local_score.py [--measured 256]
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
    m = parser.parse_args().measured
    if not 1 <= m <= BATCH:
        parser.error(f"--measured must be between 1 and {BATCH}, got {m}")
    train = load_idx_images("fashion-mnist", "train")
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


if __name__ == "__main__":
    main()
