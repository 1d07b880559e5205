"""The Fourier conventions shared by every module: the released code's corner-origin layout.

The 2-D DFT is ``torch.fft.fft2`` over the last two axes (unnormalised), DC at index [0, 0], no
fftshift. Bin ``j`` of an axis of length ``n`` holds the signed integer frequency
``k = j`` for ``j < ⌈n/2⌉`` and ``k = j − n`` otherwise (``torch.fft.fftfreq(n, 1/n)``); the real
half plane of ``rfft2`` keeps the columns ``0 … ⌊W/2⌋``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["size_pair", "frequency_grid", "radius_squared", "mirror_frequencies", "half_plane_filter",
           "half_plane_weights",
           "power_spectrum", "radial_profile", "centred", "merge_frequencies"]


def size_pair(size) -> tuple[int, int]:
    """(H, W) of an image size given as an int (square) or a pair, both positive."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or a pair (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {(h, w)}")
    return h, w


def frequency_grid(h: int, w: int, half: bool = False, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_h [H, 1], k_w [1, W or W//2+1]): the signed integer frequencies of every bin (``half``: the rfft columns),
    broadcastable."""
    if min(h, w) < 1:
        raise ValueError(f"an axis needs at least one bin, got {h}×{w}")
    kw = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(w, 1.0 / w, dtype=dtype)
    return torch.fft.fftfreq(h, 1.0 / h, dtype=dtype)[:, None], kw[None, :]


def radius_squared(h: int, w: int, half: bool = False, dtype=torch.float64) -> torch.Tensor:
    """k_h² + k_w² on the [H, W] grid (or its rfft half plane)."""
    kh, kw = frequency_grid(h, w, half=half, dtype=dtype)
    return kh**2 + kw**2


def mirror_frequencies(t: torch.Tensor) -> torch.Tensor:
    """t[..., −h mod H, −w mod W]: the value at the opposite frequency, in the corner-origin layout."""
    return torch.roll(torch.flip(t, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """|F[x]|² of real images on the full [H, W] grid (the unnormalised 2-D DFT over the last two axes), from the
    half plane of ``rfft2`` — half the work of ``fft2`` — and the symmetry |F[x](−k)| = |F[x](k)| of a real signal:
    the columns past ⌊W/2⌋ are the mirrored columns 1 … ⌈W/2⌉ − 1. Equal to ``fft2(x).abs() ** 2`` up to rounding."""
    if x.is_complex():
        raise TypeError("power_spectrum needs real images (use torch.fft.fft2(x).abs() ** 2 for complex ones)")
    half = torch.fft.rfft2(x).abs() ** 2
    w = x.shape[-1]
    rest = torch.roll(torch.flip(half[..., 1 : (w + 1) // 2], dims=(-2, -1)), shifts=1, dims=-2)
    return torch.cat([half, rest], dim=-1)


def half_plane_filter(x: torch.Tensor, gain) -> torch.Tensor:
    """F⁻¹[gain ⊙ F[x]] for real images x [..., H, W], ``gain`` on the half plane [..., H, W//2+1] of ``rfft2``
    (a Hermitian-symmetric multiplier): one convolution, done with real FFTs. Every frequency filter of the package
    (a preconditioner, a skew operator, a stationary Gaussian's score and samples) is this."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=tuple(x.shape[-2:]))


def half_plane_weights(h: int, w: int, dtype=torch.float64) -> torch.Tensor:
    """Multiplicity of each rfft2 column in a sum over the full H×W grid (1 or 2)."""
    wh = w // 2 + 1
    weights = torch.full((h, wh), 2.0, dtype=dtype)
    weights[:, 0] = 1.0
    if w % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def merge_frequencies(columns: list[torch.Tensor], h: int, w: int):
    """Group the rfft half-plane frequencies [C, H, W//2+1] on which every array of ``columns`` (each of that shape,
    float64) takes the same values. Returns (values [K, len(columns)] of each group, index [C·H·(W//2+1)] of each
    frequency's group, weights [K]: how many of the C·H·W frequencies of the full grid each group stands for). A
    per-frequency recursion whose parameters are the columns runs once per group: exact, and few groups for a
    radially symmetric model."""
    shape = columns[0].shape
    rows = torch.stack([c.expand(shape) for c in columns], -1).reshape(-1, len(columns))
    values, index = torch.unique(rows, dim=0, return_inverse=True)
    full = half_plane_weights(h, w).expand(shape).reshape(-1)
    return values, index, torch.zeros(len(values), dtype=torch.float64).index_add_(0, index, full)


def radial_profile(values: torch.Tensor, h: int, w: int, bins: int = 32, total: bool = False):
    """Mean of a half-plane array [C, H, W//2+1] over ``bins`` equal rings of |k| from 0 to the largest |k| (channels
    averaged), empty rings left out; (radius, mean). ``total``: the sum over each ring of one array [H, W//2+1]."""
    if total and values.ndim != 2:
        raise ValueError(f"a ring sum needs one half-plane array [H, W//2+1], got shape {tuple(values.shape)}")
    rad = radius_squared(h, w, half=True).sqrt().ravel().numpy()
    edges = np.linspace(0, rad.max() + 1e-9, bins + 1)
    idx = np.digitize(rad, edges) - 1
    vals = values.mean(0).ravel().numpy() if values.ndim == 3 else values.ravel().numpy()
    sums = np.bincount(idx, weights=vals, minlength=bins)[:bins]
    counts = np.bincount(idx, minlength=bins)[:bins]
    ok = counts > 0
    return 0.5 * (edges[1:] + edges[:-1])[ok], sums[ok] if total else sums[ok] / counts[ok]


def centred(filt) -> torch.Tensor:
    """fftshift over the last two axes, for viewing a corner-origin frequency array with DC in the middle."""
    return torch.fft.fftshift(torch.as_tensor(filt), dim=(-2, -1))
