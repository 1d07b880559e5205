"""The result cache of the sample-quality experiments: every finished run, found again by what it computes.

A run of :func:`pds.lab.experiments.sample` scored by a metric is described by (:func:`describe`):

* its **settings**, normalised: the :class:`~pds.lab.experiments.Method` (numbers as floats and every default filled, by
  the method itself; a filter file by the fingerprint of its values, not its path or bytes), T, n, seed, batch size
  and the device type; and the model's: its weights (a checkpoint's SHA-256, or the fingerprint of the image set an
  exact score is made of), kind, image shape and padding, noise levels and sampler settings (σ range and
  ``num_scales``, or the σ ladder, ``n_steps_each`` and ``step_lr``; the paper experiment's name, snr, denoising and
  initialisation), the data its statistics filter is estimated from and, for a model built on an image set, the
  recipe that rebuilds it;
* three **behaviour fingerprints** (:mod:`pds.fingerprint`: numbers of canonical computations in float64, compared
  within a tolerance, so that they are the same behaviour on every machine):

  - *sampling* (:func:`sampling_fingerprint`): the samples of canonical tiny runs of the same path — the same sampler,
    the method's preconditioner, filter and solenoidal term, the full schedule and a shortened one, batching,
    cropping and clipping — with a fixed analytic score (a stationary Gaussian field), a fixed seed and 8×8 images;
  - *network* (:func:`network_fingerprint`): the model's own network (its weights, in float64) at fixed inputs and its
    largest and smallest noise level;
  - *metric*: ``score_fn.fingerprint()`` (:meth:`pds.lab.metrics.ClassifierFD.fingerprint`); a metric without one is
    known by its name only.

Keys, fingerprints and the lookup (by key, else within the fingerprints' tolerances) are :mod:`pds.lab.store`'s; nothing
is compared bit for bit. A refactor, a comment or an edit that changes no number keeps every run; a numerical change of
the sampler, the filters, the schedules, the network code or the metric changes the fingerprints beyond their
tolerances, and the affected runs are recomputed instead of served. ``tests/test_cache.py`` checks that every shipped
run is found by what the current code computes (so a change that orphans them fails a test instead of silently costing
hours), that a comment appended to ``samplers.py`` keeps them all, and that shipped runs drawn again under another
kernel set agree.

Rows are those of a :class:`pds.lab.store.Store` in ``root/results.jsonl`` (``{"key", "description", **fields}``; rows
written before, with the description's parts at the top level, are re-laid on first use, :func:`relay_legacy`); each
run's samples (uint8, compressed) are in ``root/<key>.npz``,
written before its row. ``shipped``: a read-only cache of the same layout consulted after ``root`` (the repository
ships the expensive default-profile runs in ``data/results/``). A row also records how to rebuild its metric and its
filter file (``metric_source``, ``filter_source``), which :mod:`pds.lab.recompute` reads to draw it again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pds.filters import filters_fingerprint, load_filters, save_filters
from pds.fingerprint import Fingerprint, fingerprint, score_fingerprint
from pds.fourier import radius_squared
from pds.lab.experiments import Method, SmallModel, draw, sample
from pds.lab.metrics import image_statistics
from pds.lab.store import Store, description_key, write_rows
from pds.schedules import geometric_sigmas
from pds.scores import StationaryGaussianScore
from pds.storage import atomic_write, read_lines

__all__ = ["ResultCache", "stored_rows", "relay_legacy", "describe", "run_key", "model_settings",
           "sampling_fingerprint", "network_fingerprint",
           "metric_fingerprint", "ship_cache"]

CANONICAL_SIZE = 8  # image side of the canonical runs
CANONICAL_SHORT_T = 5  # the shortened schedule of the canonical runs (the full one is the canonical model's)


# -- the description of a run ------------------------------------------------------------------------------------
def model_settings(model: SmallModel) -> dict:
    """Everything about ``model`` that a run's samples depend on, besides the code: weights (a checkpoint's SHA-256,
    or the fingerprint of the image set an exact score is made of), shape, noise levels, sampler settings (normalised:
    floats and ints, lists for tuples), the paper experiment and, for a model built from an image set, its ``source``
    (what :func:`pds.lab.recompute.rebuild` needs)."""
    weights = model.config.get("file_sha256")
    if weights is None and callable(getattr(model.score, "data_fingerprint", None)):
        weights = model.score.data_fingerprint()
    return {"weights": weights, **_settings_but_weights(model)}


def _settings_but_weights(model: SmallModel) -> dict:
    cfg, exp = model.config, model.experiment
    out = {"kind": model.kind, "shape": [int(s) for s in model.shape],
           "pad": int(model.pad), "data": cfg.get("data", {}).get("name", "fashion-mnist"),
           "snr": None if exp.snr is None else float(exp.snr), "denoise": bool(exp.denoise), "init": exp.init,
           "experiment": exp.name, "source": cfg.get("source")}
    if model.kind == "ncsnpp":
        out.update(sigma_min=float(cfg["sigma_min"]), sigma_max=float(cfg["sigma_max"]),
                   num_scales=int(cfg["num_scales"]))
    else:
        out.update(sigmas=[float(s) for s in cfg["sigmas"]], n_steps_each=model.n_steps_each,
                   step_lr=float(model.step_lr))
    return out


def _method_settings(method: Method) -> dict:
    out = asdict(method)
    if method.filter == "file":  # the file's values, not where it lies nor its bytes
        out["path"] = None
        out["file"] = filters_fingerprint(method.path)
    return out


def describe(model: SmallModel, method: Method, T: int, n: int, seed: int, batch_size: int, device, score_fn,
             fingerprints: dict | None = None) -> dict:
    """The normalised description of a run (see the module docstring), its fingerprints as
    :class:`~pds.fingerprint.Fingerprint` s; its :func:`run_key` is the cache key. ``fingerprints``: the three
    behaviour fingerprints when already computed (:meth:`ResultCache.fingerprints` memoises them)."""
    if int(T) != T or int(n) != n or int(seed) != seed or int(batch_size) != batch_size:
        raise ValueError(f"T, n, seed and batch_size must be integers, got {T}, {n}, {seed}, {batch_size}")
    fps = fingerprints or {"sampling": sampling_fingerprint(model, method), "network": network_fingerprint(model),
                           "metric": metric_fingerprint(score_fn)}
    return {"model": model_settings(model), "method": _method_settings(method), "T": int(T), "n": int(n),
            "seed": int(seed), "batch_size": int(batch_size), "device": torch.device(device or "cpu").type,
            "fingerprints": fps}


def run_key(desc: dict) -> str:
    """The cache key of a :func:`describe` description whose fingerprints are named by their ids
    (:meth:`ResultCache.describe`): :func:`pds.lab.store.description_key` of it. It names the run; the cache finds a
    run by it, or else by :meth:`FingerprintTable.matches`."""
    return description_key(desc)


DESCRIPTION = ("model", "method", "T", "n", "seed", "batch_size", "device", "fingerprints")


def description_of(row: dict) -> dict:
    """The description a stored row was keyed by."""
    return {k: row[k] for k in DESCRIPTION}


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


def sampling_fingerprint(model: SmallModel, method: Method) -> Fingerprint:
    """Digest of canonical runs of ``method`` on ``model``'s sampling path (see the module docstring): the raw
    output of :func:`pds.lab.experiments.draw` and the cropped, clipped output of :func:`pds.lab.experiments.sample` (3
    samples
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
    return fingerprint(*parts)


def network_fingerprint(model: SmallModel) -> Fingerprint:
    """Digest of ``model``'s score network with its own weights (:func:`pds.fingerprint.score_fingerprint`: in
    float64 and eval mode, a copy) on two fixed random inputs of its shape at its largest and smallest noise level;
    an analytic score as it is, on float64 inputs; a closed form by its own fingerprint."""
    return score_fingerprint(model.score, model.shape, model.sigma_range)


def metric_fingerprint(score_fn) -> Fingerprint:
    """``score_fn.fingerprint()`` when the metric has one (:class:`pds.lab.metrics.ClassifierFD`,
    :class:`pds.lab.image_sets.LandingMetric`), else its name (the cache cannot see inside it: change the name when the
    metric changes)."""
    fp = getattr(score_fn, "fingerprint", None)
    if callable(fp):
        return fp()
    return fingerprint("name:" + str(getattr(score_fn, "name", None) or getattr(score_fn, "__qualname__",
                                                                                  repr(score_fn))))


# -- the cache ----------------------------------------------------------------------------------------------------
def _flat(row: dict) -> dict:
    """A stored row as the notebooks read it: its description's parts beside its fields."""
    fields = {k: v for k, v in row.items() if k not in ("key", "description")}
    return {"key": row["key"], **row["description"], **fields}


def _stored(row: dict) -> dict:
    """A flat row as the store keeps it (``{"key", "description", **fields}``)."""
    return {"key": row["key"], "description": description_of(row),
            **{k: v for k, v in row.items() if k != "key" and k not in DESCRIPTION}}


def stored_rows(folder) -> list[dict]:
    """The rows of the result cache in ``folder`` (e.g. the shipped ``data/results/quality/default``), flat."""
    return [_flat(row) for row in Store(folder, name="results").rows()]


def relay_legacy(folder) -> int:
    """Rows of ``folder``/results.jsonl written before the cache was a :class:`pds.lab.store.Store` (the description's
    parts at the top level) re-laid as store rows, keys unchanged, in one atomic write; returns how many were
    re-laid."""
    path = Path(folder) / "results.jsonl"
    rows = read_lines(path)
    def legacy(r):
        return "description" not in r and "key" in r and all(k in r for k in DESCRIPTION)

    old = [r for r in rows if legacy(r)]
    if old:  # only complete legacy rows are re-laid; any other line is kept as it was (the store skips it)
        text = "".join(json.dumps(_stored(r) if legacy(r) else r) + "\n" for r in rows)
        atomic_write(path, lambda tmp: tmp.write_text(text), f"the re-laid rows of {path}")
        print(f"{path}: {len(old)} rows re-laid in the store layout (keys unchanged)", file=sys.stderr)
    return len(old)


class ResultCache:
    """The cache of the module docstring in ``root`` (``shipped``: its read-only layer); a run is served only with its
    samples file, and rows are returned flat (:func:`description_of` gives their description)."""

    def __init__(self, root, shipped=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "results.jsonl"
        self.shipped = None if shipped is None else Path(shipped)
        relay_legacy(self.root)
        self.store = Store(self.root, self.shipped, name="results")
        self.table = self.store.table
        self._memo: dict = {}  # fingerprints of (model, method) / model / metric, with the objects kept alive

    @staticmethod
    def _has_samples(row: dict, folder: Path) -> bool:
        return (folder / f"{row['key']}.npz").is_file()

    def rows(self) -> list[dict]:
        return [_flat(row) for row in self.store.rows()]

    def _by_key(self, key: str) -> tuple[dict, Path] | None:
        """The first stored version of ``key`` whose samples file is there (this cache's, else the shipped one)."""
        return next(((_flat(r), f) for r, f in self.store.versions(key) if self._has_samples(r, f)), None)

    def find(self, desc: dict) -> dict | None:
        """The stored row of the description ``desc`` (its fingerprints as ids, :meth:`describe`): by its key, or a
        row whose description differs only in fingerprint ids whose fingerprints are the same within tolerance."""
        row = self.store.find(desc, usable=self._has_samples)
        return None if row is None else _flat(row)

    def get(self, key: str) -> dict | None:
        found = self._by_key(key)
        return None if found is None else found[0]

    def samples(self, key: str) -> torch.Tensor:
        found = self._by_key(key)
        if found is None:
            raise KeyError(f"no cached run {key}")
        with np.load(found[1] / f"{key}.npz") as data:
            return torch.from_numpy(data["samples"]).float() / 255.0

    def image_stats(self, row: dict) -> dict | None:
        """Brightness and contrast of all of a run's samples (:func:`pds.lab.metrics.image_statistics`): stored in the
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
        """:func:`describe` with the fingerprints memoised and named by their ids (remembered in :attr:`table`)."""
        fps = self.fingerprints(model, method, score_fn)  # a filter file's values are read each time: it may change
        return self.table.ids(describe(model, method, T, n, seed, batch_size, device, score_fn, fingerprints=fps))

    def key(self, model: SmallModel, method: Method, T: int, n: int, seed: int, score_fn, batch_size: int = 500,
            device=None) -> str:
        """The key of (model, method, T, n, seed) with ``score_fn``, as :meth:`run` computes it here."""
        return run_key(self.describe(model, method, T, n, seed, batch_size, score_fn, device))

    def run(self, model: SmallModel, method: Method, T: int, n: int, seed: int, score_fn, batch_size: int = 500,
            progress: bool = False, device=None) -> dict:
        """The row of (model, method, T, n, seed): read from the cache (:meth:`find`), or sampled, scored with
        ``score_fn(samples, nfe=..., seed=...) -> MetricResult`` (e.g. a :class:`pds.lab.metrics.ClassifierFD`)
        and written (samples, the fingerprints it names, then the row). A run that diverges (NaN/inf) is stored with
        value ``inf``, no samples and the sampler's message in ``diverged``. The row keeps how to rebuild its metric and
        its filter file (``metric_source``, ``filter_source``: :func:`pds.lab.recompute.rebuild`), outside its
        description."""
        desc = self.describe(model, method, T, n, seed, batch_size, score_fn, device)
        row = self.find(desc)
        if row is not None:
            return row
        key = run_key(desc)
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
        fields = {"name": model.name, "label": method.label, "nfe": nfe, "metric": name, "value": value,
                  "reference": reference, "wall_s": wall, "diverged": diverged, "image_stats": stats,
                  "metric_source": getattr(score_fn, "recipe", None), "filter_source": _filter_source(method)}
        if diverged is None and metric.extra:
            fields["extra"] = metric.extra  # the metric's other measures (pds.lab.image_sets.LandingMetric)
        return _flat(self.store.add(desc, **fields))  # samples first, then the row: a row always has them


def _filter_source(method: Method) -> dict | None:
    """The recipe a filter file records (``recipe`` in its metadata: :func:`pds.filters.save_filters`), or None."""
    if method.filter != "file":
        return None
    recipe = load_filters(method.path).metadata.get("recipe")
    return None if recipe is None else json.loads(recipe)


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
    ``keep_bytes`` of uint8 pixels (at least one sample), so that a run of 256² colour images ships one; and the
    fingerprints the rows name. Rows already in ``dst`` (with their samples) are kept and a row of ``src`` with the
    same key replaces its copy. A run whose samples are missing is skipped. Returns counts."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    relay_legacy(src)  # a cache last written before the store layout
    source, there = Store(src, name="results"), Store(dst, name="results")
    merged = {r["key"]: r for r in there.rows() if ResultCache._has_samples(r, dst)}
    kept = 0
    for row in source.rows():
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
    source.table.add(*there.table.known.values())
    write_rows(dst, "results", merged.values(), source.table)
    return {"runs": kept, "rows": len(merged)}


# -- rebuilding and recomputing a stored run from scratch --------------------------------------------------------
# Tolerances of a recomputation on another machine or kernel set (float32 sampling). Measured by drawing 44 shipped
# runs (one per model, sampler and filter kind; T <= 100) again under ATEN_CPU_CAPABILITY=default
# ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell (benchmarks/recompute_kernels.py, results/recompute_kernels.json):
# at most 3.2e-4 of the stored pixels moved, by one uint8 level; the value by 1.2e-5 and the image statistics by
# 5.1e-6 (relative). The tolerances are 30, 80 and 20 times that, for longer runs whose rounding has longer to grow.
SAMPLE_LEVELS = 1  # a stored uint8 pixel may come back one level away (float32 rounding moved it across a half level)
SAMPLE_FRACTION = 1e-2  # ... in at most this fraction of the stored pixels
VALUE_RTOL = 1e-3  # the metric's value (relative)
STATS_RTOL = 1e-4  # brightness and contrast of all samples (relative)

