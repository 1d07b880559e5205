"""Real image sets as exact targets: zero model error, so every departure is the sampler's.

The noised empirical distribution of an image set, p_σ = (1/N) Σ_i N(x_i, σ²I), has an exact score at every σ
(:class:`pds.empirical.EmpiricalScore`). A sampler run on it with zero discretisation error ends on training images
(it memorises, by design); how far its samples end from the set, and *which* images they reach, are measures of the
sampler alone:

* :func:`hit_statistics` — the hit distribution over the set against uniform: KL and χ² of the hit counts with the
  floor that uniform draws of the same count give, distinct images hit (and their uniform expectation), per-class
  balance (total variation between the hits' classes and the set's);
* :class:`LandingMetric` — a result-cache metric (:class:`pds.lab.cache.ResultCache`): per sample the distance to the
  nearest image of the set relative to σ_min·√D (the distance the final noise level leaves), a sample *landed* when
  within ``radius`` (2.5) of it; per run the landed fraction, the distribution of relative distances, the hit
  statistics of the landed samples and, for Fashion-MNIST, the classifier-feature FD against the set (its value: one
  of them, lower is better);
* :func:`exact_model` — a :class:`pds.lab.experiments.SmallModel` whose score is the exact score of a set, with the
  sampler settings of a paper experiment (:mod:`pds.configs`), so that every sampler and filter of the notebooks
  runs on it unchanged; :func:`exact_twin` — the exact score of a trained model's own training set with that model's
  settings, for comparing the network's verdicts with the sampler's; :func:`els_twin` — the same with Kamb &
  Ganguli's ELS machine of (part of) that set: a CNN's bias without its training error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pds.configs import Experiment
from pds.empirical import EmpiricalScore
from pds.filters import estimate_filters, save_filters
from pds.fingerprint import Fingerprint, fingerprint
from pds.lab.data import aligned_faces, load_idx_images, load_idx_labels, natural_image_crops
from pds.lab.experiments import SmallModel, Verdict, spread
from pds.lab.metrics import ClassifierFD, MetricResult, load_classifier
from pds.models.local_score import LocalScore, PatchSchedule
from pds.schedules import geometric_sigmas

__all__ = ["hit_statistics", "LandingMetric", "ImageSet", "image_set", "landing_metric", "statistics_filter_file",
           "exact_model", "exact_twin", "els_twin", "perfect_draws", "measures", "covers", "LANDED_RADIUS", "PRIMARY"]

LANDED_RADIUS = 2.5  # in units of σ_min·√D: generous (PDS leaves up to α/(α − 1) of it as noise)


def _summary(values) -> dict:
    return dict(zip(("mean", "std", "count"), spread(values), strict=True))


def hit_statistics(indices, n_images: int, labels=None, floor_draws: int = 20, seed: int = 0) -> dict:
    """Which images of a set of ``n_images`` the samples reached (``indices``: the nearest image of each landed sample).

    Returns: ``hits`` (how many), ``distinct`` (images hit at least once) and ``distinct_uniform`` (its expectation
    for as many uniform draws, N(1 − (1 − 1/N)^m)); ``kl`` = KL(hit frequencies ‖ uniform) and ``chi2`` = Σ (c_i −
    m/N)² / (m/N), each with its ``*_floor`` (mean, std over ``floor_draws`` sets of m uniform draws: what a perfect
    sampler gives at this m); with ``labels`` (the class of each image of the set) ``class_tv``, the total variation
    between the hits' class frequencies and the set's, and its floor. With no hit the statistics are None."""
    idx = np.asarray(indices, dtype=np.int64).ravel()
    if n_images < 1 or (idx.size and (idx.min() < 0 or idx.max() >= n_images)):
        raise ValueError(f"indices must lie in [0, {n_images}), got {idx.min() if idx.size else None}…"
                         f"{idx.max() if idx.size else None}")
    m = int(idx.size)
    out = {"hits": m, "n_images": int(n_images), "distinct": int(np.unique(idx).size),
           "distinct_uniform": float(n_images * (1 - (1 - 1 / n_images) ** m))}
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).ravel()
    if lab is not None and lab.size != n_images:
        raise ValueError(f"labels must give one class per image ({n_images}), got {lab.size}")
    if m == 0:
        return {**out, "kl": None, "kl_floor": None, "chi2": None, "chi2_floor": None, "class_tv": None,
                "class_tv_floor": None}

    def kl(c):
        p = c / c.sum()
        nz = p > 0
        return float(np.sum(p[nz] * np.log(p[nz] * n_images)))

    def chi2(c):
        e = c.sum() / n_images
        return float(((c - e) ** 2).sum() / e)

    def class_tv(chosen):
        k = int(lab.max()) + 1
        q = np.bincount(lab, minlength=k) / lab.size
        p = np.bincount(lab[chosen], minlength=k) / chosen.size
        return float(0.5 * np.abs(p - q).sum())

    rng = np.random.default_rng(seed)
    uniform = [rng.integers(0, n_images, m) for _ in range(floor_draws)]
    counts = np.bincount(idx, minlength=n_images)
    ucounts = [np.bincount(u, minlength=n_images) for u in uniform]
    out.update(kl=kl(counts), kl_floor=_summary([kl(c) for c in ucounts]), chi2=chi2(counts),
               chi2_floor=_summary([chi2(c) for c in ucounts]))
    if lab is not None:
        out.update(class_tv=class_tv(idx), class_tv_floor=_summary([class_tv(u) for u in uniform]))
    return out


PRIMARY = {"fd": "classifier-feature FD against the set (not FID)",
           "distance": "median nearest-image distance / (σ_min·√D)",
           "strayed": "fraction of samples that did not land"}


class LandingMetric:
    """Sampler-only measures of a run on an exact image-set target (see the module docstring); a result-cache metric:
    ``metric(samples, nfe=..., seed=...)`` → :class:`pds.lab.metrics.MetricResult` whose ``extra`` holds every measure
    and whose value is the ``primary`` one, lower is better like every metric the verdicts of
    :mod:`pds.lab.experiments` read: "fd" (the classifier-feature FD against the set; needs ``classifier_fd``),
    "distance" (the median relative nearest distance) or "strayed" (1 − the landed fraction); default "fd" with a
    classifier, else "distance".
    ``images``: the set as the sampler outputs it (cropped, [N, C, H, W] in [0, 1]); ``sigma_min``: the target's
    smallest noise level; ``classifier_fd``: a :class:`pds.lab.metrics.ClassifierFD` against the set, or None."""

    def __init__(self, images: torch.Tensor, sigma_min: float, labels=None, classifier_fd=None,
                 radius: float = LANDED_RADIUS, reference: str = "the image set", primary: str | None = None):
        if not (sigma_min > 0 and radius > 0):
            raise ValueError(f"sigma_min and radius must be > 0, got {sigma_min}, {radius}")
        primary = primary or ("fd" if classifier_fd is not None else "distance")
        if primary not in PRIMARY or (primary == "fd" and classifier_fd is None):
            raise ValueError(f"primary must be one of {list(PRIMARY)} ('fd' needs classifier_fd), got {primary!r}")
        self.primary = primary
        self.name = f"{PRIMARY[primary]} (exact image-set target)"
        self.set = EmpiricalScore(images)
        self.recipe = None  # how to build this metric again (landing_metric sets it), for pds.lab.recompute.rebuild
        self.sigma_min, self.radius, self.reference = float(sigma_min), float(radius), reference
        self.labels = None if labels is None else torch.as_tensor(labels).long().cpu()
        if self.labels is not None and len(self.labels) != self.set.n:
            raise ValueError(f"labels must give one class per image ({self.set.n}), got {len(self.labels)}")
        self.classifier_fd = classifier_fd
        self.unit = self.sigma_min * math.sqrt(float(np.prod(self.set.shape)))

    def __call__(self, samples: torch.Tensor, nfe=None, seed=None) -> MetricResult:
        idx, dist = self.set.nearest(samples.float())
        rel = (dist / self.unit).cpu().numpy()
        landed = rel <= self.radius
        extra = {
            "landed": float(landed.mean()),
            "relative_distance": {"median": float(np.median(rel)), "mean": float(rel.mean()),
                                  "q90": float(np.quantile(rel, 0.9)), "max": float(rel.max())},
            "hits": hit_statistics(idx.cpu().numpy()[landed], self.set.n,
                                   None if self.labels is None else self.labels.numpy()),
            "radius": self.radius, "unit": self.unit,
        }
        if self.classifier_fd is not None:
            extra["fd"] = float(self.classifier_fd(samples, nfe=nfe, seed=seed).value)
        value = {"fd": extra.get("fd"), "distance": extra["relative_distance"]["median"],
                 "strayed": 1.0 - extra["landed"]}[self.primary]
        return MetricResult(self.name, value, len(samples), self.reference, seed, nfe, extra)

    def fingerprint(self) -> Fingerprint:
        """Behaviour fingerprint: the set's score fingerprint, σ_min, the radius, the labels and the classifier's."""
        fd = None if self.classifier_fd is None else self.classifier_fd.fingerprint()
        hits = hit_statistics([0, 1, 1, 3], 5, [0, 0, 1, 1, 2])
        return fingerprint(self.name, self.primary, self.set.fingerprint(), float(self.sigma_min), float(self.radius),
                           None if self.labels is None else self.labels.tolist(), fd or "no classifier",
                           float(hits["kl"]), float(hits["chi2"]), float(hits["class_tv"]))


@dataclass
class ImageSet:
    """A real image set as an exact target: its images ([N, C, S, S] in [0, 1]), their classes (or None), its name
    and the ``recipe`` that rebuilds it (:func:`image_set`), which models and metrics built on it keep."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    recipe: dict


def image_set(recipe: dict) -> ImageSet:
    """The image set of a recipe: ``{"set": "fashion-mnist", "split": "train"}`` with ``"per_class": k`` (the first k
    images of each class) or ``"first": n`` (the first n), or neither (all); ``{"set": "lfw-faces"}`` (the 100 aligned
    25×25 faces of scikit-image); ``{"set": "photo-crops", "n": n, "size": s, "seed": seed}`` (seeded crops of
    scikit-image's photographs)."""
    kind = recipe.get("set")
    if kind == "fashion-mnist":
        split = recipe.get("split", "train")
        x, y = load_idx_images("fashion-mnist", split), load_idx_labels("fashion-mnist", split)
        if recipe.get("per_class"):
            k = int(recipe["per_class"])
            pick = torch.cat([torch.nonzero(y == c)[:k, 0] for c in range(10)])
            x, y, name = x[pick], y[pick], f"fashion-mnist-{len(pick)}"
        elif recipe.get("first"):
            n = int(recipe["first"])
            x, y, name = x[:n], y[:n], f"fashion-mnist-{split}-{n}"
        else:
            name = f"fashion-mnist-{split}-{len(x)}"
        return ImageSet(name, x, y, dict(recipe))
    if kind == "lfw-faces":
        return ImageSet("lfw-faces-25", aligned_faces(), None, dict(recipe))
    if kind == "photo-crops":
        size = int(recipe["size"])
        crops = natural_image_crops(int(recipe["n"]), size, seed=int(recipe.get("seed", 0)))
        return ImageSet(f"photo-crops-{size}", crops, None, dict(recipe))
    raise ValueError(f"unknown image set recipe {recipe!r}: 'set' must be one of fashion-mnist, lfw-faces, "
                     "photo-crops")


def landing_metric(images: ImageSet, sigma_min: float) -> LandingMetric:
    """The :class:`LandingMetric` of the notebooks on ``images``: with the set's classes when it has them and, for
    Fashion-MNIST, the classifier-feature FD against the set; its ``recipe`` rebuilds it."""
    fd = None
    if images.recipe.get("set") == "fashion-mnist":
        fd = ClassifierFD(load_classifier(), images.images, f"the {len(images.images)} Fashion-MNIST images of the set")
    metric = LandingMetric(images.images, sigma_min, labels=images.labels, classifier_fd=fd)
    metric.recipe = {"landing": images.recipe, "sigma_min": float(sigma_min)}
    return metric


def statistics_filter_file(images: ImageSet, path, variant: str = "released") -> Path:
    """R (Eq. 14) and A estimated from all images of the set (:func:`pds.filters.estimate_filters`), saved to ``path``
    with the recipe that rebuilds it (``pds.lab.cache`` records it with every run that uses the file)."""
    freq, space, n = estimate_filters(images.images, variant=variant)
    return save_filters(path, freq, space, source=f"the {n} images of {images.name}", n=n, variant=variant,
                        recipe=json.dumps({"estimate": images.recipe, "variant": variant}, sort_keys=True))


def exact_model(images: ImageSet, experiment: Experiment, pad: int = 0) -> SmallModel:
    """A model whose score is the exact score of the set (zero-padded by ``pad`` on each side, as the sampler sees
    it) with the sampler settings of ``experiment`` (σ range, levels, steps, snr, denoising, initialisation; NCSN /
    NCSNv2 experiments: annealed Langevin on the geometric σ ladder, NCSN++: the VE PC sampler), named
    ``exact:<set>[-pad<pad>]``. The statistics filter (Eq. 14) is estimated from the same images. Its config's
    ``source`` (the set's recipe, the padding and the experiment) rebuilds it (:func:`pds.lab.recompute.rebuild`)."""
    x = images.images
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"images must be square [N, C, S, S], got {tuple(x.shape)}")
    padded = torch.nn.functional.pad(x, (pad,) * 4) if pad else x
    name = images.name + (f"-pad{pad}" if pad else "")
    e = experiment
    kind = "ncsnpp" if e.model == "ncsnpp" else ("ncsn" if e.model == "ncsn" else "ncsnv2")
    cfg = {"kind": kind, "net": {"image_size": padded.shape[-1], "channels": x.shape[1]},
           "data": {"pad": pad, "name": name}, "sigma_min": float(e.sigma_min), "sigma_max": float(e.sigma_max)}
    if kind == "ncsnpp":
        cfg["num_scales"] = int(e.levels)
    else:
        cfg["sigmas"] = [float(s) for s in geometric_sigmas(e.sigma_max, e.sigma_min, e.levels)]
    cfg["source"] = {"set": images.recipe, "pad": int(pad), "experiment": experiment.name}
    return SmallModel(f"exact:{name}", score=EmpiricalScore(padded), config=cfg, train_images=padded,
                      experiment=experiment)


def exact_twin(model: SmallModel, images: ImageSet) -> SmallModel:
    """The exact score of ``model``'s own training set (unpadded; padded like the model's input) with the model's own
    settings (its noise levels, sidecar sampler entry and paper experiment): the same sampler, zero model error."""
    return _twin(model, images, EmpiricalScore, f"exact:{images.name}", {})


def els_twin(model: SmallModel, images: ImageSet, patch: PatchSchedule, candidates: str = "all") -> SmallModel:
    """Kamb & Ganguli's ELS machine (:class:`pds.models.local_score.LocalScore`, zero boundary, float32) of images of
    ``model``'s training set, with the patch schedule ``patch`` and the model's own settings, as :func:`exact_twin`: the
    same sampler, a CNN's locality and equivariance, no training error. ``candidates``: ``"inside"``, the authors'
    boundary-broken ELS, or ``"all"``, this project's all-patches machine (its runs keep their names and keys). Named
    ``els:<set>``."""
    source = {"els": patch.to_dict(), **({"candidates": candidates} if candidates != "all" else {})}
    return _twin(model, images, lambda x: LocalScore(x, patch, equivariant=True, dtype=torch.float32,
                                                     candidates=candidates), f"els:{images.name}", source)


def _twin(model: SmallModel, images: ImageSet, score, name: str, source: dict) -> SmallModel:
    x = images.images
    padded = torch.nn.functional.pad(x, (model.pad,) * 4) if model.pad else x
    if tuple(padded.shape[1:]) != tuple(model.shape):
        raise ValueError(f"the set padded by {model.pad} has shape {tuple(padded.shape[1:])}, the model {model.shape}")
    keep = ("kind", "net", "sigmas", "sigma_min", "sigma_max", "num_scales", "sampler", "data")
    cfg = {k: v for k, v in model.config.items() if k in keep}
    cfg["data"] = {**cfg.get("data", {}), "name": images.name}
    cfg["source"] = {"set": images.recipe, "twin_of": model.name, **source}
    return SmallModel(name, score=score(padded), config=cfg, train_images=padded, experiment=model.experiment)


def perfect_draws(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` images drawn uniformly with replacement from the set: what a perfect sampler of the empirical
    distribution returns (its measures are the floor of every run at this n)."""
    gen = torch.Generator().manual_seed(int(seed))
    return images[torch.randint(0, len(images), (int(n),), generator=gen)]


def measures(row: dict) -> dict:
    """The measures of a stored run of a :class:`LandingMetric` as one flat dict (NaN where a run diverged or
    nothing landed): value, fd, landed, distance (median relative), distinct, kl, kl_floor (its mean), class_tv."""
    nan = float("nan")
    e = row.get("extra") or {}
    hits = e.get("hits") or {}

    def num(v):
        return nan if v is None else float(v)

    return {"value": num(row.get("value")) if not row.get("diverged") else nan, "fd": num(e.get("fd")),
            "landed": num(e.get("landed")), "distance": num((e.get("relative_distance") or {}).get("median")),
            "distinct": num(hits.get("distinct")), "kl": num(hits.get("kl")),
            "kl_floor": num((hits.get("kl_floor") or {}).get("mean")), "class_tv": num(hits.get("class_tv"))}


def covers(rows, claim: str) -> Verdict:
    """"The samples reach the images like uniform draws": over the runs ``rows`` (seeds), the mean KL of the hit
    counts against uniform is at most the floor's mean + 2 std, the floor being that of as many uniform draws
    (:func:`hit_statistics`, averaged over the runs). A run where nothing landed does not cover."""
    hits = [((r.get("extra") or {}).get("hits") or {}) for r in rows]
    if not hits or any(h.get("kl") is None for h in hits):
        return Verdict(claim, False, f"{sum(h.get('kl') is None for h in hits)} of {len(hits)} runs landed nothing")
    kl = [float(h["kl"]) for h in hits]
    floor_mean = float(np.mean([h["kl_floor"]["mean"] for h in hits]))
    floor_std = float(np.mean([h["kl_floor"]["std"] for h in hits]))
    bound = floor_mean + 2 * floor_std
    m, s, _ = spread(kl)
    return Verdict(claim, m <= bound, f"KL of the hits {m:.4g} ± {s:.2g} (over {len(kl)}) vs bound {bound:.4g} = floor "
                                      f"{floor_mean:.4g} + 2 × {floor_std:.2g} (uniform draws of as many hits)",
                   {"kl": {"mean": m, "std": s, "values": kl}, "floor_mean": floor_mean, "floor_std": floor_std,
                    "bound": bound})
