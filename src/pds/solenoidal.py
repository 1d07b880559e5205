"""Skew-symmetric operators S for the solenoidal term ω·S∇log p (Eq. 7, Thm 1-2, Sec. 5).

Any real skew-symmetric S (Sᵀ = −S) leaves the stationary distribution unchanged (Thm 1), so the
term is a free design choice. Three are provided, each a callable on real batches [N, C, H, W]:

* :class:`PaperSolenoidal`, the example printed in Sec. 5, S[·] = Re[F[·] − Fᵀ[·]]. The 2-D DFT
  matrix is symmetric (Fᵀ = F), so this S is the *zero operator*: an ablation over ω with it
  cannot show anything. It is kept, computed literally, to demonstrate exactly that.
* :class:`FourierSkew`, a real Fourier multiplier whose symbol is purely imaginary and odd
  (s(−k) = −s(k)); :func:`central_difference` builds the circular central difference
  (x[h+1] − x[h−1]) / 2 along H or W, whose symbol is i·sin(2πk/n).
* :class:`MatrixSkew`, S = B − Bᵀ for a given real matrix B acting on flattened images.
"""

from __future__ import annotations

import math

import torch

from pds.fourier import frequency_grid, half_plane_filter, mirror_frequencies, size_pair

__all__ = ["PaperSolenoidal", "FourierSkew", "central_difference", "MatrixSkew", "dft_matrix", "skew_term"]


def skew_term(operator, omega: float):
    """The solenoidal term's operator v ↦ ω·S[v] (Eq. 7, Sec. 5) as the samplers take it (``skew=``): None when there
    is no term (no operator, or ω = 0); ``operator`` any callable S on [N, C, H, W] batches."""
    if not math.isfinite(omega):
        raise ValueError(f"omega must be finite, got {omega}")
    if operator is None or omega == 0:
        return None
    if not callable(operator):
        raise TypeError("the solenoidal operator must be a callable S(x) on [N, C, H, W] batches")
    return lambda v: omega * operator(v)


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"expected a tensor of shape [N, C, H, W], got {getattr(x, 'shape', x)!r}")
    if x.is_complex() or not x.is_floating_point():
        raise TypeError(f"expected a real floating-point tensor, got dtype {x.dtype}")


def dft_matrix(n: int, dtype=torch.complex128, device=None) -> torch.Tensor:
    """The unnormalised 1-D DFT matrix F[k, j] = exp(−2πi·kj/n) (that of ``torch.fft.fft``)."""
    k = torch.arange(n, dtype=torch.float64, device=device)
    # reduce kj mod n before the exponential so that entries are computed identically for (k, j)
    # and (j, k): the matrix is then symmetric to the bit
    phase = torch.remainder(k[:, None] * k[None, :], n) * (-2.0 * math.pi / n)
    return torch.polar(torch.ones_like(phase), phase).to(dtype)


class PaperSolenoidal:
    """S[x] = Re[F[x] − Fᵀ[x]] as printed in Sec. 5 (identically zero, see the module docstring).

    F[x] is the 2-D DFT per channel; Fᵀ[x] applies the *transposed* DFT matrix,
    (F_H ⊗ F_W)ᵀ = F_Hᵀ ⊗ F_Wᵀ, built explicitly so that nothing assumes the symmetry we want
    to exhibit. Meant for small images (it uses dense H×H and W×W matrices).
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x)
        h, w = x.shape[-2:]
        cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        fh = dft_matrix(h, cdtype, x.device)
        fw = dft_matrix(w, cdtype, x.device)
        xc = x.to(cdtype)
        # F[x] and Fᵀ[x] by the same dense arithmetic, with (F_H ⊗ F_W)ᵀ vec(X) = vec(F_Hᵀ X F_W) and the transposed
        # matrices built explicitly: they equal F_H, F_W to the bit (dft_matrix), so S[x] is exactly zero, not
        # merely FFT-rounding small, and a sampler with ω·S is bit-for-bit the one without (any ω)
        fh_t, fw_t = fh.transpose(0, 1).contiguous(), fw.transpose(0, 1).contiguous()
        fx = torch.einsum("kh,nchw,wl->nckl", fh, xc, fw_t)  # vec(F_H X F_Wᵀ) = (F_H ⊗ F_W) vec(X)
        ftx = torch.einsum("kh,nchw,wl->nckl", fh_t, xc, fw)  # vec(F_Hᵀ X F_W) = (F_H ⊗ F_W)ᵀ vec(X)
        return (fx - ftx).real.to(x.dtype)


class FourierSkew:
    """S = F⁻¹[s ⊙ F[·]] for a symbol s that is purely imaginary and odd: a real, skew operator.

    ``symbol`` has shape broadcastable to [C, H, W] (full H and W, corner-origin layout) and may
    be given as its imaginary part (a real tensor) or as a complex tensor with zero real part.
    """

    def __init__(self, symbol, atol: float = 1e-12):
        s = torch.as_tensor(symbol)
        if s.is_complex():
            if s.real.abs().max() > atol * max(1.0, float(s.abs().max())):
                raise ValueError("symbol must be purely imaginary (its real part is not zero)")
            s = s.imag
        s = s.to(torch.float64)
        if s.ndim < 2:
            raise ValueError(f"symbol must have shape [.., H, W], got {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError("symbol has non-finite entries")
        if (s + mirror_frequencies(s)).abs().max() > atol * max(1.0, float(s.abs().max())):
            raise ValueError("symbol must be odd, s[-k] = -s[k], for S to be real and skew-symmetric")
        self.imag = s
        self._cache: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x)
        h, w = x.shape[-2:]
        if tuple(self.imag.shape[-2:]) != (h, w):
            raise ValueError(f"symbol of shape {tuple(self.imag.shape)} does not fit images {h}×{w}")
        key = (x.dtype, x.device)
        if key not in self._cache:
            half = self.imag[..., : w // 2 + 1].to(device=x.device, dtype=x.dtype)
            self._cache[key] = torch.complex(torch.zeros_like(half), half)
        return half_plane_filter(x, self._cache[key])


def central_difference(size, axis: str = "H") -> FourierSkew:
    """Circular central difference S x = (x[·+1] − x[·−1]) / 2 along ``axis`` ("H" or "W").

    Its symbol is i·sin(2πk/n): imaginary and odd, so S is real and skew-symmetric.
    """
    h, w = size_pair(size)
    if axis not in ("H", "W"):
        raise ValueError(f"axis must be 'H' or 'W', got {axis!r}")
    kh, kw = frequency_grid(h, w)
    k, n = (kh, h) if axis == "H" else (kw, w)
    sym = torch.sin(2 * math.pi * k / n).expand(h, w)
    # for even n the Nyquist bin gives sin(±π) ≈ ±1e-16; make it exactly 0 so that s is odd
    sym = torch.where(sym.abs() < 1e-12, torch.zeros_like(sym), sym)
    return FourierSkew(sym.clone())


class MatrixSkew:
    """S = B − Bᵀ for a real square matrix B of size C·H·W, acting on flattened images."""

    def __init__(self, B):
        b = torch.as_tensor(B)
        if b.is_complex():
            raise TypeError("B must be real")
        b = b.to(torch.float64)
        if b.ndim != 2 or b.shape[0] != b.shape[1]:
            raise ValueError(f"B must be a square matrix, got shape {tuple(b.shape)}")
        if not torch.isfinite(b).all():
            raise ValueError("B has non-finite entries")
        self.S = b - b.T

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x)
        d = x[0].numel()
        if d != self.S.shape[0]:
            raise ValueError(f"S is {self.S.shape[0]}×{self.S.shape[0]} but images have C·H·W = {d}")
        s = self.S.to(device=x.device, dtype=x.dtype)
        return (x.reshape(x.shape[0], -1) @ s.T).reshape(x.shape)
