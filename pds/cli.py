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


def train_spec(args, channels: int, size: int) -> dict:
    """The sidecar of a `pds train` run: network spec, noise levels, data and training settings."""
    from pds.samplers import geometric_sigmas

    sigmas = [float(s) for s in geometric_sigmas(args.sigma_max, args.sigma_min, args.levels)]
    if args.kind == "ncsn":
        net = {"arch": "ncsn", "ngf": args.width, "channels": channels, "num_classes": args.levels, "image_size": size}
    elif args.kind == "ncsnv2":
        net = {"arch": "ncsnv2", "ngf": args.width, "channels": channels, "sigmas": sigmas, "image_size": size}
    else:
        net = {"arch": "ncsnpp", "nf": args.width, "ch_mult": list(args.ch_mult), "num_res_blocks": args.blocks,
               "attn_resolutions": [size // 4], "image_size": size, "channels": channels, "progressive": "none",
               "progressive_input": "residual", "num_scales": args.levels, "sigma_min": args.sigma_min,
               "sigma_max": args.sigma_max}
    return {"kind": args.kind, "net": net, "sigmas": None if args.kind == "ncsnpp" else sigmas,
            "sigma_min": args.sigma_min, "sigma_max": args.sigma_max, "levels": args.levels,
            "data": {"name": args.data, "size": args.size, "n": args.n, "pad": args.pad},
            "train": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "ema": args.ema,
                      "seed": args.seed, "save_every": args.save_every}}


def _train(args) -> int:
    import json

    import torch

    from pds.data import dataset_batches
    from pds.train import TrainConfig, build_network, sidecar_path, train, write_sidecar

    batches, meta = dataset_batches(args.data, size=args.size, n=args.n, seed=args.seed)
    images = torch.cat(list(batches))
    if args.pad:
        images = torch.nn.functional.pad(images, (args.pad,) * 4)
    spec = train_spec(args, images.shape[1], images.shape[-1])
    spec["data"]["source"] = meta["source"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(args.out)
    if side.is_file():
        old = json.loads(side.read_text())
        if old["net"] != spec["net"] or old.get("sigmas") != spec["sigmas"]:
            raise ValueError(f"{args.out} was trained with another network or noise levels (see {side}); "
                             "choose another --out")
    write_sidecar(args.out, spec)
    net = build_network(spec["net"])
    sigmas = None if spec["sigmas"] is None else torch.tensor(spec["sigmas"], dtype=torch.float32)
    cfg = TrainConfig(kind=args.kind, steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_rate=args.ema,
                      seed=args.seed, save_every=args.save_every, sigma_min=args.sigma_min, sigma_max=args.sigma_max)
    log_path = args.out.with_suffix(".log.jsonl")

    with open(log_path, "a") as log:
        def write(step, loss):
            log.write(json.dumps({"step": step, "loss": loss}) + "\n")
            if (step + 1) % cfg.save_every == 0:
                log.flush()

        train(net, images, cfg, args.out, sigmas=sigmas, progress=not args.quiet, log=write)
    print(f"wrote {args.out} ({cfg.steps} steps), its settings {side} and the loss log {log_path}; "
          f"data: {meta['source']}")
    return 0


def _export(args) -> int:
    import platform

    import torch

    from pds.train import export_checkpoint

    # without --hardware, only what the exporting machine knows (it may not be where the run trained)
    hardware = args.hardware or f"{platform.machine()} CPU, {torch.get_num_threads()} threads (at export)"
    extra = {"wall_time_s": args.wall_time, "hardware": hardware, "command": args.command}
    out = export_checkpoint(args.checkpoint, args.out, **{k: v for k, v in extra.items() if v is not None})
    print(f"wrote {out} (EMA weights, official layout) and {out.with_suffix('.json')}")
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
    tr = sub.add_parser("train", help="denoising score matching (resumes from --out if it exists)")
    tr.add_argument("--kind", choices=("ncsn", "ncsnv2", "ncsnpp"), required=True)
    tr.add_argument("--data", default="fashion-mnist")
    tr.add_argument("--size", type=int, default=None)
    tr.add_argument("--n", type=int, default=None, help="number of training images (default: all)")
    tr.add_argument("--pad", type=int, default=0, help="zero padding on each side (28 + 2·2 = 32)")
    tr.add_argument("--width", type=int, default=32, help="ngf (NCSN / NCSNv2) or nf (NCSN++)")
    tr.add_argument("--ch-mult", type=int, nargs="+", default=[1, 2, 2])
    tr.add_argument("--blocks", type=int, default=1)
    tr.add_argument("--levels", type=int, default=10, help="noise levels (NCSN/NCSNv2) or num_scales (NCSN++)")
    tr.add_argument("--sigma-min", type=float, default=0.01)
    tr.add_argument("--sigma-max", type=float, default=1.0)
    tr.add_argument("--steps", type=int, default=10000)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--ema", type=float, default=0.999)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--save-every", type=int, default=500)
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=_train)
    ex = sub.add_parser("export", help="write the EMA weights of a `pds train` checkpoint as a small official file")
    ex.add_argument("--checkpoint", type=Path, required=True, help="the run's checkpoint (its .json beside it)")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--wall-time", type=float, default=None, help="training wall time in seconds, for the record")
    ex.add_argument("--hardware", default=None, help="where it was trained, for the record")
    ex.add_argument("--command", default=None, help="the training command, for the record")
    ex.set_defaults(func=_export)
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
