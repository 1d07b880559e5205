"""Filters for the PDS preconditioner (Sec. 4.3): statistics-based R (Eq. 14) and A (Eq. 13 and
the released variant), and the parametric (r, λ) filter.

Every filter is returned as a float64 tensor of shape [C, H, W] in the corner-origin layout that
:class:`pds.precondition.Preconditioner` uses (DC at [0, 0], no fftshift). Use
:func:`centred` to view a frequency filter with DC in the middle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pds.fingerprint import DATA_RTOL, Approx, Fingerprint, fingerprint
from pds.fourier import centred, power_spectrum, radius_squared, size_pair
from pds.precondition import Preconditioner
from pds.schedules import check_positive_int

__all__ = [
    "filters_fingerprint",
    "synthetic_filters",
    "parametric_filter",
    "frequency_filter",
    "space_filter",
    "centred",
    "estimate_filters",
    "streamed_mean",
    "FilterSet",
    "save_filters",
    "load_filters",
    "file_preconditioner",
    "parametric_preconditioner",
]


CENTRES = ("paper", "dc")


def parametric_filter(size, r: float, lam: float, channels: int = 1, centre: str = "paper") -> torch.Tensor:
    """The parametric frequency filter R of Sec. 4.3: 1 inside a circle of radius √2·r, ``lam`` outside.

    ``centre="paper"`` (the default: the literal reading) applies the printed condition
    ``(h − 0.5H)² + (w − 0.5W)² ≤ 2r²`` to the spectrum ``F[x]`` as the released code and this library lay it
    out: torch's FFT, DC at index [0, 0], no fftshift, h and w the 0-based array indices. The circle is then
    centred on the Nyquist corner: it holds the *highest* frequencies, and ``lam`` applies to the low and
    middle ones. The filter is Hermitian-symmetric (R[k] = R[−k mod size]) for every size, because
    |(H − h) − H/2| = |h − H/2|: for even H the centre is the Nyquist bin itself; for odd H it falls half-way
    between the two highest frequencies ±(H − 1)/2 and the circle is still symmetric. (A 1-based reading of
    h would break this symmetry, so it is not offered.)

    ``centre="dc"`` is the other reading (this library's before wave 2): the same circle around DC on the
    centred spectrum, i.e. on the signed integer frequencies (``pds.fourier.radius_squared``), so ``lam``
    applies to the *high* frequencies.

    This is R in M = A ⊙ F⁻¹[R ⊙ F[·]] (Eq. 10). The sampler applies the *inverse* (Eq. 11): the
    noise and drift are multiplied by 1/R̃ (after the optional normalisation), so ``lam > 1``
    damps the frequencies where it applies and ``lam < 1`` amplifies them. ``r`` is in frequency bins
    (the paper's MNIST setting is r = 0.2·H). Returns a float64 tensor of shape [channels, H, W].
    """
    h, w = size_pair(size)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"r must be a finite number >= 0, got {r}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0 (M must be invertible), got {lam}")
    check_positive_int(channels, "channels")
    if centre == "paper":
        hh = torch.arange(h, dtype=torch.float64)[:, None] - 0.5 * h
        ww = torch.arange(w, dtype=torch.float64)[None, :] - 0.5 * w
        dist2 = hh**2 + ww**2
    elif centre == "dc":
        dist2 = radius_squared(h, w)
    else:
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
    filt = torch.full_like(dist2, float(lam))
    filt[dist2 <= 2.0 * r * r] = 1.0
    return filt.expand(int(channels), h, w).clone()


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(images)
        for i in range(0, t.shape[0], batch_size):
            yield t[i : i + batch_size]
    else:
        for b in images:
            yield torch.as_tensor(b)


def _check_batch(batch: torch.Tensor, shape) -> None:
    if batch.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got a batch of shape {tuple(batch.shape)}")
    if batch.is_complex() or not (batch.is_floating_point() or batch.dtype == torch.uint8):
        raise TypeError(f"images must be real floats in [0, 1], got dtype {batch.dtype}")
    if shape is not None and tuple(batch.shape[1:]) != shape:
        raise ValueError(f"all batches must share [C, H, W] = {shape}, got {tuple(batch.shape[1:])}")
    if not torch.isfinite(batch).all():
        raise ValueError("images contain NaN or inf")
    if batch.numel() and (batch.min() < 0 or batch.max() > 1):
        raise ValueError(
            f"images must lie in [0, 1] (got range [{float(batch.min()):.3g}, "
            f"{float(batch.max()):.3g}]); rescale them first"
        )


def streamed_mean(images, fn, batch_size: int = 64) -> tuple[torch.Tensor, int]:
    """Mean over images of ``fn(batch)`` (float64), streaming over a tensor or an iterable of batches.

    Images are checked: [N, C, H, W], finite, in [0, 1], one shape throughout. Returns (mean, count).
    """
    total, count, shape = None, 0, None
    for batch in _batches(images, batch_size):
        _check_batch(batch, shape)
        shape = tuple(batch.shape[1:])
        if batch.shape[0] == 0:
            continue
        contrib = fn(batch.to(torch.float64)).sum(dim=0)
        total = contrib if total is None else total + contrib
        count += batch.shape[0]
    if count == 0:
        raise ValueError("no images given: need at least one image of shape [C, H, W]")
    return total / count, count


def frequency_filter(images, batch_size: int = 64) -> torch.Tensor:
    """Statistics frequency filter (Eq. 14): R = log(E[|F[x]|²] + 1), shape [C, H, W].

    ``images`` is a tensor [N, C, H, W] in [0, 1] (not centred, as the released code uses them)
    or an iterable of such batches; |F|² is computed per image with the unnormalised 2-D DFT and
    averaged in float64, streaming over batches.
    """
    power, _ = streamed_mean(images, power_spectrum, batch_size)
    return torch.log(power + 1.0)


def space_filter(images, variant: str = "released", batch_size: int = 64) -> torch.Tensor:
    """Statistics space filter A, shape [C, H, W].

    ``variant="released"``: the per-pixel second moment E[x²] used by the released code.
    ``variant="paper"``: Eq. 13, log(E[x]) + 1; this is ≤ 0 wherever the mean pixel is ≤ 1/e
    (−inf where it is 0), so M built from it is not invertible there; the preconditioner refuses it.
    """
    if variant == "released":
        mean, _ = streamed_mean(images, lambda b: b * b, batch_size)
        return mean
    if variant == "paper":
        mean, _ = streamed_mean(images, lambda b: b, batch_size)
        return torch.log(mean) + 1.0
    raise ValueError(f"variant must be 'released' or 'paper', got {variant!r}")


def estimate_filters(images, variant: str = "released", batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, int]:
    """R (Eq. 14) and A (``variant``: "released" E[x²] or "paper" Eq. 13) in one streaming pass.

    ``images``: a tensor [N, C, H, W] in [0, 1] or an iterable of such batches (wrap it in a
    progress bar if you like). Returns (freq, space, number of images).
    """
    if variant not in ("released", "paper"):
        raise ValueError(f"variant must be 'released' or 'paper', got {variant!r}")

    def stats(b):
        return torch.stack([power_spectrum(b), b, b * b], dim=1)

    mean, count = streamed_mean(images, stats, batch_size)
    freq = torch.log(mean[0] + 1.0)
    space = mean[2] if variant == "released" else torch.log(mean[1]) + 1.0
    return freq, space, count


@dataclass
class FilterSet:
    """A frequency and a space filter with where they came from."""

    freq: torch.Tensor | None
    space: torch.Tensor | None
    metadata: dict = field(default_factory=dict)


def save_filters(path, freq=None, space=None, **metadata) -> Path:
    """Save filters to ``.npz`` with arrays ``freq`` and ``space`` ([C, H, W], float64) and metadata.

    Metadata keys (source, n, seed, size, variant, and any others) are stored as 0-d or 1-d arrays
    next to the filters; ``None`` values are stored as an empty string.
    """
    path = Path(path)
    if freq is None and space is None:
        raise ValueError("nothing to save: give freq, space or both")
    arrays = {}
    for name, filt in (("freq", freq), ("space", space)):
        if filt is not None:
            arr = torch.as_tensor(filt).detach().cpu().to(torch.float64).numpy()
            if arr.ndim != 3:
                raise ValueError(f"{name} filter must have shape [C, H, W], got {arr.shape}")
            arrays[name] = arr
    for key, value in metadata.items():
        if key in ("freq", "space"):
            raise ValueError(f"metadata key {key!r} clashes with a filter name")
        arrays[key] = np.asarray("" if value is None else value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def load_filters(path) -> FilterSet:
    """Load a :func:`save_filters` file; missing filters come back as None."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"filter file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError...
        raise ValueError(f"{path} is not a readable .npz filter file ({exc})") from exc
    if "freq" not in content and "space" not in content:
        raise ValueError(f"{path} holds neither a 'freq' nor a 'space' array")
    freq = torch.from_numpy(content.pop("freq")) if "freq" in content else None
    space = torch.from_numpy(content.pop("space")) if "space" in content else None
    meta = {}
    for key, arr in content.items():
        value = arr.item() if arr.ndim == 0 else arr.tolist()
        meta[key] = None if value == "" else value
    return FilterSet(freq=freq, space=space, metadata=meta)


def filters_fingerprint(path) -> Fingerprint:
    """What a filter file holds, by its values (:mod:`pds.fingerprint`, compared to float32 rounding: a filter
    estimated from float32 images differs between machines in its last bits), not by its bytes or metadata."""
    filters = load_filters(path)
    return fingerprint("filters", *[Approx(f, DATA_RTOL) if f is not None else "none"
                                    for f in (filters.freq, filters.space)])


def synthetic_filters(channels: int, size: int, space: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A frequency filter shaped like Eq. 14 on a 1/f² spectrum, and optionally a positive space filter: the
    shapes of the paper's filters (timing depends on nothing else)."""
    power = (size * size) ** 2 / (1.0 + radius_squared(size, size))
    freq = torch.log1p(power).expand(channels, size, size).clone()
    a = None
    if space:
        a = 0.5 + torch.rand(channels, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return freq, a


def file_preconditioner(path, alpha: float | None = 5.0, space: bool = False, shape=None) -> Preconditioner:
    """The preconditioner of a :func:`save_filters` file (``pds filters estimate``): its R and, with ``space``, its A
    (Fig. 1), normalised with ``alpha`` (None: as given); ``shape`` [C, H, W] refuses filters that do not fit it."""
    filters = load_filters(path)
    a = filters.space if space else None
    if filters.freq is None and a is None:
        raise ValueError(f"{path} holds no {'filter' if space else 'frequency filter'}")
    return Preconditioner(freq=filters.freq, space=a, alpha=alpha, shape=shape)


def parametric_preconditioner(shape, r: float, lam: float, centre: str = "paper",
                              alpha: float | None = None) -> Preconditioner:
    """The preconditioner of the parametric filter (Sec. 4.3) for images of ``shape`` [C, H, W]: radius ``r``·H
    (r in units of H, as the paper's (0.2H, 1.6)), value ``lam``, ``centre`` as :func:`parametric_filter`."""
    c, h, w = (int(v) for v in shape)
    filt = parametric_filter((h, w), r * h, lam, channels=c, centre=centre)
    return Preconditioner(freq=filt, alpha=alpha, shape=(c, h, w))
