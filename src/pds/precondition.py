"""Preconditioning operators of PDS (Eq. 10, Eq. 11 and Algorithm 1).

The paper defines the preconditioner (Eq. 10)

    M[.] = A ⊙ F⁻¹[R ⊙ F[.]]

with a frequency filter ``R`` and a space filter ``A`` (both of shape [C, H, W]), and
samples with the *inverse* operator (Eq. 11)

    dx = (ε²/2) M⁻¹M⁻ᵀ ∇log p(x) dt + ε M⁻¹ dw.

So the sampler needs two maps: ``noise(ξ) = M⁻¹ξ`` and ``drift(d) = M⁻¹M⁻ᵀ d`` (Alg. 1).

FFT convention (that of the released code): the unnormalised 2-D DFT over H and W of each
channel, DC at index [0, 0] (no fftshift). ``F⁻¹`` is its inverse (``torch.fft.ifft2``).
The released code keeps complex intermediates and takes the real part once, after the last
inverse transform; the complex path here does exactly that.

When ``R`` is Hermitian-symmetric (``R[k] = R[-k]`` modulo the size, true for filters built from
|F|² of real images and for the parametric (r, λ) filter) the operators map real images to real
images exactly and real FFTs (``rfft2``/``irfft2``) give the same result at about half the cost.
Only then is ``drift`` exactly ``M⁻¹M⁻ᵀ``: for a non-symmetric ``R`` the real part taken by the
released code breaks that identity, and a warning says so.

Normalisation (released code, ``alpha`` a number, default 5): each given filter X becomes

    X̃ = (X / max(X) + α − 1) / α,

and ``M`` is built from ``R̃`` and ``Ã``. The multipliers applied by ``noise`` and ``drift`` are
``D = 1 / X̃`` and lie in [1, α/(α−1)] for non-negative X: low-power frequencies and dark pixels
get the larger gain. With ``alpha=None`` the filters are used as given.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from pds.fourier import half_plane_filter, mirror_frequencies

__all__ = [
    "Preconditioner",
    "operator_matrix",
    "normalise_filter",
    "is_hermitian_symmetric",
    "as_filter_tensor",
]

FFTMode = Literal["auto", "real", "complex"]


def as_filter_tensor(value, name: str) -> torch.Tensor:
    """Convert a filter (tensor, array or nested list) to a real float64 tensor of shape [C, H, W].

    Lower-dimensional inputs are accepted as broadcastable shapes ([H, W] becomes [1, H, W],
    a scalar becomes [1, 1, 1]). Complex, non-numeric and non-finite input is refused.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu")
    else:
        array = np.asarray(value)
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        ):
            raise TypeError(f"{name} filter must be numeric, got an array of dtype {array.dtype}")
        tensor = torch.from_numpy(np.array(array))
    if tensor.is_complex():
        raise TypeError(
            f"{name} filter must be real, got a complex {tensor.dtype} tensor; "
            "pass the magnitude (for example |F|² statistics), not a complex spectrum"
        )
    tensor = tensor.to(torch.float64)
    if tensor.ndim > 3:
        if all(s == 1 for s in tensor.shape[:-3]):
            tensor = tensor.reshape(tensor.shape[-3:])
        else:
            raise ValueError(
                f"{name} filter must have shape [C, H, W] (or broadcastable to it), got "
                f"{tuple(tensor.shape)}"
            )
    while tensor.ndim < 3:
        tensor = tensor.unsqueeze(0)
    if tensor.numel() == 0:
        raise ValueError(f"{name} filter is empty (shape {tuple(tensor.shape)})")
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} filter has {bad} non-finite (NaN or inf) entries; "
            "a filter from Eq. 13 (log E[x] + 1) is -inf where the mean pixel is 0"
        )
    return tensor


def normalise_filter(filt: torch.Tensor, alpha: float | None) -> torch.Tensor:
    """The released normalisation X̃ = (X / max(X) + α − 1) / α (identity when ``alpha`` is None)."""
    if alpha is None:
        return filt
    return (filt / filt.max() + alpha - 1.0) / alpha


def is_hermitian_symmetric(filt: torch.Tensor, rtol: float = 1e-6) -> bool:
    """True when ``filt[..., h, w] == filt[..., -h mod H, -w mod W]`` (to ``rtol`` of its largest entry)."""
    mirrored = mirror_frequencies(filt)
    scale = float(filt.abs().max()) if filt.numel() else 0.0
    return bool(torch.allclose(filt, mirrored, rtol=0.0, atol=rtol * max(scale, 1e-300)))


def _validate_positive(filt: torch.Tensor, name: str, alpha: float | None) -> None:
    if alpha is None:
        if (filt <= 0).any():
            raise ValueError(
                f"{name} filter has {int((filt <= 0).sum())} zero or negative entries "
                f"(min {float(filt.min()):.4g}); M must be invertible, so with alpha=None every "
                "entry must be > 0"
            )
        return
    if (filt < 0).any():
        raise ValueError(
            f"{name} filter has {int((filt < 0).sum())} negative entries (min "
            f"{float(filt.min()):.4g}); statistics filters are non-negative (Eq. 14, released "
            "second moment). Eq. 13's log(E[x]) + 1 is negative where the mean pixel is below "
            "1/e and gives a non-invertible M: use variant='released'"
        )
    if float(filt.max()) <= 0:
        raise ValueError(f"{name} filter is all zeros: its maximum must be > 0 to normalise it")


class Preconditioner:
    """The PDS preconditioner M[.] = A ⊙ F⁻¹[R ⊙ F[.]] (Eq. 10) and the maps Alg. 1 uses.

    Parameters
    ----------
    freq:
        frequency filter R, broadcastable to [C, H, W] (corner-origin layout: DC at [0, 0]),
        or None for all ones.
    space:
        space filter A, broadcastable to [C, H, W], or None for all ones.
    alpha:
        released normalisation strength (see the module docstring), a number > 1; None uses the
        filters as given, which must then be strictly positive.
    fft:
        "auto" (real FFTs when R is Hermitian-symmetric, else complex), "real" (requires a
        symmetric R) or "complex" (the released code's path, whatever R).
    shape:
        optional image shape [C, H, W]: filters that do not fit it are refused here, at construction,
        rather than at the first call (the samplers also check their batch before the first step).

    Methods work on real batches [N, C, H, W] of float32 or float64, keep dtype and device, and
    return real tensors.
    """

    def __init__(self, freq=None, space=None, alpha: float | None = 5.0, fft: FFTMode = "auto", shape=None):
        if alpha is not None:
            alpha = float(alpha)
            if not np.isfinite(alpha) or alpha <= 1:
                raise ValueError(
                    f"alpha must be a number > 1 or None, got {alpha}: the multipliers 1/X̃ lie in "
                    "[1, α/(α−1)], unbounded at α = 1 (a filter entry near 0 would scale noise and drift by "
                    "1/(X/max X), e.g. 1e6); the released default is 5"
                )
        if fft not in ("auto", "real", "complex"):
            raise ValueError(f"fft must be 'auto', 'real' or 'complex', got {fft!r}")
        self.alpha = alpha
        self.freq, freq_shape = self._prepare(freq, "frequency", alpha)
        self.space, space_shape = self._prepare(space, "space", alpha)
        # shapes of the filters as given (an all-ones filter is dropped below but must still fit)
        self._given = {"frequency": freq_shape, "space": space_shape}
        self.hermitian = True if self.freq is None else is_hermitian_symmetric(self.freq)
        if fft == "real" and not self.hermitian:
            raise ValueError(
                "fft='real' needs a Hermitian-symmetric frequency filter "
                "(R[h, w] == R[-h mod H, -w mod W]); this one is not"
            )
        self.use_rfft = self.hermitian if fft == "auto" else fft == "real"
        if not self.hermitian:
            warnings.warn(
                "the frequency filter is not Hermitian-symmetric: taking the real part (as the "
                "released code does) makes drift() differ from M⁻¹M⁻ᵀ and M_inv() from the "
                "inverse of M()",
                stacklevel=2,
            )
        # multipliers D = 1 / X̃ used by noise() and drift(), in float64 on the CPU
        self.freq_gain = None if self.freq is None else 1.0 / self.freq
        self.space_gain = None if self.space is None else 1.0 / self.space
        self._cache: dict = {}
        self._check_filters_agree()
        if shape is not None:
            self.check_shape(shape)

    @staticmethod
    def _prepare(value, name: str, alpha: float | None) -> tuple[torch.Tensor | None, tuple | None]:
        if value is None:
            return None, None
        filt = as_filter_tensor(value, name)
        _validate_positive(filt, name, alpha)
        filt = normalise_filter(filt, alpha)  # entries in [(α−1)/α, 1] for α > 1: M stays invertible
        if bool((filt == 1).all()):
            return None, tuple(filt.shape)  # the identity: skip it, so that samplers stay bit-for-bit vanilla
        return filt, tuple(filt.shape)

    # -- helpers -----------------------------------------------------------------------------
    def _check_filters_agree(self) -> None:
        fs, ss = self._given["frequency"], self._given["space"]
        if fs is None or ss is None:
            return
        for axis, (f, a) in enumerate(zip(fs, ss, strict=True)):
            if f != 1 and a != 1 and f != a:
                raise ValueError(
                    f"frequency filter {fs} and space filter {ss} disagree on axis {'CHW'[axis]}: both must fit "
                    "the same images [C, H, W]"
                )

    def check_shape(self, shape) -> None:
        """Refuse images of ``shape`` = [C, H, W] that the filters do not fit (naming both shapes)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image shape must be [C, H, W] with positive sizes, got {shape}")
        for name, given in self._given.items():
            if given is None:
                continue
            for fs, xs in zip(given, shape, strict=True):
                if fs not in (1, xs):
                    raise ValueError(
                        f"{name} filter of shape {given} does not fit images of "
                        f"shape [C, H, W] = {shape}: estimate it at this size (pds filters estimate --size) or "
                        "build the parametric filter for it"
                    )

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of shape [N, C, H, W], got {type(x).__name__}")
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"expected a real floating-point tensor, got dtype {x.dtype}")
        if x.ndim != 4:
            raise ValueError(f"expected a batch of shape [N, C, H, W], got shape {tuple(x.shape)}")
        self.check_shape(x.shape[1:])

    def _tables(self, x: torch.Tensor):
        """R, A and the gains D_f, D_s on x's dtype and device (R and D_f on the rfft half plane on the real path)."""
        key = (x.dtype, x.device, self.use_rfft)
        if key not in self._cache:
            def cast(t):
                return None if t is None else t.to(device=x.device, dtype=x.dtype)

            def half(t):
                if t is None or not self.use_rfft:
                    return cast(t)
                return cast(t[..., : t.shape[-1] // 2 + 1])  # all of a width-1 filter (broadcast over W)

            self._cache[key] = {
                "R": half(self.freq),
                "D_f": half(self.freq_gain),
                "A": cast(self.space),
                "D_s": cast(self.space_gain),
            }
        return self._cache[key]

    def _filter(self, x: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        """F⁻¹[gain ⊙ F[x]] on a real or complex x; real output on the real path."""
        if gain is None:
            return x
        if self.use_rfft:
            return half_plane_filter(x, gain)
        return torch.fft.ifft2(torch.fft.fft2(x) * gain)

    @staticmethod
    def _real(x: torch.Tensor) -> torch.Tensor:
        return x.real if x.is_complex() else x

    # -- the operators ---------------------------------------------------------------------
    def M(self, x: torch.Tensor) -> torch.Tensor:
        """M[x] = A ⊙ F⁻¹[R ⊙ F[x]] (Eq. 10)."""
        self._check_input(x)
        t = self._tables(x)
        y = self._filter(x, t["R"])
        if t["A"] is not None:
            y = y * t["A"]
        return self._real(y)

    def M_inv(self, x: torch.Tensor) -> torch.Tensor:
        """M⁻¹[x] = F⁻¹[F[x ⊘ A] ⊘ R] (the noise transform of Alg. 1)."""
        self._check_input(x)
        t = self._tables(x)
        if t["D_s"] is not None:
            x = x * t["D_s"]
        return self._real(self._filter(x, t["D_f"]))

    def noise(self, xi: torch.Tensor) -> torch.Tensor:
        """η = M⁻¹ξ (Eq. 11, Alg. 1); for ξ ~ N(0, I) its covariance is M⁻¹M⁻ᵀ."""
        return self.M_inv(xi)

    def drift(self, d: torch.Tensor) -> torch.Tensor:
        """M⁻¹M⁻ᵀ d = F⁻¹[F[F⁻¹[F[d] ⊘ R] ⊘ A²] ⊘ R] (Eq. 11, Alg. 1)."""
        self._check_input(d)
        t = self._tables(d)
        if t["D_s"] is None:
            # F⁻¹ D F F⁻¹ D F = F⁻¹ D² F: one round trip instead of two
            gain = None if t["D_f"] is None else t["D_f"] * t["D_f"]
            return self._real(self._filter(d, gain))
        y = self._filter(d, t["D_f"])
        y = y * (t["D_s"] * t["D_s"])
        return self._real(self._filter(y, t["D_f"]))

    def __repr__(self) -> str:
        def shape(t):
            return None if t is None else tuple(t.shape)

        return (
            f"Preconditioner(freq={shape(self.freq)}, space={shape(self.space)}, "
            f"alpha={self.alpha}, fft={'real' if self.use_rfft else 'complex'})"
        )


def operator_matrix(op: Callable[[torch.Tensor], torch.Tensor], shape, dtype=torch.float64) -> np.ndarray:
    """The d×d matrix of a linear operator on images of ``shape`` = (C, H, W), d = C·H·W.

    Column j is ``op(e_j)`` flattened (row-major), computed in one batch of d basis images.
    """
    c, h, w = (int(s) for s in shape)
    d = c * h * w
    basis = torch.eye(d, dtype=dtype).reshape(d, c, h, w)
    out = op(basis)
    if out.is_complex():
        raise TypeError("operator returned complex values; expected a real operator")
    return out.reshape(d, d).T.detach().cpu().numpy().astype(np.float64)
