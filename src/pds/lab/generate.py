"""From a checkpoint to image files, on one CPU or many GPUs: what ``pds sample`` and ``pds fid`` run.

A run draws ``n`` samples into a folder as **shards** of ``shard_size`` consecutive samples
(``shard_00000.npz`` …: uint8 images [m, C, H, W], their indices and per-sample seeds, the checkpoint's SHA-256, the
method, T and NFE), each written atomically, plus ``run.json`` (the settings). Sample i draws all its noise from its
own generator, seeded with (seed, i), and the predictor-corrector sampler takes each sample's own corrector step
(the released sampler at batch size 1), so a sample depends on the batch and on the process that draws it only
through float rounding (the thread count and the batch change the order of a convolution's sums): one process and K
processes, or another ``--batch``, give the same uint8 images but for a pixel here and there one level away
(``pds.lab.cache.SAMPLE_LEVELS`` / ``SAMPLE_FRACTION``). A rerun skips the shards that exist, so a killed run loses at
most the shards in flight.

Scale-out: under ``torchrun`` (``WORLD_SIZE`` > 1) rank r draws the shards k ≡ r (mod WORLD_SIZE), on
``cuda:LOCAL_RANK`` when ``--device cuda``; the process group (NCCL on GPUs, gloo on CPUs) is used for the final
barrier, after which rank 0 checks that every shard is there and writes the grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pds.configs import experiment as experiment_named
from pds.lab.data import load_idx_images, load_image_folder
from pds.lab.experiments import Method, SmallModel, crop_and_clip, draw
from pds.lab.metrics import classifier_features, fid_statistics, frechet_distance, gaussian_statistics, load_classifier
from pds.models.checkpoints import find_checkpoint
from pds.models.trained import SHIPPED_DIR, shipped_models, sidecar_path
from pds.schedules import check_positive_int
from pds.storage import RUNS_DIR, RunLock, atomic_write, check_output

__all__ = ["resolve_model", "sample_seed", "shard_indices", "run_sharded", "load_samples", "save_grid",
           "dist_context"]

MANIFEST = "run.json"


def resolve_model(checkpoint: str, config: str | None = None) -> SmallModel:
    """A checkpoint given as a path (a file trained here, with its sidecar, or an official file), the name of a
    model shipped here (``data/checkpoints/<name>.pth``) or the folder name of an official one under
    ``$PDS_CHECKPOINTS`` (``find_checkpoint``). ``config`` names the paper experiment whose sampler settings to
    use (:mod:`pds.configs`; default: inferred)."""
    exp = None if config is None else experiment_named(config)
    path = Path(checkpoint)
    if path.exists():
        if sidecar_path(path).is_file():
            model = SmallModel(str(path))
            return model if exp is None else SmallModel(model.name, model.score, model.config, experiment=exp)
        return SmallModel.official(path, experiment=exp)
    if (SHIPPED_DIR / f"{checkpoint}.pth").is_file():
        model = SmallModel(checkpoint)
        return model if exp is None else SmallModel(model.name, model.score, model.config, experiment=exp)
    try:
        found = find_checkpoint(checkpoint)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"unknown checkpoint {checkpoint!r}: not a file, not a model shipped here "
                                f"{shipped_models()}, and {exc}") from None
    return SmallModel.official(found, experiment=exp)


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a run seeded with ``seed`` (distinct for every pair, fits in 63 bits)."""
    digest = hashlib.sha256(f"pds-sample:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard_indices(n: int, shard_size: int) -> list[range]:
    return [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


class dist_context:
    """(rank, world size, local rank) from torchrun's environment; joins and leaves the process group."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        self.group = False

    def __enter__(self):
        if self.world > 1:
            backend = "nccl" if self.device.startswith("cuda") else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend)
                self.group = True
        return self

    def barrier(self):
        if self.world > 1:
            if self.device.startswith("cuda"):
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def __exit__(self, *exc):
        if self.group:
            dist.destroy_process_group()
        return False


def _settings(model: SmallModel, method: Method, T: int, n: int, seed: int, shard_size: int) -> dict:
    return {"checkpoint": model.name, "checkpoint_sha256": model.config.get("file_sha256"),
            "experiment": model.experiment.name, "method": dataclasses.asdict(method), "label": method.label, "T": T,
            "n": n, "seed": seed, "shard_size": shard_size, "corrector_norm": "sample",
            "image_shape": [model.shape[0], model.shape[1] - 2 * model.pad, model.shape[2] - 2 * model.pad]}


def _write_manifest(out: Path, settings: dict) -> None:
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise ValueError(f"{out} already holds another run (differs in {diff}); choose another --out or delete it")
        return
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(settings, indent=1) + "\n"), "the run's manifest")


SHARD_ARRAYS = ("images", "indices", "seeds", "nfe")


def shard_problem(path: Path) -> str | None:
    """Why the shard at ``path`` cannot be read (truncated, not a zip, an array missing), or None when it can."""
    try:
        with np.load(path) as data:
            missing = [k for k in SHARD_ARRAYS if k not in data.files]
            if missing:
                return f"arrays {missing} missing"
            idx, images = data["indices"], data["images"]
            if len(idx) != len(images):
                return f"{len(idx)} indices for {len(images)} images"
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError, OSError…: the file is not what we wrote
        return f"{type(exc).__name__}: {exc}"
    return None


def set_aside(path: Path) -> Path:
    """Rename an unreadable shard out of the way (``shard_00003.npz`` → ``shard_00003.unreadable-1.npz.bad``), never
    deleting it; returns the new path."""
    k = 1
    while (dest := path.with_name(f"{path.stem}.unreadable-{k}{path.suffix}.bad")).exists():
        k += 1
    os.replace(path, dest)
    return dest


@torch.no_grad()
def run_sharded(model: SmallModel, method: Method, T: int, n: int, seed: int, out, *, batch: int = 64,
                shard_size: int = 64, device: str = "cpu", progress: bool = True) -> dict:
    """Draw the shards of this process (see the module docstring) into ``out``; return a summary. A process started
    by hand holds the folder's lock (:class:`pds.storage.RunLock`) while it draws; unreadable shards are set aside
    and drawn again; every file is written atomically, and a full disk stops with one line (the finished shards
    stay)."""
    for name, value in (("T", T), ("n", n), ("batch", batch), ("shard_size", shard_size)):
        check_positive_int(value, name)
    out = check_output(out, "--out", folder=True)
    with dist_context(device) as ctx:
        dev = torch.device(f"cuda:{ctx.local_rank}" if device == "cuda" and ctx.world > 1 else device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        settings = _settings(model, method, T, n, seed, shard_size)
        pre = model.preconditioner(method)  # a bad filter is refused before anything is written
        lock = RunLock(out, f"pds sample {model.name}, {method.label}, T={T}, n={n}")
        try:
            if ctx.rank == 0:
                out.mkdir(parents=True, exist_ok=True)
                if ctx.world == 1:  # processes started by hand: one at a time per folder (torchrun's ranks share it)
                    lock.acquire()
                _write_manifest(out, settings)
            ctx.barrier()
            _write_manifest(out, settings)  # every rank checks it extends the same run
            if isinstance(model.score, torch.nn.Module):
                model.score.to(dev)
            shards = shard_indices(n, shard_size)
            mine = [k for k in range(len(shards)) if k % ctx.world == ctx.rank]
            todo = _shards_to_draw(out, mine)
            bar = tqdm(todo, disable=not progress or ctx.rank != 0, unit="shard",
                       desc=f"pds sample ({len(mine)} shards on rank 0)")
            for k in bar:
                _draw_shard(model, pre, method, T, seed, out, k, list(shards[k]), batch, dev, settings,
                            f"{len(mine) - len(todo) + todo.index(k)} of this process's {len(mine)} shards")
            ctx.barrier()
            summary = {"rank": ctx.rank, "world": ctx.world, "shards_drawn": len(todo), "shards_total": len(shards),
                       "device": str(dev)}
            if ctx.rank == 0:
                images, manifest = load_samples(out)
                summary.update(n=len(images), nfe=manifest["nfe"])
        finally:
            lock.release()
    return summary


def _shards_to_draw(out: Path, mine: list[int]) -> list[int]:
    """This process's shards that are not on disk; an unreadable one (a copy cut short, a foreign tool's kill) is
    set aside, said, and drawn again."""
    for k in mine:
        path = out / f"shard_{k:05d}.npz"
        if path.is_file() and (why := shard_problem(path)) is not None:
            moved = set_aside(path)
            print(f"pds sample: {path.name} cannot be read ({why}); set aside as {moved.name}, drawing it again",
                  file=sys.stderr)
    return [k for k in mine if not (out / f"shard_{k:05d}.npz").is_file()]


def _draw_shard(model, pre, method, T, seed, out, k, idx, batch, dev, settings, done: str) -> None:
    parts, nfe = [], None
    for start in range(0, len(idx), batch):
        chunk = idx[start:start + batch]
        gens = [torch.Generator(device=dev).manual_seed(sample_seed(seed, i)) for i in chunk]
        x, nfe = draw(model, pre, method, T, (len(chunk), *model.shape), gens, dev, corrector="sample")
        parts.append(crop_and_clip(x, model.pad).cpu())
    arrays = dict(images=(torch.cat(parts).numpy() * 255).round().astype(np.uint8),
                  indices=np.asarray(idx, dtype=np.int64),
                  seeds=np.asarray([sample_seed(seed, i) for i in idx], dtype=np.uint64), nfe=np.int64(nfe),
                  meta=np.asarray(json.dumps(settings)))
    atomic_write(out / f"shard_{k:05d}.npz", lambda tmp: np.savez(tmp, **arrays), f"shard {k}", done=done)


def load_samples(folder) -> tuple[torch.Tensor, dict]:
    """All samples of a finished run as float images in [0, 1] (index order) and its settings; a run with a
    missing or duplicated sample is refused (rerun ``pds sample`` with the same arguments to complete it)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a pds sample run (no {MANIFEST}); run `pds sample --out {folder}`")
    manifest = json.loads(path.read_text())
    n = int(manifest["n"])
    images, seen, nfe = None, np.zeros(n, dtype=np.int64), None
    for shard in sorted(folder.glob("shard_*.npz")):
        if shard.name.endswith(".tmp.npz"):
            continue
        if (why := shard_problem(shard)) is not None:
            raise ValueError(f"{shard} cannot be read ({why}); rerun the same `pds sample` command: it sets the shard "
                             "aside and draws it again")
        with np.load(shard) as data:
            idx, x = data["indices"], data["images"]
            nfe = int(data["nfe"])
        if images is None:
            images = np.zeros((n, *x.shape[1:]), dtype=np.uint8)
        if idx.max(initial=-1) >= n:
            raise ValueError(f"{shard} holds sample index {int(idx.max())} >= n = {n}")
        images[idx] = x
        seen[idx] += 1
    missing, twice = int((seen == 0).sum()), int((seen > 1).sum())
    if missing or twice:
        raise ValueError(f"{folder}: {missing} samples missing, {twice} written twice; rerun the same "
                         "`pds sample` command to complete the run")
    return torch.from_numpy(images).float() / 255.0, {**manifest, "nfe": nfe}


def save_grid(images: torch.Tensor, path, nrow: int | None = None) -> Path:
    """The first 64 images as one PNG grid (torchvision's ``save_image``, an optional dependency)."""
    from torchvision.utils import save_image

    x = images[:64]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(x, path, nrow=nrow or int(math.ceil(math.sqrt(len(x)))), padding=1, pad_value=1.0)
    return path


# -- scores of a run: pds fid ----------------------------------------------------------------------
METRICS = ("classifier", "fid")


def data_fingerprint(spec: str, size: int | None) -> str:
    """SHA-256 of what a reference set is made of: the bytes of an IDX file, the (path, size, mtime) of every image
    in a folder, or the name of a built-in set; with the metric's image size."""
    h = hashlib.sha256(f"{spec}|{size}".encode())
    path = Path(spec)
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def reference_images(spec: str, size: int | None) -> torch.Tensor:
    """The reference images of ``pds fid --ref-data``: "fashion-mnist" (its 10 000 test images), an IDX file, or a
    folder of PNG/JPEG images (centre-cropped and resized to ``size``)."""
    if spec in ("fashion-mnist", "mnist"):
        return load_idx_images(spec, "test")
    if spec.endswith(("-ubyte", "-ubyte.gz")):
        return load_idx_images("idx", "test", path=spec)
    if size is None:
        raise ValueError("--ref-data given as an image folder needs --size (the samples' size)")
    return load_image_folder(spec, size)


def score_run(folder, metric: str = "classifier", ref: str | None = None, ref_data: str | None = None,
              cache_dir=None, device: str = "cpu") -> dict:
    """FD of a ``pds sample`` run against a reference: ``metric`` "classifier" (the Fashion-MNIST classifier's
    features, not FID; 1×28×28 images) or "fid" (pytorch-fid's Inception, whose weights must be on disk). The
    reference is ``ref`` (an .npz with ``mu`` and ``sigma``) or ``ref_data`` (see :func:`reference_images`), whose
    statistics are computed once and cached in ``cache_dir`` under the data's fingerprint."""

    if metric not in METRICS:
        raise ValueError(f"--metric must be one of {METRICS}, got {metric!r}")
    if (ref is None) == (ref_data is None):
        raise ValueError("give exactly one reference: --ref STATS.npz or --ref-data DATA")
    images, manifest = load_samples(folder)
    if metric == "classifier" and tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"the classifier metric is for 1×28×28 images (Fashion-MNIST); these are "
                         f"{tuple(images.shape[1:])}: use --metric fid")
    if metric == "classifier":
        clf = load_classifier()

        def stats(x):
            return gaussian_statistics(classifier_features(clf, x))
    else:
        def stats(x):
            return fid_statistics(x, device=device)
    if ref is not None:
        with np.load(ref) as data:
            if "mu" not in data or "sigma" not in data:
                raise ValueError(f"{ref} must hold arrays mu and sigma (pytorch-fid's statistics format)")
            mu_r, sigma_r = data["mu"], data["sigma"]
        source = str(ref)
    else:
        size = images.shape[-1]
        cache = Path(cache_dir or RUNS_DIR / "fid_stats") / f"{metric}-{data_fingerprint(ref_data, size)}.npz"
        if cache.is_file():
            with np.load(cache) as data:
                mu_r, sigma_r = data["mu"], data["sigma"]
        else:
            mu_r, sigma_r = stats(reference_images(ref_data, size))
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache, lambda tmp: np.savez(tmp, mu=mu_r, sigma=sigma_r), "the reference statistics")
        source = f"{ref_data} (statistics cached in {cache})"
    mu, sigma = stats(images)
    value = frechet_distance(mu, sigma, mu_r, sigma_r)
    name = "FID (pytorch-fid Inception)" if metric == "fid" else "classifier-feature FD (not FID)"
    result = {"metric": name, "value": value, "n": len(images), "reference": source, "checkpoint":
              manifest["checkpoint"], "method": manifest["label"], "T": manifest["T"], "nfe": manifest["nfe"],
              "seed": manifest["seed"]}
    out = Path(folder) / f"fd_{metric}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result
