"""Command line: ``pds filters estimate``, ``pds train``, ``pds export``, ``pds metrics`` (also ``python -m pds``).

Every command checks its arguments before it reads data or writes a file; a bad value ends with
``pds: error: ...`` naming the value and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from pds.checkpoints import export_checkpoint, network_spec
from pds.data import dataset_batches, load_idx_images, load_idx_labels
from pds.filters import estimate_filters, save_filters
from pds.metrics import classifier_accuracy, train_classifier
from pds.schedules import ncsnv2_ladder, ncsnv2_step_lr
from pds.train import TrainConfig, TrainingInterrupted, check_same_run, train_run


def _estimate(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    batches, meta = dataset_batches(args.data, size=args.size, n=args.n, seed=args.seed, batch_size=args.batch_size)
    _say_how_many(meta, args.n)
    total = -(-meta["n"] // args.batch_size)
    bar = tqdm(batches, total=total, desc=f"estimating filters ({meta['n']} images)", unit="batch",
               disable=args.quiet)
    freq, space, count = estimate_filters(bar, variant=args.variant)
    bad = int((~torch.isfinite(space)).sum())
    if bad:
        raise ValueError(f"the space filter of --variant {args.variant} (Eq. 13, log E[x] + 1) is -inf at {bad} pixels "
                         "whose mean is 0 in these images, so M would not be invertible; nothing written. "
                         "Use --variant released (E[x²], the released code's filter)")
    nonpos = int((space <= 0).sum())
    if nonpos:
        print(f"pds: warning: the space filter has {nonpos} entries <= 0 (Eq. 13 is <= 0 where the mean pixel is "
              "<= 1/e); the preconditioner refuses it; use --variant released to sample with A", file=sys.stderr)
    meta.update(n=count, variant=args.variant)
    out = save_filters(args.out, freq, space, **meta)
    if not args.quiet:
        print(f"wrote {out}: freq and space {tuple(freq.shape)} from {count} images of {meta['source']}")
    return 0


def _train_classifier(args) -> int:
    model = train_classifier(load_idx_images(args.dataset, "train"), load_idx_labels(args.dataset, "train"),
                             epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    acc = classifier_accuracy(model, load_idx_images(args.dataset, "test"), load_idx_labels(args.dataset, "test"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out}: test accuracy {acc:.4f} ({args.epochs} epochs, seed {args.seed})")
    return 0


def _train(args) -> int:
    # every setting is checked before data is read or anything is written
    cfg = TrainConfig(kind=args.kind, steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_rate=args.ema,
                      seed=args.seed, save_every=args.save_every, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                      device=args.device)
    if args.ladder == "ncsnv2" and args.kind == "ncsnpp":
        raise ValueError("--ladder ncsnv2 is for the level-indexed NCSN / NCSNv2 networks, not the continuous NCSN++")
    for flag, value in (("--width", args.width), ("--levels", args.levels), ("--blocks", args.blocks),
                        ("--ch-mult", min(args.ch_mult)), ("--steps-each", args.steps_each)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.pad < 0:
        raise ValueError(f"--pad must be >= 0, got {args.pad}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")
    batches, meta = dataset_batches(args.data, size=args.size, n=args.n, seed=args.seed)
    _say_how_many(meta, args.n)
    images = torch.cat(list(batches))
    if args.pad:
        images = torch.nn.functional.pad(images, (args.pad,) * 4)
    levels, sampler = args.levels, None
    if args.ladder == "ncsnv2":  # techniques 2 and 4 of NCSNv2 for the ladder and the sampler's step size
        levels = len(ncsnv2_ladder(args.sigma_max, args.sigma_min, images[0].numel()))
        gamma = (args.sigma_max / args.sigma_min) ** (1.0 / (levels - 1))
        sampler = {"n_steps_each": args.steps_each, "step_lr": ncsnv2_step_lr(gamma, args.sigma_min, args.steps_each),
                   "rule": f"NCSNv2 techniques 2 and 4 (Song & Ermon 2020): D = {images[0].numel()}, "
                           f"ratio {gamma:.5f}, {levels} levels, {args.steps_each} steps each"}
    net, sigmas = network_spec(args.kind, args.width, images.shape[1], images.shape[-1], levels, args.sigma_min,
                               args.sigma_max, ch_mult=args.ch_mult, blocks=args.blocks)
    spec = {"kind": args.kind, "net": net, "sigmas": sigmas, "sigma_min": args.sigma_min,
            "sigma_max": args.sigma_max, "levels": levels, **({"sampler": sampler} if sampler else {}),
            "data": {"name": args.data, "size": args.size, "n": args.n, "pad": args.pad, "source": meta["source"]},
            "train": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "ema": args.ema,
                      "seed": args.seed, "save_every": args.save_every},
            "device": args.device, "hardware": _hardware(args.device),
            "command": "pds " + shlex.join(args.argv)}
    done = (check_same_run(args.out, net, sigmas) or {}).get("step")
    if done is not None and done >= cfg.steps:
        print(f"nothing to do: {args.out} is already at step {done} (--steps {cfg.steps}); nothing written")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_suffix(".log.jsonl")
    train_run(net, sigmas, images, cfg, args.out, progress=not args.quiet, log_path=log_path, meta=spec)
    print(f"wrote {args.out} (step {cfg.steps}), its settings {args.out.with_suffix('.json')} and the loss log "
          f"{log_path}; data: {meta['source']}")
    return 0


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA), torch {torch.__version__}"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _say_how_many(meta: dict, asked) -> None:
    if asked is not None and meta["n"] < asked:
        print(f"pds: note: --n {asked} asked, but {meta['source']} has {meta['n']} images: using all {meta['n']}",
              file=sys.stderr)


def _export(args) -> int:
    # the run's sidecar records where it trained; --hardware / --wall-time / --command override it
    extra = {"wall_time_s": args.wall_time, "hardware": args.hardware, "command": args.command}
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
    tr.add_argument("--ladder", choices=("geometric", "ncsnv2"), default="geometric",
                    help="geometric: --levels levels; ncsnv2: as many as NCSNv2's technique 2 prescribes, and the "
                         "sampler's step size from its technique 4 recorded in the sidecar")
    tr.add_argument("--steps-each", type=int, default=5, help="with --ladder ncsnv2: Langevin steps per level")
    tr.add_argument("--sigma-min", type=float, default=0.01)
    tr.add_argument("--sigma-max", type=float, default=1.0)
    tr.add_argument("--steps", type=int, default=10000)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--ema", type=float, default=0.999)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--save-every", type=int, default=500)
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (the random draws are the same on each)")
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv

    try:
        return args.func(args)
    except TrainingInterrupted as stop:
        print(f"\npds: stopped by signal {stop.signum} after step {stop.step}; the checkpoint {stop.path} is saved. "
              f"Resume with the same command:\n  pds {shlex.join(argv)}", file=sys.stderr)
        return 128 + stop.signum
    except (FileNotFoundError, ValueError, NotImplementedError, FloatingPointError) as exc:
        print(f"pds: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
