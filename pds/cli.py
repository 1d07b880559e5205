"""Command line: ``pds filters estimate ...`` (and ``python -m pds ...``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _estimate(args) -> int:
    from tqdm import tqdm

    from pds.data import dataset_batches
    from pds.filters import estimate_filters, save_filters

    batches, meta = dataset_batches(args.data, size=args.size, n=args.n, seed=args.seed, batch_size=args.batch_size)
    total = -(-meta["n"] // args.batch_size)
    bar = tqdm(batches, total=total, desc=f"estimating filters ({meta['n']} images)", unit="batch",
               disable=args.quiet)
    freq, space, count = estimate_filters(bar, variant=args.variant)
    meta.update(n=count, variant=args.variant)
    out = save_filters(args.out, freq, space, **meta)
    if not args.quiet:
        print(f"wrote {out}: freq and space {tuple(freq.shape)} from {count} images of {meta['source']}")
    return 0


def _train_classifier(args) -> int:
    import torch

    from pds.data import load_idx_images, load_idx_labels
    from pds.metrics import classifier_accuracy, train_classifier

    model = train_classifier(load_idx_images(args.dataset, "train"), load_idx_labels(args.dataset, "train"),
                             epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    acc = classifier_accuracy(model, load_idx_images(args.dataset, "test"), load_idx_labels(args.dataset, "test"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out}: test accuracy {acc:.4f} ({args.epochs} epochs, seed {args.seed})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pds", description="Preconditioned diffusion sampling tools")
    sub = parser.add_subparsers(dest="command", required=True)
    filters = sub.add_parser("filters", help="frequency / space filters")
    fsub = filters.add_subparsers(dest="action", required=True)
    est = fsub.add_parser(
        "estimate", help="estimate R (Eq. 14) and A from images and save them as .npz",
        description="Estimate the statistics filters from a seeded choice of images, streaming in batches.",
    )
    est.add_argument("--data", required=True,
                     help="fashion-mnist | mnist | natural-crops | faces | an IDX file | a folder of PNG/JPEG images")
    est.add_argument("--size", type=int, default=None, help="image size (needed for natural-crops and folders)")
    est.add_argument("--n", type=int, default=200, help="number of images (default 200, as in the paper)")
    est.add_argument("--seed", type=int, default=0, help="seed of the choice of images")
    est.add_argument("--variant", choices=("released", "paper"), default="released",
                     help="space filter: released E[x²] (default) or the paper's Eq. 13 log E[x] + 1")
    est.add_argument("--batch-size", type=int, default=64)
    est.add_argument("--out", required=True, type=Path, help="output .npz (arrays freq, space and metadata)")
    est.add_argument("--quiet", action="store_true")
    est.set_defaults(func=_estimate)
    metrics = sub.add_parser("metrics", help="sample-quality metrics")
    msub = metrics.add_subparsers(dest="action", required=True)
    tc = msub.add_parser("train-classifier", help="train the Fashion-MNIST feature classifier of classifier_fd")
    tc.add_argument("--dataset", default="fashion-mnist")
    tc.add_argument("--epochs", type=int, default=5)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--out", type=Path, default=Path("data/checkpoints/fashion_classifier.pt"))
    tc.add_argument("--quiet", action="store_true")
    tc.set_defaults(func=_train_classifier)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"pds: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
