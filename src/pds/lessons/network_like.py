"""How network-like a closed-form score is, and what a trained network's error looks like in frequency (issue 31).

A score model is compared through its denoiser D(x, σ) = x + σ² s(x, σ) (Tweedie), on held-out images noised at σ.

Given a :class:`pds.lab.store.Store` (``store=``), :func:`agreement`, :func:`calibrate_patch` and :func:`error_spectrum`
return a stored result when one was computed before, and store what they compute: each is found by what it depends on
— the fingerprints of every score involved (:func:`pds.fingerprint.score_fingerprint`: a network's outputs in float64
at fixed inputs, a closed form's images and code), of the images and of this module's code (:func:`behaviour`: its
results on canonical inputs), and the settings (σ, seeds, dtypes) — so that the default profile of notebook 13 reads
its tables from the shipped copy on any machine, and recomputes one when something it depends on changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from pds.fingerprint import DATA_RTOL, Approx, Fingerprint, fingerprint, score_fingerprint
from pds.fourier import radial_profile
from pds.modern import denoiser

__all__ = ["noised", "r2", "agreement", "per_image", "versus", "paired", "calibrate_patch", "error_spectrum",
           "error_model", "behaviour"]


def noised(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``images`` + σ·ξ with ξ drawn from ``seed`` (float64): the held-out inputs at one noise level."""
    xi = torch.randn(images.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return images.double() + float(sigma) * xi


def r2(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Kamb & Ganguli's r², per image (first axis): 1 − ‖reference − other‖² / ‖reference − its mean‖² (float64), the
    share of the reference's variation over the image that ``other`` reproduces (1: the same output)."""
    if reference.shape != other.shape:
        raise ValueError(f"r2 needs outputs of one shape, got {tuple(reference.shape)} and {tuple(other.shape)}")
    ref, oth = reference.double().flatten(1), other.double().flatten(1)
    spread = ((ref - ref.mean(1, keepdim=True)) ** 2).sum(1)
    if bool((spread == 0).any()):
        raise ValueError("a reference output is constant over its image: r² is undefined there")
    return 1 - ((ref - oth) ** 2).sum(1) / spread


def _summary(values: torch.Tensor) -> dict:
    q = np.quantile(values.numpy(), [0.25, 0.5, 0.75])
    return {"r2 median": float(q[1]), "r2 q25": float(q[0]), "r2 q75": float(q[2])}


def _score(model, x: torch.Tensor, sigma: float, batch: int = 64) -> torch.Tensor:
    """s(x, σ) in float64 for a score ``model``, called in float32 (networks) or, given as ``(score, dtype)``, in that
    dtype; in batches of ``batch``."""
    score, dtype = _scored(model)
    with torch.no_grad():
        return torch.cat([score(x[a : a + batch].to(dtype), float(sigma)).double() for a in range(0, len(x), batch)])


def _denoised(model, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """D(x, σ) = x + σ² s(x, σ) (:func:`pds.modern.denoiser`) of a model as :func:`_score` calls it, in float64."""
    return denoiser(lambda y, s: _score(model, y, s))(x, sigma)


def _scored(model) -> tuple[Callable, torch.dtype]:
    return model if isinstance(model, tuple) else (model, torch.float32)


def _described(model, shape, sigmas) -> dict:
    """A score model (as :func:`agreement` takes it) by what it computes and the dtype it is called in."""
    score, dtype = _scored(model)
    return {"score": score_fingerprint(score, shape, sigmas), "dtype": str(dtype).replace("torch.", "")}


def _images(images: torch.Tensor) -> Fingerprint:
    return fingerprint("images", Approx(images, DATA_RTOL))


def _stored(store, computation: dict, reference, models: dict, images, sigmas, seed: int, compute) -> pd.DataFrame:
    """``compute()``'s table, read from ``store`` or kept there under the description of the computation: what it is
    (``computation``), this module's behaviour, the images, σ, the seed and the fingerprints of every score."""
    shape = tuple(images.shape[1:])
    desc = {**computation, "code": behaviour(), "images": _images(images), "sigmas": sigmas, "seed": int(seed),
            "reference": _described(reference, shape, sigmas),
            "models": {name: _described(m, shape, sigmas) for name, m in models.items()}}
    return pd.DataFrame(store.get_or_compute(desc, lambda: {"table": compute().to_dict("records")})["table"])


def _r2s(reference, models: dict, images: torch.Tensor, sigmas, seed: int):
    """(σ, model name, the r² of each image) for each σ and model, on the images noised at σ (seed + σ's index)."""
    for j, sigma in enumerate(sigmas):
        x = noised(images, sigma, seed + j)
        ref = _denoised(reference, x, sigma)
        for name, model in models.items():
            yield sigma, name, r2(ref, _denoised(model, x, sigma))


def agreement(reference, models: dict, images: torch.Tensor, sigmas, seed: int = 0, store=None) -> pd.DataFrame:
    """For each σ and each score model of ``models``: the median and quartiles over ``images`` of the r² of its
    denoiser x + σ² s against the denoiser of ``reference``, on the images noised at σ (seed ``seed`` + the σ's
    index). A model is a score ``score(x, σ)`` called in float32, or ``(score, dtype)``. ``store``: a
    :class:`pds.lab.store.Store` to read the table from, or to keep it in (the module docstring)."""
    sigmas = [float(s) for s in sigmas]
    if store is not None:
        return _stored(store, {"computation": "agreement"}, reference, models, images, sigmas, seed,
                       lambda: agreement(reference, models, images, sigmas, seed))
    return pd.DataFrame([{"sigma": float(sigma), "model": name, **_summary(values)}
                         for sigma, name, values in _r2s(reference, models, images, sigmas, seed)])


def per_image(reference, models: dict, images: torch.Tensor, sigmas, seed: int = 0, store=None) -> pd.DataFrame:
    """The r² of every image (columns sigma, model, image, r2) for each σ and model of ``models`` against
    ``reference``, on the noised images of :func:`agreement` (the same noise for every model: a paired design).
    ``store``: as :func:`agreement`'s."""
    sigmas = [float(s) for s in sigmas]
    if store is not None:
        return _stored(store, {"computation": "r2 per image", "per image": _per_image_behaviour()}, reference,
                       models, images, sigmas, seed, lambda: per_image(reference, models, images, sigmas, seed))
    return pd.DataFrame([{"sigma": sigma, "model": name, "image": i, "r2": float(v)}
                         for sigma, name, values in _r2s(reference, models, images, sigmas, seed)
                         for i, v in enumerate(values)])


def versus(table: pd.DataFrame, a: str, b: str, level: float = 0.05) -> pd.DataFrame:
    """Per σ of a :func:`per_image` table, model ``a`` against model ``b`` on the same images: the median of the
    per-image differences r²_a − r²_b, the share of images where ``a`` is closer, the two-sided p-value of Wilcoxon's
    signed-rank test on the differences (scipy; 1 where they all vanish), and ``closer``: p < ``level`` with a positive
    median difference."""
    from scipy.stats import wilcoxon

    rows = []
    for sigma, g in table.groupby("sigma", sort=True):
        wide = g.pivot(index="image", columns="model", values="r2")
        diff = (wide[a] - wide[b]).to_numpy()
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        middle = float(np.median(diff))
        rows.append({"sigma": float(sigma), "a": a, "b": b, "median difference": middle,
                     "a closer on": float(np.mean(diff > 0)), "p": p, "closer": bool(p < level and middle > 0)})
    return pd.DataFrame(rows)


def paired(table: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """Per σ of a :func:`per_image` table: each model's median r², the best model (largest median) and, for every
    other model, :func:`versus` the best against it (``closer``: the best is closer at ``level``)."""
    rows = []
    for sigma, g in table.groupby("sigma", sort=True):
        medians = g.groupby("model")["r2"].median()
        best = str(medians.idxmax())
        for model in medians.index:
            line = {"sigma": float(sigma), "model": model, "r2 median": float(medians[model]), "best": best}
            if model != best:
                got = versus(g, best, model, level).iloc[0]
                line |= {"median difference": got["median difference"], "best closer on": got["a closer on"],
                         "p": got["p"], "closer": bool(got["closer"])}
            rows.append(line)
    return pd.DataFrame(rows)


def calibrate_patch(reference: Callable, machine_of: Callable[[int], Callable], sizes, images: torch.Tensor, sigmas,
                    seed: int = 0, store=None) -> pd.DataFrame:
    """At each σ, the median r² against ``reference`` of the machine ``machine_of(k)`` for every patch size k of
    ``sizes``; the table has one row per (σ, k) and a column ``best`` marking the k with the largest median at that σ
    (the calibrated schedule σ ↦ k). ``store``: as :func:`agreement`'s."""
    machines = {f"k={k}": (machine_of(k), torch.float64) for k in sizes}  # closed forms: in float64
    table = agreement(reference, machines, images, sigmas, seed, store=store)
    table["k"] = [int(m[2:]) for m in table["model"]]
    table["best"] = table.groupby("sigma")["r2 median"].transform("max") == table["r2 median"]
    return table


def error_spectrum(a, b, x: torch.Tensor, sigma: float, bins: int = 16, store=None) -> tuple[np.ndarray, np.ndarray]:
    """(radial frequency, mean power) of s_a(x, σ) − s_b(x, σ) over the images x [B, C, H, W] (scores as in
    :func:`agreement`): |F[s_a − s_b]|² of the unnormalised DFT on the half plane, averaged over images and channels
    and over ``bins`` rings of |k|. ``store``: as :func:`agreement`'s."""
    if store is not None:
        shape, at = tuple(x.shape[1:]), [float(sigma)]
        desc = {"computation": "error_spectrum", "code": behaviour(), "x": _images(x), "sigma": float(sigma),
                "bins": int(bins), "a": _described(a, shape, at), "b": _described(b, shape, at)}
        row = store.get_or_compute(desc, lambda: dict(zip(("radius", "power"), (
            v.tolist() for v in error_spectrum(a, b, x, sigma, bins)), strict=True)))
        return np.asarray(row["radius"]), np.asarray(row["power"])
    diff = _score(a, x, sigma) - _score(b, x, sigma)
    h, w = x.shape[-2:]
    power = (torch.fft.rfft2(diff).abs() ** 2).mean(0)  # [C, H, W//2 + 1]
    return radial_profile(power, h, w, bins=bins)


@functools.cache
def behaviour() -> Fingerprint:
    """What this module computes, on canonical inputs in float64 (the ``code`` part of a stored result's description):
    :func:`calibrate_patch`'s table (through :func:`agreement`, :func:`noised`, :func:`r2`) and :func:`error_spectrum`
    for two analytic scores of 1×6×6 images at two σ. A numerical change of the module changes it beyond tolerance,
    and stored results are then computed anew."""
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def gaussian(v: float) -> tuple[Callable, torch.dtype]:
        return (lambda x, sigma: (0.5 - x) / (v + sigma**2)), torch.float64

    table = calibrate_patch(gaussian(0.1), lambda k: gaussian(0.02 * k)[0], (1, 3), images, (0.3, 2.0), seed=5)
    radius, power = error_spectrum(gaussian(0.1), gaussian(0.3), noised(images, 0.5, 7), 0.5, bins=3)
    numbers = table[["sigma", "r2 median", "r2 q25", "r2 q75"]].to_numpy()
    # the label is the module's first name, kept: it is a part of every stored table's key
    return fingerprint("pds.lab.network_like", table["model"].tolist(), table["best"].tolist(), numbers, radius, power)


@functools.cache
def _per_image_behaviour() -> Fingerprint:
    """What :func:`per_image` computes on :func:`behaviour`'s canonical inputs (a part of its stored tables' key; the
    other tables keep theirs)."""
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = (lambda x, sigma: (0.5 - x) / (0.1 + sigma**2)), torch.float64
    table = per_image(model, {"other": ((lambda x, sigma: (0.4 - x) / (0.3 + sigma**2)), torch.float64)}, images,
                      (0.3, 2.0), seed=5)
    return fingerprint("pds.lab.network_like.per_image", table["image"].tolist(), table[["sigma", "r2"]].to_numpy())


def error_model(measured: dict, size: tuple[int, int], radius: torch.Tensor) -> Callable[[float], torch.Tensor]:
    """σ ↦ the variance of a score error at each entry of ``radius`` (|k| of the unitary DFT's coefficients, e.g.
    :class:`pds.exact.optimal.Frequencies`' ``radius``), from :func:`error_spectrum` measurements ``measured``
    {σ_j: (ring radii, mean power)} of an image of ``size`` (H, W): the power divided by H·W (the unitary DFT's
    variance), interpolated linearly in log power over |k| (held at the end rings) and, as the error of σ·s (the
    scale a network outputs), linearly in log σ between the measured σ_j (held beyond them: E ∝ 1/σ² there)."""
    if not measured:
        raise ValueError("error_model needs at least one measured σ")
    hw = float(size[0] * size[1])
    levels = sorted(float(s) for s in measured)
    r = np.asarray(radius, dtype=np.float64)
    logs = []  # per measured σ_j: log(σ_j² E_j) at each entry of radius
    for sigma in levels:
        rings, power = (np.asarray(v, dtype=np.float64) for v in measured[sigma])
        if rings.shape != power.shape or not np.all(power > 0) or not np.all(np.diff(rings) > 0):
            raise ValueError(f"σ = {sigma}: need increasing ring radii and positive powers of one length")
        logs.append(np.interp(r, rings, np.log(power / hw)) + 2 * np.log(sigma))
    logs = np.stack(logs)

    @functools.cache  # a search asks for the same σ of its schedule at every evaluation
    def variance(sigma: float) -> torch.Tensor:
        at = np.interp(np.log(sigma), np.log(levels), np.arange(len(levels)))  # a fractional index, held at the ends
        lo = int(at)
        hi, t = min(lo + 1, len(levels) - 1), at - lo
        return torch.from_numpy(np.exp((1 - t) * logs[lo] + t * logs[hi]) / sigma**2)

    return variance
