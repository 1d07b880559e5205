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

__all__ = ["Method", "SmallModel", "ResultCache", "sample", "to_28", "statistics_filter"]


@dataclass(frozen=True)
class Method:
    """How to sample: ``filter`` None (vanilla), "parametric" (R of Sec. 4.3 with radius ``r``·H and
    value ``lam`` outside) or "statistics" (R of Eq. 14 estimated from ``stats_n`` training images).
    ``alpha`` is the released normalisation strength (None: use the filter as it is)."""

    filter: str | None = None
    r: float | None = None
    lam: float | None = None
    alpha: float | None = None
    stats_n: int = 200

    def __post_init__(self):
        if self.filter not in (None, "parametric", "statistics"):
            raise ValueError(f"filter must be None, 'parametric' or 'statistics', got {self.filter!r}")
        if self.filter == "parametric" and (self.r is None or self.lam is None):
            raise ValueError("a parametric filter needs r (in units of H) and lam")

    @property
    def label(self) -> str:
        if self.filter is None:
            return "vanilla"
        a = "" if self.alpha is None else f", α={self.alpha:g}"
        if self.filter == "parametric":
            return f"PDS parametric (r={self.r:g}H, λ={self.lam:g}{a})"
        return f"PDS statistics R{a}"


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
        return len(self.config["sigmas"]) * self.experiment.n_steps_each

    def train_images(self) -> torch.Tensor:
        if self._train is None:
            x = load_idx_images(self.config.get("data", {}).get("name", "fashion-mnist"), "train")
            self._train = torch.nn.functional.pad(x, (self.pad,) * 4) if self.pad else x
        return self._train

    def preconditioner(self, method: Method) -> Preconditioner | None:
        if method.filter is None:
            return None
        c, h, w = self.shape
        if method.filter == "parametric":
            filt = parametric_filter((h, w), method.r * h, method.lam, channels=c)
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
                steps, lr, sig = exp.n_steps_each, exp.step_lr, sigmas
            else:
                short = shorten_schedule(sigmas, exp.n_steps_each, T)
                steps, lr, sig = short.n_steps, exp.step_lr * short.step_lr_scale, short.sigmas
            x, nfe = annealed_langevin(model.score, shape, sig, steps, lr, preconditioner=pre, init=exp.init,
                                       denoise=exp.denoise, generator=g, progress=progress, device=dev)
        out.append(to_28(x, model.pad).cpu())
    return torch.cat(out), nfe


class ResultCache:
    """Finished runs as JSON lines in ``root/results.jsonl`` plus their samples (uint8 ``.npy``)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "results.jsonl"

    @staticmethod
    def key(**desc) -> str:
        return hashlib.sha1(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: that run is simply redone
                continue
        return rows

    def get(self, key: str) -> dict | None:
        for row in self.rows():
            if row.get("key") == key and (self.root / f"{key}.npy").is_file():
                return row
        return None

    def samples(self, key: str) -> torch.Tensor:
        return torch.from_numpy(np.load(self.root / f"{key}.npy")).float() / 255.0

    def run(self, model: SmallModel, method: Method, T: int, n: int, seed: int, score_fn, batch_size: int = 500,
            progress: bool = False) -> dict:
        """The row of (model, method, T, n, seed): read from the cache, or sampled, scored with
        ``score_fn(samples, nfe=..., seed=...) -> MetricResult`` (e.g. a :class:`pds.metrics.ClassifierFD`)
        and written (samples first, then the row)."""
        desc = {"model": model.name, "weights": model.config.get("file_sha256"), "method": asdict(method), "T": T,
                "n": n, "seed": seed, "batch_size": batch_size}
        key = self.key(**desc)
        row = self.get(key)
        if row is not None:
            return row
        t0 = time.perf_counter()
        x, nfe = sample(model, method, T, n, seed, batch_size=batch_size, progress=progress)
        wall = time.perf_counter() - t0
        metric = score_fn(x, nfe=nfe, seed=seed)
        tmp = self.root / f"{key}.tmp.npy"
        np.save(tmp, (x.numpy() * 255).round().astype(np.uint8))
        tmp.replace(self.root / f"{key}.npy")
        row = {"key": key, **desc, "label": method.label, "nfe": nfe, "metric": metric.name, "value": metric.value,
               "reference": metric.reference, "wall_s": wall}
        cut = self.path.is_file() and not self.path.read_bytes().endswith(b"\n") and self.path.stat().st_size > 0
        with open(self.path, "a") as f:
            f.write(("\n" if cut else "") + json.dumps(row) + "\n")
        return row
