"""Sample-quality experiments on the small models trained here (Fashion-MNIST stand-ins for the paper's
NCSN on MNIST, Fig. 3, and NCSN++ on CIFAR-10, Table 1): vanilla versus PDS at given iteration
counts, scored by the classifier-feature FD of :mod:`pds.metrics`.

A run is described by a :class:`Method` (vanilla, or PDS with a parametric or statistics filter), an
iteration count T, a number of samples and a seed. :class:`ResultCache` keeps every finished run
(metrics as JSON lines, samples as ``.npy``) keyed by its full description (the model's weights
included, by their SHA-256), so an interrupted sweep loses nothing it finished, and a rerun with the
same settings reads instead of recomputing.

Iteration counts follow the paper: for NCSN, T is the number of Langevin steps (full: 10 levels ×
100 steps; shorter schedules by :func:`pds.samplers.shorten_schedule`, with the step size expanded
proportionally); for NCSN++, T is the number of predictor-corrector iterations (full: 1000; NFE = 2T).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pds.checkpoints import load_trained
from pds.configs import Experiment, stand_in_for
from pds.data import load_idx_images
from pds.filters import frequency_filter, parametric_filter
from pds.precondition import Preconditioner
from pds.samplers import annealed_langevin, pc_sampler
from pds.schedules import shorten_schedule

__all__ = ["Method", "SmallModel", "ResultCache", "sample", "to_28", "statistics_filter", "flat_equivalent",
           "Verdict", "spread", "matches", "beats", "code_fingerprint", "run_seeds", "values", "floor_values"]


FILTERS = (None, "parametric", "flat", "statistics")
STEPS = ("expand", "keep")


@dataclass(frozen=True)
class Method:
    """How to sample.

    ``filter``: None (vanilla); "parametric" (R of Sec. 4.3: radius ``r``·H, value ``lam``, ``centre`` "paper" —
    the literal reading — or "dc", see :func:`pds.filters.parametric_filter`); "flat" (the **scalar control** of that
    parametric filter: a constant R = c with the same overall step change, 1/c² = the mean over frequencies of the
    drift gain 1/R², so that only the frequency *shape* differs); "statistics" (R of Eq. 14 from ``stats_n``
    training images). ``alpha`` is the released normalisation strength (None: the filter as it is).
    ``step`` (annealed Langevin with fewer steps than the full schedule): "expand" — the paper's "reduce T and
    proportionally expand the step size" (all levels, fewer steps each, step_lr scaled so that Σ n_c α_c is kept) —
    or "keep" (all levels, fewer steps each, the official step_lr).
    """

    filter: str | None = None
    r: float | None = None
    lam: float | None = None
    alpha: float | None = None
    stats_n: int = 200
    centre: str = "paper"
    step: str = "expand"

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {self.filter!r}")
        if self.filter in ("parametric", "flat") and (self.r is None or self.lam is None):
            raise ValueError(f"a {self.filter} filter needs r (in units of H) and lam")
        if self.step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, got {self.step!r}")

    @property
    def label(self) -> str:
        a = "" if self.alpha is None else f", α={self.alpha:g}"
        step = "" if self.step == "expand" else ", step kept"
        if self.filter is None:
            return "vanilla" + step
        if self.filter == "parametric":
            return f"PDS parametric ({self.centre}, r={self.r:g}H, λ={self.lam:g}{a}){step}"
        if self.filter == "flat":
            return f"scalar control of ({self.centre}, r={self.r:g}H, λ={self.lam:g}{a}){step}"
        return f"PDS statistics R{a}{step}"


def flat_equivalent(filt: torch.Tensor, alpha: float | None) -> float:
    """The constant filter c with the same mean drift gain as ``filt``: 1/c² = mean(1/R̃²) (R̃ after the
    normalisation ``alpha``), i.e. the same overall change of the step size."""
    gain = Preconditioner(freq=filt, alpha=alpha).freq_gain
    return 1.0 if gain is None else float(gain.pow(2).mean().rsqrt())


def statistics_filter(images: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """R = log(E|F[x]|² + 1) (Eq. 14) from ``n`` images chosen with ``seed`` (the paper uses 200)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n]
    return frequency_filter(images[idx].double())


class SmallModel:
    """A score model trained here, with its sampler: :func:`pds.checkpoints.load_trained` plus the data
    the statistics filter is estimated from (the training images, padded like the model's input)."""

    def __init__(self, name: str, score=None, config=None, train_images: torch.Tensor | None = None):
        """``score`` and ``config`` default to :func:`pds.checkpoints.load_trained` of ``name``; a config needs
        ``kind``, ``net`` (``image_size``, ``channels``), the noise levels and optionally ``data.pad``. The
        sampler settings are those of the paper experiment the model stands in for (:mod:`pds.configs`)."""
        if score is None:
            score, config = load_trained(name)
        self.name, self.score, self.config = name, score, config
        self.kind = config["kind"]
        if self.kind not in ("ncsn", "ncsnv2", "ncsnpp"):
            raise ValueError(f"unknown model kind {self.kind!r}")
        size = config["net"]["image_size"]
        self.shape = (config["net"]["channels"], size, size)
        self.pad = int(config.get("data", {}).get("pad") or 0)
        self.experiment: Experiment = stand_in_for(self.kind)
        self._train = train_images

    @property
    def full_T(self) -> int:
        if self.kind == "ncsnpp":
            return int(self.config["num_scales"])
        return len(self.config["sigmas"]) * self.n_steps_each

    @property
    def n_steps_each(self) -> int:
        """Langevin steps per level at full length: the sidecar's ``sampler`` entry (a model trained here with
        its own ladder, e.g. by NCSNv2's techniques) or the paper experiment's."""
        return int(self.config.get("sampler", {}).get("n_steps_each") or self.experiment.n_steps_each)

    @property
    def step_lr(self) -> float:
        return float(self.config.get("sampler", {}).get("step_lr") or self.experiment.step_lr)

    def train_images(self) -> torch.Tensor:
        if self._train is None:
            x = load_idx_images(self.config.get("data", {}).get("name", "fashion-mnist"), "train")
            self._train = torch.nn.functional.pad(x, (self.pad,) * 4) if self.pad else x
        return self._train

    def preconditioner(self, method: Method) -> Preconditioner | None:
        if method.filter is None:
            return None
        c, h, w = self.shape
        if method.filter in ("parametric", "flat"):
            filt = parametric_filter((h, w), method.r * h, method.lam, channels=c, centre=method.centre)
            if method.filter == "flat":
                return Preconditioner(freq=torch.full((c, h, w), flat_equivalent(filt, method.alpha)), alpha=None,
                                      shape=self.shape)
        else:
            filt = statistics_filter(self.train_images(), method.stats_n)
        return Preconditioner(freq=filt, alpha=method.alpha, shape=self.shape)


def to_28(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Samples in [0, 1] at the data set's 28², with the training padding cropped off."""
    if pad:
        x = x[..., pad:-pad, pad:-pad]
    return x.clamp(0, 1)


@torch.no_grad()
def sample(model: SmallModel, method: Method, T: int, n: int, seed: int, batch_size: int = 500,
           progress: bool = False, device=None) -> tuple[torch.Tensor, int]:
    """``n`` samples of ``model`` with ``method`` in T iterations (see the module docstring); returns
    (samples cropped to 28² and clipped to [0, 1], on the CPU; NFE per sample). Batches draw from one generator
    seeded with ``seed`` on ``device`` (default: the CPU), so a result depends on (n, batch_size, seed, device)."""
    if int(T) != T or T < 1 or int(n) != n or n < 1 or batch_size < 1:
        raise ValueError(f"T, n and batch_size must be positive integers, got T={T}, n={n}, batch_size={batch_size}")
    exp = model.experiment
    pre = model.preconditioner(method)
    dev = torch.device(device or "cpu")
    if isinstance(model.score, torch.nn.Module):
        model.score.to(dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    out, nfe = [], 0
    for start in range(0, n, batch_size):
        shape = (min(batch_size, n - start), *model.shape)
        if model.kind == "ncsnpp":
            cfg = model.config
            x, nfe = pc_sampler(model.score, shape, cfg["sigma_min"], cfg["sigma_max"], int(cfg["num_scales"]),
                                exp.snr, iterations=T, preconditioner=pre, denoise=exp.denoise, generator=g,
                                progress=progress, device=dev)
        else:
            sigmas = model.config["sigmas"]
            if T == model.full_T:
                steps, lr, sig = model.n_steps_each, model.step_lr, sigmas
            else:
                short = shorten_schedule(sigmas, model.n_steps_each, T)
                scale = short.step_lr_scale if method.step == "expand" else 1.0
                steps, lr, sig = short.n_steps, model.step_lr * scale, short.sigmas
            x, nfe = annealed_langevin(model.score, shape, sig, steps, lr, preconditioner=pre, init=exp.init,
                                       denoise=exp.denoise, generator=g, progress=progress, device=dev)
        out.append(to_28(x, model.pad).cpu())
    return torch.cat(out), nfe


def code_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of the source of everything a cached run's samples and score depend on:
    the samplers and schedules, the preconditioner and filters, the networks, :func:`sample` and the metric.
    Part of every :class:`ResultCache` key, so an edit there makes the cache recompute instead of serving
    samples the current code would not draw (unrelated edits, e.g. to the verdicts, keep it)."""
    import inspect

    from pds import filters, metrics, precondition, samplers, schedules
    from pds.models import ncsnpp, refinenet

    parts = [samplers.pc_sampler, samplers.annealed_langevin, samplers._langevin_schedule, samplers._initial,
             samplers._ops, schedules, precondition.Preconditioner, precondition.normalise_filter,
             filters.parametric_filter, filters.frequency_filter, ncsnpp, refinenet, metrics.ClassifierFD,
             metrics.FashionClassifier, metrics.frechet_distance, metrics.gaussian_statistics, Method,
             flat_equivalent, statistics_filter, SmallModel, to_28, sample]
    h = hashlib.sha256()
    for part in parts:
        h.update(inspect.getsource(part).encode())
    return h.hexdigest()[:16]


class ResultCache:
    """Finished runs as JSON lines in ``root/results.jsonl`` plus their samples (uint8, compressed ``.npz``).

    ``shipped``: a read-only cache of the same layout consulted after ``root`` (the repository ships the
    expensive default-profile runs in ``data/results/``, so a fresh clone reads them in seconds; they were drawn
    by the same code, which the key's :func:`code_fingerprint` guarantees — after an edit to that code they no
    longer match and are recomputed). Keys hold the model's weights (SHA-256), the method, T, n, seed, batch
    size and the code fingerprint.
    """

    def __init__(self, root, shipped=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "results.jsonl"
        self.shipped = None if shipped is None else Path(shipped)
        self.fingerprint = code_fingerprint()

    @staticmethod
    def key(**desc) -> str:
        return hashlib.sha1(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @staticmethod
    def _rows(folder: Path) -> list[dict]:
        path = folder / "results.jsonl"
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: that run is simply redone
                continue
        return rows

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

    def describe(self, model: SmallModel, method: Method, T: int, n: int, seed: int, batch_size: int) -> dict:
        return {"model": model.name, "weights": model.config.get("file_sha256"), "method": asdict(method), "T": T,
                "n": n, "seed": seed, "batch_size": batch_size, "code": self.fingerprint}

    def run(self, model: SmallModel, method: Method, T: int, n: int, seed: int, score_fn, batch_size: int = 500,
            progress: bool = False, device=None) -> dict:
        """The row of (model, method, T, n, seed): read from the cache, or sampled, scored with
        ``score_fn(samples, nfe=..., seed=...) -> MetricResult`` (e.g. a :class:`pds.metrics.ClassifierFD`)
        and written (samples first, then the row)."""
        desc = self.describe(model, method, T, n, seed, batch_size)
        key = self.key(**desc)
        row = self.get(key)
        if row is not None:
            return row
        t0 = time.perf_counter()
        x, nfe = sample(model, method, T, n, seed, batch_size=batch_size, progress=progress, device=device)
        wall = time.perf_counter() - t0
        metric = score_fn(x, nfe=nfe, seed=seed)
        tmp = self.root / f"{key}.tmp.npz"
        np.savez_compressed(tmp, samples=(x.numpy() * 255).round().astype(np.uint8))
        tmp.replace(self.root / f"{key}.npz")
        row = {"key": key, **desc, "label": method.label, "nfe": nfe, "metric": metric.name, "value": metric.value,
               "reference": metric.reference, "wall_s": wall}
        cut = self.path.is_file() and not self.path.read_bytes().endswith(b"\n") and self.path.stat().st_size > 0
        with open(self.path, "a") as f:
            f.write(("\n" if cut else "") + json.dumps(row) + "\n")
        return row


def run_seeds(cache: ResultCache, model: SmallModel, method: Method, T: int, n: int, seeds, score_fn,
              batch_size: int = 500, device=None) -> list[dict]:
    """The rows of one setting over several seeds (each read from the cache or computed)."""
    return [cache.run(model, method, T, n, s, score_fn, batch_size=batch_size, device=device) for s in seeds]


def values(rows) -> list[float]:
    return [float(r["value"]) for r in rows]


def floor_values(score_fn, images: torch.Tensor, n: int, seeds) -> list[float]:
    """The metric of ``n`` real images chosen with each seed: the floor no sampler can be expected to beat at
    this n (the classifier-feature FD is biased upward at small n)."""
    out = []
    for s in seeds:
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(s)))[:n]
        out.append(float(score_fn(images[idx], nfe=0, seed=s).value))
    return out


# -- verdicts: the claims the notebooks state, as tested functions ---------------------------------
@dataclass(frozen=True)
class Verdict:
    """A claim about measured values, whether it holds, and the numbers behind it."""

    claim: str
    holds: bool
    detail: str

    def __str__(self) -> str:
        return f"{'HOLDS' if self.holds else 'DOES NOT HOLD'}: {self.claim} — {self.detail}"


def spread(values) -> tuple[float, float, int]:
    """(mean, standard deviation over seeds with ddof 1 (0 for one value), count) of a list of numbers."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"need at least one finite value, got {v.tolist()}")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _fmt(values, label: str) -> str:
    m, s, k = spread(values)
    return f"{label} {m:.4g} ± {s:.2g} (over {k})"


def _floor(floor) -> str:
    return "" if floor is None else f"; floor {_fmt(floor, 'at the same n')}"


def matches(values, reference, claim: str, floor=None) -> Verdict:
    """"``values`` match ``reference``" (lower is better, e.g. FD or W2): mean(values) ≤ mean(reference) +
    2·std(reference), the std over the reference's seeds (0 with a single, exact value)."""
    m, _, _ = spread(values)
    mr, sr, _ = spread(reference)
    bound = mr + 2.0 * sr
    return Verdict(claim, m <= bound, f"{_fmt(values, 'mean')} vs bound {bound:.4g} = "
                                      f"{_fmt(reference, 'reference')} + 2 std{_floor(floor)}")


def beats(values, other, claim: str, floor=None) -> Verdict:
    """"``values`` beat ``other``" (lower is better): mean(values) + 2·se < mean(other), with se the standard error
    of the difference of the means over seeds, √(s_a²/n_a + s_b²/n_b) (0 for single, exact values)."""
    ma, sa, na = spread(values)
    mb, sb, nb = spread(other)
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    return Verdict(claim, ma + 2.0 * se < mb, f"{_fmt(values, 'mean')} vs {_fmt(other, 'other')}, "
                                             f"difference {mb - ma:.4g}, 2 se {2 * se:.3g}{_floor(floor)}")
