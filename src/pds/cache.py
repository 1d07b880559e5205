"""The result cache of the sample-quality experiments: every finished run, keyed by what it computes.

A run of :func:`pds.experiments.sample` scored by a metric is described by (:func:`describe`):

* its **settings**, normalised: the :class:`~pds.experiments.Method` (numbers as floats and every default filled, by
  the method itself; a filter file by its SHA-256, not its path), T, n, seed, batch size and the device type; and the
  model's: its weights' SHA-256, kind, image shape and padding, noise levels and sampler settings (σ range and
  ``num_scales``, or the σ ladder, ``n_steps_each`` and ``step_lr``; the paper experiment's snr, denoising and
  initialisation) and the data its statistics filter is estimated from;
* three **behaviour fingerprints** (:mod:`pds.fingerprint`: digests of canonical computations in float64, quantised so
  that they are the same on every machine):

  - *sampling* (:func:`sampling_fingerprint`): the samples of canonical tiny runs of the same path — the same sampler,
    the method's preconditioner, filter and solenoidal term, the full schedule and a shortened one, batching,
    cropping and clipping — with a fixed analytic score (a stationary Gaussian field), a fixed seed and 8×8 images;
  - *network* (:func:`network_fingerprint`): the model's own network (its weights, in float64) at fixed inputs and its
    largest and smallest noise level;
  - *metric*: ``score_fn.fingerprint()`` (:meth:`pds.metrics.ClassifierFD.fingerprint`); a metric without one is
    known by its name only.

The key is the SHA-1 (16 hex digits) of that description. A refactor, a comment or an edit that changes no number
keeps every key; a numerical change of the sampler, the filters, the schedules, the network code or the metric
changes them, and the affected runs are recomputed instead of served. ``tests/test_cache.py`` checks that every
shipped run's key is the one the current code computes (so a change that orphans them fails a test instead of
silently costing hours) and that a comment appended to ``samplers.py`` keeps them all.

Rows are JSON lines in ``root/results.jsonl``; each run's samples (uint8, compressed) are in ``root/<key>.npz``,
written before its row. ``shipped``: a read-only cache of the same layout consulted after ``root`` (the repository
ships the expensive default-profile runs in ``data/results/``). :func:`recompute` draws a cached run again from
scratch and compares it with the stored one bit for bit (``python -m pds.cache verify KEY …``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pds.checkpoints import file_sha256
from pds.data import load_idx_images
from pds.experiments import Method, SmallModel, draw, sample
from pds.filters import save_filters
from pds.fingerprint import digest
from pds.fourier import radius_squared
from pds.metrics import ClassifierFD, image_statistics, load_classifier
from pds.schedules import geometric_sigmas
from pds.scores import StationaryGaussianScore
from pds.storage import append_line, atomic_write, read_lines

__all__ = ["ResultCache", "describe", "run_key", "model_settings", "sampling_fingerprint", "network_fingerprint",
           "metric_fingerprint", "ship_cache", "recompute"]

CANONICAL_SIZE = 8  # image side of the canonical runs
CANONICAL_SHORT_T = 5  # the shortened schedule of the canonical runs (the full one is the canonical model's)


# -- the description of a run ------------------------------------------------------------------------------------
def model_settings(model: SmallModel) -> dict:
    """Everything about ``model`` that a run's samples depend on, besides the code: weights, shape, noise levels,
    sampler settings (normalised: floats and ints, lists for tuples)."""
    cfg, exp = model.config, model.experiment
    out = {"weights": cfg.get("file_sha256"), "kind": model.kind, "shape": [int(s) for s in model.shape],
           "pad": int(model.pad), "data": cfg.get("data", {}).get("name", "fashion-mnist"),
           "snr": None if exp.snr is None else float(exp.snr), "denoise": bool(exp.denoise), "init": exp.init}
    if model.kind == "ncsnpp":
        out.update(sigma_min=float(cfg["sigma_min"]), sigma_max=float(cfg["sigma_max"]),
                   num_scales=int(cfg["num_scales"]))
    else:
        out.update(sigmas=[float(s) for s in cfg["sigmas"]], n_steps_each=model.n_steps_each,
                   step_lr=float(model.step_lr))
    return out


def _method_settings(method: Method) -> dict:
    out = asdict(method)
    if method.filter == "file":  # the file's content, not where it lies
        out["path"] = None
        out["file_sha256"] = file_sha256(method.path)
    return out


def describe(model: SmallModel, method: Method, T: int, n: int, seed: int, batch_size: int, device, score_fn,
             fingerprints: dict | None = None) -> dict:
    """The normalised description of a run (see the module docstring); its :func:`run_key` is the cache key.
    ``fingerprints``: the three behaviour fingerprints when already known (:class:`ResultCache` memoises them)."""
    if int(T) != T or int(n) != n or int(seed) != seed or int(batch_size) != batch_size:
        raise ValueError(f"T, n, seed and batch_size must be integers, got {T}, {n}, {seed}, {batch_size}")
    if fingerprints is None:
        fingerprints = {"sampling": sampling_fingerprint(model, method), "network": network_fingerprint(model),
                        "metric": metric_fingerprint(score_fn)}
    return {"model": model_settings(model), "method": _method_settings(method), "T": int(T), "n": int(n),
            "seed": int(seed), "batch_size": int(batch_size), "device": torch.device(device or "cpu").type,
            "fingerprints": dict(fingerprints)}


def run_key(desc: dict) -> str:
    """The cache key of a :func:`describe` description: SHA-1 of its canonical JSON, 16 hex digits."""
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


# -- behaviour fingerprints -------------------------------------------------------------------------------------
def _canonical_model(model: SmallModel) -> SmallModel:
    """A tiny stand-in of ``model`` on the same sampling path: same kind, channels, padding (or none), paper
    experiment and sidecar sampler entry, with an exact stationary-Gaussian score, 8×8 images, a short noise ladder and
    64 fixed random training images for the statistics filter."""
    c, size = model.shape[0], CANONICAL_SIZE
    power = (size * size) ** 2 * 0.01 / (1.0 + radius_squared(size, size))
    target = StationaryGaussianScore(torch.full((c, size, size), 0.4, dtype=torch.float64),
                                     power.expand(c, size, size))
    train = torch.rand(64, c, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cfg = {"kind": model.kind, "net": {"image_size": size, "channels": c}, "data": {"pad": 1 if model.pad else 0}}
    if model.kind == "ncsnpp":
        cfg.update(sigma_min=0.01, sigma_max=3.0, num_scales=12)
    else:
        cfg["sigmas"] = [float(s) for s in geometric_sigmas(1.0, 0.01, 4)]
        if "sampler" in model.config:
            cfg["sampler"] = dict(model.config["sampler"])
    return SmallModel(f"canonical {model.kind}", score=target, config=cfg, train_images=train,
                      experiment=model.experiment)


def sampling_fingerprint(model: SmallModel, method: Method) -> str:
    """Digest of canonical runs of ``method`` on ``model``'s sampling path (see the module docstring): the raw
    output of :func:`pds.experiments.draw` and the cropped, clipped output of :func:`pds.experiments.sample` (3 samples
    in batches of 2), each at the canonical model's full length and at a shortened T, in float64. A filter file is
    replaced by a fixed one of the canonical shape (its own content is in the description). A run that diverges
    contributes its message."""
    canon = _canonical_model(model)
    parts: list = [method.sampler, model.kind]
    with tempfile.TemporaryDirectory() as tmp:
        if method.filter == "file":
            c, size = canon.shape[0], CANONICAL_SIZE
            k2 = radius_squared(size, size)
            freq = torch.log1p((size * size) ** 2 / (1.0 + k2)).expand(c, size, size).clone()
            space = 0.5 + torch.rand(c, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            path = save_filters(Path(tmp) / "canonical.npz", freq, space, source="canonical")
            method = dataclasses.replace(method, path=str(path))
        pre = canon.preconditioner(method)
        for T in (canon.full_T, CANONICAL_SHORT_T):
            try:
                raw, nfe = draw(canon, pre, method, T, (2, *canon.shape), torch.Generator().manual_seed(0), "cpu",
                                dtype=torch.float64)
                out, nfe2 = sample(canon, method, T, n=3, seed=1, batch_size=2, dtype=torch.float64)
                parts += [T, nfe, raw, nfe2, out]
            except FloatingPointError as exc:
                parts += [T, "diverged", str(exc)]
    return digest(*parts)


def network_fingerprint(model: SmallModel) -> str:
    """Digest of ``model``'s score network with its own weights, in float64 and in eval mode (a copy), on two fixed
    random inputs of its shape at its largest and smallest noise level. A score that is not a torch module (an
    analytic one) is evaluated as it is, on float64 inputs."""
    score = model.score
    if callable(getattr(score, "fingerprint", None)):  # e.g. pds.scores.EmpiricalScore: the set and its code
        return digest(type(score).__name__, score.fingerprint())
    if isinstance(score, torch.nn.Module):
        score = copy.deepcopy(score).double().eval()
    cfg = model.config
    levels = (cfg["sigma_max"], cfg["sigma_min"]) if model.kind == "ncsnpp" else (cfg["sigmas"][0], cfg["sigmas"][-1])
    x = torch.rand(2, *model.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        outs = [score(x, float(s)) for s in levels]
    return digest(type(model.score).__name__, *[float(s) for s in levels], *outs)


def metric_fingerprint(score_fn) -> str:
    """``score_fn.fingerprint()`` when the metric has one (:class:`pds.metrics.ClassifierFD`), else its name (the
    cache cannot see inside it: change the name when the metric changes)."""
    fp = getattr(score_fn, "fingerprint", None)
    if callable(fp):
        return str(fp())
    return "name:" + str(getattr(score_fn, "name", None) or getattr(score_fn, "__qualname__", repr(score_fn)))


# -- the cache ----------------------------------------------------------------------------------------------------
class ResultCache:
    """Finished runs as JSON lines in ``root/results.jsonl`` plus their samples (uint8, compressed ``.npz``), keyed
    by :func:`run_key` of :func:`describe` (see the module docstring). ``shipped``: a read-only cache of the same
    layout consulted after ``root``."""

    def __init__(self, root, shipped=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "results.jsonl"
        self.shipped = None if shipped is None else Path(shipped)
        self._memo: dict = {}  # fingerprints of (model, method) / model / metric, with the objects kept alive

    @staticmethod
    def _rows(folder: Path) -> list[dict]:
        return read_lines(folder / "results.jsonl")  # a line cut by a kill is skipped: that run is simply redone

    def rows(self) -> list[dict]:
        return self._rows(self.root) + ([] if self.shipped is None else self._rows(self.shipped))

    def _find(self, key: str) -> tuple[dict, Path] | None:
        for folder in (self.root, self.shipped):
            if folder is None:
                continue
            for row in self._rows(folder):
                if row.get("key") == key and (folder / f"{key}.npz").is_file():
                    return row, folder
        return None

    def get(self, key: str) -> dict | None:
        found = self._find(key)
        return None if found is None else found[0]

    def samples(self, key: str) -> torch.Tensor:
        found = self._find(key)
        if found is None:
            raise KeyError(f"no cached run {key}")
        with np.load(found[1] / f"{key}.npz") as data:
            return torch.from_numpy(data["samples"]).float() / 255.0

    def image_stats(self, row: dict) -> dict | None:
        """Brightness and contrast of all of a run's samples (:func:`pds.metrics.image_statistics`): stored in the
        row when it was computed (a shipped cache keeps only the first samples), else computed from the samples."""
        if row.get("image_stats") is not None or row.get("diverged"):
            return row.get("image_stats")
        return image_statistics(self.samples(row["key"]))

    def _memoised(self, key, objects, compute):
        if key not in self._memo:
            self._memo[key] = (objects, compute())
        return self._memo[key][1]

    def fingerprints(self, model: SmallModel, method: Method, score_fn) -> dict:
        """The three behaviour fingerprints of a run (computed once per model, method and metric object)."""
        return {
            "sampling": self._memoised(("sampling", id(model), method), model,
                                       lambda: sampling_fingerprint(model, method)),
            "network": self._memoised(("network", id(model)), model, lambda: network_fingerprint(model)),
            "metric": self._memoised(("metric", id(score_fn)), score_fn, lambda: metric_fingerprint(score_fn)),
        }

    def describe(self, model: SmallModel, method: Method, T: int, n: int, seed: int, batch_size: int, score_fn,
                 device=None) -> dict:
        return describe(model, method, T, n, seed, batch_size, device, score_fn,
                        fingerprints=self.fingerprints(model, method, score_fn))

    def key(self, model: SmallModel, method: Method, T: int, n: int, seed: int, score_fn, batch_size: int = 500,
            device=None) -> str:
        """The key of (model, method, T, n, seed) with ``score_fn``, as :meth:`run` computes it."""
        return run_key(self.describe(model, method, T, n, seed, batch_size, score_fn, device))

    def run(self, model: SmallModel, method: Method, T: int, n: int, seed: int, score_fn, batch_size: int = 500,
            progress: bool = False, device=None) -> dict:
        """The row of (model, method, T, n, seed): read from the cache, or sampled, scored with
        ``score_fn(samples, nfe=..., seed=...) -> MetricResult`` (e.g. a :class:`pds.metrics.ClassifierFD`)
        and written (samples first, then the row). A run that diverges (NaN/inf) is stored with value ``inf``, no
        samples and the sampler's message in ``diverged``."""
        desc = self.describe(model, method, T, n, seed, batch_size, score_fn, device)
        key = run_key(desc)
        row = self.get(key)
        if row is not None:
            return row
        x, nfe, wall, diverged = _draw_run(model, method, T, n, seed, batch_size, progress, device)
        if diverged is None:
            metric = score_fn(x, nfe=nfe, seed=seed)
            name, value, reference = metric.name, metric.value, metric.reference
            stats = image_statistics(x)
        else:
            name, value, reference, stats = "diverged", math.inf, None, None
        samples = _as_uint8(x)
        atomic_write(self.root / f"{key}.npz", lambda tmp: np.savez_compressed(tmp, samples=samples),
                     f"the samples of run {key} ({method.label}, T={T})",
                     done="the runs already in this cache")
        row = {"key": key, "name": model.name, **desc, "label": method.label, "nfe": nfe, "metric": name,
               "value": value, "reference": reference, "wall_s": wall, "diverged": diverged, "image_stats": stats}
        if diverged is None and metric.extra:
            row["extra"] = metric.extra  # the metric's other measures (pds.image_sets.LandingMetric)
        append_line(self.path, row, f"the row of run {key}")  # samples first, then the row: a row always has them
        return row


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.numpy() * 255).round().astype(np.uint8)


def _draw_run(model, method, T, n, seed, batch_size, progress, device):
    t0 = time.perf_counter()
    try:
        x, nfe = sample(model, method, T, n, seed, batch_size=batch_size, progress=progress, device=device)
    except FloatingPointError as exc:  # a diverging setting is a result too: cached as such, not redone
        return torch.zeros(0, *model.shape), None, time.perf_counter() - t0, str(exc)
    return x, nfe, time.perf_counter() - t0, None


def ship_cache(src, dst, keep: int = 32, keep_bytes: int = 2**18) -> dict:
    """Copy the result cache ``src`` into ``dst`` compactly, for shipping: every row, with the image statistics of all
    its samples, and only the first samples of each run (what the notebooks show): ``keep`` at most, and no more than
    ``keep_bytes`` of uint8 pixels (at least one sample), so that a run of 256² colour images ships one. Rows already
    in ``dst`` (with their samples) are kept and a row of ``src`` with the same key replaces its copy. A run whose
    samples are missing is skipped. Returns counts."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    merged = {row["key"]: row for row in ResultCache._rows(dst) if (dst / f"{row['key']}.npz").is_file()}
    kept = 0
    for row in ResultCache._rows(src):
        path = src / f"{row['key']}.npz"
        if not path.is_file():
            continue
        with np.load(path) as data:
            x = data["samples"]
        stats = row.get("image_stats")
        if stats is None and not row.get("diverged"):  # rows cached before image statistics were stored
            stats = image_statistics(torch.from_numpy(x).float() / 255.0)
        per = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
        k = int(min(keep, len(x), max(1, keep_bytes // max(per, 1))))
        merged[row["key"]] = {**row, "image_stats": stats, "samples_kept": k}
        atomic_write(dst / f"{row['key']}.npz", lambda tmp, x=x, k=k: np.savez_compressed(tmp, samples=x[:k]),
                     f"the shipped samples of run {row['key']}")
        kept += 1
    text = "".join(json.dumps(r) + "\n" for r in merged.values())
    atomic_write(dst / "results.jsonl", lambda tmp: tmp.write_text(text), "the shipped rows")
    return {"runs": kept, "rows": len(merged)}


# -- recomputing a stored run from scratch --------------------------------------------------------------------------
def method_of(row: dict) -> Method:
    """The :class:`~pds.experiments.Method` of a stored row (a filter file is named by its content only, so such a row
    cannot be redrawn without the file)."""
    fields = dict(row["method"])
    fields.pop("file_sha256", None)
    return Method(**fields)


def recompute(row: dict, model: SmallModel, score_fn, stored_samples: np.ndarray | None = None,
              device=None) -> dict:
    """Draw the run of a stored ``row`` again from scratch (no cache) with ``model`` and ``score_fn`` and compare:
    its key under the current code, the metric value, the image statistics and NFE (exact equality), and the first
    stored samples (``stored_samples``, uint8) byte for byte. Returns the comparison (``identical``: all equal)."""
    method = method_of(row)
    desc = describe(model, method, row["T"], row["n"], row["seed"], row["batch_size"], device, score_fn)
    x, nfe, wall, diverged = _draw_run(model, method, row["T"], row["n"], row["seed"], row["batch_size"], False,
                                       device)
    if diverged is None:
        value, stats = float(score_fn(x, nfe=nfe, seed=row["seed"]).value), image_statistics(x)
    else:
        value, stats = math.inf, None
    rel = 0.0 if value == row["value"] else abs(value - row["value"]) / max(abs(row["value"]), 1e-300)
    out = {"key": row["key"], "label": row.get("label"), "key_now": run_key(desc), "value": row["value"],
           "value_now": value, "value_rel_diff": rel, "image_stats": row.get("image_stats"),
           "image_stats_now": stats, "nfe": row["nfe"], "nfe_now": nfe, "wall_s": wall}
    same = [out["key_now"] == row["key"], value == row["value"], stats == row.get("image_stats"), nfe == row["nfe"]]
    if stored_samples is not None:
        now = _as_uint8(x)[: len(stored_samples)]
        out["samples_compared"] = int(len(stored_samples))
        out["samples_identical"] = now.shape == stored_samples.shape and bool(np.array_equal(now, stored_samples))
        same.append(out["samples_identical"])
    out["identical"] = all(same)
    return out


def _verify_main(keys, folder, device=None) -> int:
    """``python -m pds.cache verify KEY …``: recompute shipped runs of the default profile's models from scratch.

    Bit-for-bit agreement needs the arithmetic the run was drawn with: the shipped runs were drawn with one torch
    thread (``OMP_NUM_THREADS=1``; the order of a convolution's sums depends on the thread count) on a machine whose
    OpenBLAS took its AVX-512 ("SkylakeX") kernels, which the metric's covariance products use; on another CPU set
    ``OPENBLAS_CORETYPE=SkylakeX`` where the CPU has AVX-512, else expect the value to differ at ~1e-13 relative
    (``value_rel_diff``) while the samples stay identical."""
    cache = ResultCache(tempfile.mkdtemp(), shipped=folder)
    score_fn = ClassifierFD(load_classifier(), load_idx_images("fashion-mnist", "test"), "Fashion-MNIST test set")
    models: dict = {}
    ok = True
    for key in keys:
        row = cache.get(key)
        if row is None:
            print(f"{key}: no such run in {folder}", file=sys.stderr)
            return 2
        name = row.get("name") or row.get("model")
        models.setdefault(name, SmallModel(name))
        with np.load(Path(folder) / f"{key}.npz") as data:
            stored = data["samples"]
        res = recompute(row, models[name], score_fn, stored, device=device)
        ok &= res["identical"]
        print(json.dumps(res), flush=True)
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds.cache", description="recompute cached runs from scratch")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="draw stored runs again and compare values, statistics and samples bit for bit")
    v.add_argument("keys", nargs="+")
    v.add_argument("--folder", default=str(Path(__file__).resolve().parents[2] / "data/results/quality/default"))
    v.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    return _verify_main(args.keys, args.folder, args.device)


if __name__ == "__main__":
    sys.exit(main())
