"""Command line: ``pds filters estimate``, ``pds train``, ``pds export``, ``pds sample``, ``pds fid``, ``pds metrics``
(also ``python -m pds``).

Every command checks its arguments before it reads data or writes a file; a bad value ends with
``pds: error: ...`` naming the value and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from pds.filters import estimate_filters, save_filters
from pds.lab.data import dataset_batches, load_idx_images, load_idx_labels
from pds.lab.experiments import Method
from pds.lab.generate import load_samples, resolve_model, run_sharded, save_grid, score_run
from pds.lab.metrics import classifier_accuracy, train_classifier
from pds.lessons.timing import device_name
from pds.models.checkpoints import atomic_save
from pds.models.train import TrainConfig, TrainingInterrupted, check_same_run, train_run
from pds.models.trained import export_checkpoint, network_spec
from pds.samplers import SAMPLERS, sampler
from pds.schedules import ncsnv2_ladder, ncsnv2_step_lr
from pds.storage import DiskFull, RunLocked, check_output

__doc_sample__ = """Draw --count samples of a checkpoint with --method vanilla or pds in --T iterations into --out as
shards (per-sample seeds: the images depend on --batch and on the number of processes only through float rounding,
at most one uint8 level in a few pixels; a rerun skips finished shards). Scale out with
`torchrun --nproc_per_node=K -m pds sample ...` (and torchrun's rendezvous across nodes).
Flags are named so that torchrun cannot mistake them for its own (hence --count and --radius, not --n and --r)."""


def _estimate(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_output(args.out, "--out")
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
    check_output(args.out, "--out")
    model = train_classifier(load_idx_images(args.dataset, "train"), load_idx_labels(args.dataset, "train"),
                             epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    acc = classifier_accuracy(model, load_idx_images(args.dataset, "test"), load_idx_labels(args.dataset, "test"))
    atomic_save(model.state_dict(), args.out)
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
    check_output(args.out, "--out")
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
            "device": args.device, "hardware": device_name(args.device),
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


def _say_how_many(meta: dict, asked) -> None:
    if asked is not None and meta["n"] < asked:
        print(f"pds: note: --n {asked} asked, but {meta['source']} has {meta['n']} images: using all {meta['n']}",
              file=sys.stderr)


def _export(args) -> int:
    # the run's sidecar records where it trained; --hardware / --wall-time / --command override it
    check_output(args.out, "--out")
    extra = {"wall_time_s": args.wall_time, "hardware": args.hardware, "command": args.command}
    out = export_checkpoint(args.checkpoint, args.out, **{k: v for k, v in extra.items() if v is not None})
    print(f"wrote {out} (EMA weights, official layout) and {out.with_suffix('.json')}")
    return 0


def _device(text: str) -> str:
    """``--device``: cpu, cuda or cuda:N (CUDA present, N an existing device); anything else is a usage error."""
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device name: use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: pds runs on cpu or cuda (cuda:N), not on {dev.type}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                                         f"numbered from 0")
    return text


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _alpha(text: str):
    """``--alpha``: a number (> 1, checked by the preconditioner) or "none" (the filter used as given)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha must be a number > 1 or 'none', got {text!r}") from None


def _method(args) -> Method:
    """The sampling method of ``pds sample`` from its flags, refusing combinations that do not make sense."""
    given = {"--filters": args.filters, "--radius": args.radius, "--lam": args.lam}
    if args.method == "vanilla":
        extra = [k for k, v in given.items() if v is not None]
        if extra:
            raise ValueError(f"--method vanilla takes no filter, but {', '.join(extra)} given; use --method pds")
        method = Method()
    elif args.filters is not None:
        if args.radius is not None or args.lam is not None:
            raise ValueError("give either --filters F.npz or --radius and --lam, not both")
        if not Path(args.filters).is_file():
            raise FileNotFoundError(f"--filters {args.filters} does not exist; make one with `pds filters estimate`")
        alpha = 5.0 if args.alpha is None else (None if args.alpha == "none" else args.alpha)
        method = Method("file", path=str(args.filters), alpha=alpha, space=args.space)
    elif args.radius is None or args.lam is None:
        raise ValueError("--method pds needs --filters F.npz (statistics R, Eq. 14) or both --radius and --lam "
                         "(the parametric filter, r in units of H)")
    else:
        method = Method("parametric", r=args.radius, lam=args.lam, centre=args.centre,
                        alpha=None if args.alpha == "none" else args.alpha)
    if args.sampler == "released":
        return method
    if method.filter is not None and not sampler(args.sampler).preconditioned:
        with_pds = ", ".join(n for n, s in SAMPLERS.items() if s.preconditioned and s.family != "langevin")
        raise ValueError(f"--sampler {args.sampler} is deterministic: it takes no preconditioner; use --method "
                         f"vanilla, or a sampler with PDS: {with_pds}")
    return dataclasses.replace(method, sampler=args.sampler)


def _sample(args) -> int:
    method = _method(args)
    for flag, value in (("--T", args.T), ("--count", args.count), ("--batch", args.batch),
                        ("--shard-size", args.shard_size)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    check_output(args.out, "--out", folder=True)
    if args.grid is not None:
        check_output(args.grid, "--grid")
        if args.grid.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"--grid {args.grid}: name an image file ending in .png or .jpg (got "
                             f"{args.grid.suffix or 'no extension'})")
    model = resolve_model(args.checkpoint, args.config)
    if args.sampler != "released" and sampler(args.sampler).family == "pc" and model.kind != "ncsnpp":
        raise ValueError(f"--sampler {args.sampler} is a VE predictor-corrector sampler for NCSN++; {model.name} is "
                         f"{model.kind}: use --sampler released (annealed Langevin) or an ODE sampler")
    summary = run_sharded(model, method, args.T, args.count, args.seed, args.out, batch=args.batch,
                          shard_size=args.shard_size, device=args.device, progress=not args.quiet)
    if summary["rank"] == 0:
        if args.grid is not None:
            images, _ = load_samples(args.out)
            save_grid(images, args.grid)
        print(f"{args.out}: {summary['n']} samples of {model.name} ({method.label}, T={args.T}, NFE {summary['nfe']} "
              f"each); this process drew {summary['shards_drawn']} of the {summary['shards_total']} shards"
              + (f" ({summary['world']} processes)" if summary["world"] > 1 else ""))
    return 0


def _fid(args) -> int:
    result = score_run(args.samples, metric=args.metric, ref=args.ref, ref_data=args.ref_data, device=args.device)
    print(json.dumps(result))
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
    tr.add_argument("--device", type=_device, default="cpu",
                    help="cpu, cuda, cuda:1, ... (the random draws are the same on each)")
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
    sa = sub.add_parser("sample", help="draw samples from a checkpoint into shards (resumable; torchrun scales it out)",
                        description=__doc_sample__)
    sa.add_argument("--checkpoint", required=True,
                    help="a .pth path, a diffusers NCSN++ folder in the hub's layout (google/ncsnpp-*: its σ range "
                         "from scheduler/), a model shipped here (e.g. ncsnpp_fashion32) or an official folder name "
                         "under $PDS_CHECKPOINTS (e.g. ncsnpp_cifar10)")
    sa.add_argument("--config", default=None,
                    help="the paper experiment whose sampler settings to use (pds.configs)")
    sa.add_argument("--method", choices=("vanilla", "pds"), required=True)
    sa.add_argument("--sampler", choices=("released", *(n for n, s in SAMPLERS.items() if s.family != "langevin")),
                    default="released",
                    help="released: the paper's sampler of the model (VE predictor-corrector for NCSN++, annealed "
                         "Langevin for NCSN / NCSNv2); or a sampler of pds.samplers.SAMPLERS (ODE samplers: T steps "
                         "on EDM's noise levels)")
    sa.add_argument("--filters", default=None, help="statistics filters (.npz from `pds filters estimate`)")
    sa.add_argument("--space", action="store_true", help="with --filters: also the space filter A (Fig. 1)")
    sa.add_argument("--radius", type=float, default=None, help="parametric filter radius r, in units of H")
    sa.add_argument("--lam", type=float, default=None, help="parametric filter value λ")
    sa.add_argument("--centre", choices=("paper", "dc"), default="paper", help="reading of the parametric filter")
    sa.add_argument("--alpha", type=_alpha, default=None,
                    help="released normalisation α > 1, or 'none': the filter as given "
                         "(a filter from pds.exact.optimal); "
                         "default: 5 with --filters, none for the parametric filter")
    sa.add_argument("--T", type=int, required=True, help="iterations (PC iterations for NCSN++, Langevin steps else)")
    sa.add_argument("--count", type=int, required=True, help="number of samples (not --n: torchrun would take it)")
    sa.add_argument("--batch", type=int, default=64)
    sa.add_argument("--shard-size", type=int, default=64, help="samples per shard file (the unit of resumption)")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    sa.add_argument("--out", type=Path, required=True)
    sa.add_argument("--grid", type=Path, default=None, help="also save the first 64 samples as this PNG")
    sa.add_argument("--quiet", action="store_true")
    sa.set_defaults(func=_sample)
    fi = sub.add_parser("fid", help="the FD of a `pds sample` run: FID (pytorch-fid) or the classifier-feature FD")
    fi.add_argument("--samples", type=Path, required=True, help="a `pds sample` output folder")
    ref = fi.add_mutually_exclusive_group(required=True)
    ref.add_argument("--ref", default=None, help="reference statistics .npz (mu, sigma; pytorch-fid's format)")
    ref.add_argument("--ref-data", default=None,
                     help="fashion-mnist (its test set), an IDX file or an image folder; statistics cached")
    fi.add_argument("--metric", choices=("classifier", "fid"), default="classifier")
    fi.add_argument("--device", type=_device, default="cpu")
    fi.set_defaults(func=_fid)
    metrics = sub.add_parser("metrics", help="sample-quality metrics")
    msub = metrics.add_subparsers(dest="action", required=True)
    tc = msub.add_parser("train-classifier", help="train the classifier of the classifier-feature FD")
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
    except (FileNotFoundError, ValueError, NotImplementedError, FloatingPointError, KeyError, DiskFull,
            RunLocked) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"pds: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
