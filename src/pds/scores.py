"""Score models: the interface and exact Gaussian oracles.

A score model is any callable ``score(x, sigma) -> tensor`` with ``x`` of shape [N, C, H, W] and
``sigma`` a tensor of shape [N] (the noise level of each sample); it returns ∇ log p_σ(x), the
score of the data distribution convolved with N(0, σ²I), with the shape of ``x``.

The oracles here are exact for Gaussian data, so samplers can be checked against closed forms:

* :class:`GaussianScore` — N(μ, Σ) with a full covariance (small images and toys).
* :class:`StationaryGaussianScore` — a Gaussian field whose covariance is diagonal in the 2-D
  Fourier basis of each channel (a stationary field with a power spectrum), at any size.

The exact score of a finite image set is :class:`pds.empirical.EmpiricalScore`.
"""

from __future__ import annotations

import numpy as np
import torch

from pds.filters import streamed_mean
from pds.fourier import half_plane_filter, mirror_frequencies, power_spectrum, radius_squared
from pds.precondition import operator_matrix
from pds.schedules import sigma_per_sample

__all__ = ["GaussianScore", "StationaryGaussianScore", "check_sigma",
           "fit_power_law", "power_law_field"]


def check_sigma(x: torch.Tensor, sigma) -> torch.Tensor:
    """Validate a batch and its noise levels; return sigma as a float64 tensor of shape [N]."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a tensor of shape [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    s = sigma_per_sample(x, sigma, torch.float64)
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must have shape [N] = [{x.shape[0]}], got {tuple(s.shape)}")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("sigma must be finite and >= 0")
    return s


class GaussianScore:
    """Exact score of N(mean, cov + σ²I) for data N(mean, cov) of shape [C, H, W].

    ``cov`` is the d×d covariance (d = C·H·W, row-major flattening); it is eigendecomposed once.
    Computations are in float64; outputs take the input's dtype.
    """

    def __init__(self, mean, cov):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        if mean.ndim != 3:
            raise ValueError(f"mean must have shape [C, H, W], got {tuple(mean.shape)}")
        d = mean.numel()
        cov = torch.as_tensor(cov, dtype=torch.float64)
        if cov.shape != (d, d):
            raise ValueError(f"cov must be {d}×{d} for a mean of shape {tuple(mean.shape)}, got {tuple(cov.shape)}")
        if not torch.isfinite(cov).all() or not torch.allclose(cov, cov.T, atol=1e-10 * float(cov.abs().max())):
            raise ValueError("cov must be finite and symmetric")
        evals, evecs = torch.linalg.eigh(cov)
        if evals.min() < -1e-10 * float(evals.abs().max()):
            raise ValueError(f"cov must be positive semi-definite (smallest eigenvalue {float(evals.min()):.3g})")
        self.mean, self.cov = mean, cov
        self.evals, self.evecs = evals.clamp(min=0.0), evecs
        self.shape = tuple(mean.shape)

    @classmethod
    def from_images(cls, images: torch.Tensor, batch_size: int = 1024) -> GaussianScore:
        """The Gaussian of an image set [N, C, H, W]: its mean and its covariance Σ (x_i − mean)(x_i − mean)ᵀ/(N − 1),
        in float64; its score is the optimal linear (Wiener) denoiser's, D = mean + Σ(Σ + σ²I)⁻¹(x − mean)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) < 2:
            raise ValueError(f"images must be a tensor [N ≥ 2, C, H, W], got {tuple(getattr(images, 'shape', ()))}")
        mean, _ = streamed_mean(images, lambda b: b, batch_size)
        flat, m = images.reshape(len(images), -1), mean.reshape(-1)
        cov = sum((b.double() - m).T @ (b.double() - m) for b in flat.split(batch_size))
        return cls(mean, 0.5 * (cov + cov.T) / (len(images) - 1))

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = check_sigma(x, sigma)
        diff = (x.to(torch.float64) - self.mean.to(x.device)).reshape(x.shape[0], -1)
        U = self.evecs.to(x.device)
        coef = (diff @ U) / (self.evals.to(x.device)[None, :] + s[:, None] ** 2)
        return (-(coef @ U.T)).reshape(x.shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.evals.numel(), generator=generator, dtype=torch.float64)
        x = (z * self.evals.sqrt()) @ self.evecs.T
        return x.reshape(n, *self.shape) + self.mean


class StationaryGaussianScore:
    """A stationary Gaussian field: covariance diagonal in the 2-D Fourier basis of each channel.

    Parameters
    ----------
    mean:
        mean image [C, H, W].
    power_spectrum:
        E|F[x − mean]|² of the *unnormalised* 2-D DFT (``torch.fft.fft2``), [C, H, W], corner origin,
        Hermitian-symmetric (it is symmetrised). The covariance eigenvalues are
        ``spectrum = power_spectrum / (H·W)``: the variance of each coefficient of the unitary DFT.

    The score of every noise level is exact: ∇log p_σ(x) = −F⁻¹[F[x − mean] / (spectrum + σ²)],
    computed with real FFTs at any size. :meth:`sample` draws exactly from the target.
    """

    def __init__(self, mean, power_spectrum):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        ps = torch.as_tensor(power_spectrum, dtype=torch.float64)
        if mean.ndim != 3:
            raise ValueError(f"mean must have shape [C, H, W], got {tuple(mean.shape)}")
        if ps.ndim == 2:
            ps = ps.expand(mean.shape[0], *ps.shape)
        if ps.shape != mean.shape:
            raise ValueError(f"power_spectrum must have shape {tuple(mean.shape)}, got {tuple(ps.shape)}")
        if not torch.isfinite(ps).all() or (ps < 0).any():
            raise ValueError("power_spectrum must be finite and >= 0")
        ps = 0.5 * (ps + mirror_frequencies(ps))
        h, w = mean.shape[-2:]
        self.mean = mean
        self.spectrum = ps / (h * w)
        self.shape = tuple(mean.shape)
        self._cache: dict = {}

    @classmethod
    def from_images(cls, images, batch_size: int = 64) -> StationaryGaussianScore:
        """Fit mean image and E|F[x − mean]|² = E|F[x]|² − |F[mean]|² from images [N, C, H, W]."""
        mean, _ = streamed_mean(images, lambda b: b, batch_size)
        power, _ = streamed_mean(images, power_spectrum, batch_size)
        ps = (power - torch.fft.fft2(mean).abs() ** 2).clamp(min=0.0)
        return cls(mean, ps)

    def expected_power(self) -> torch.Tensor:
        """E|F[x]|² of the unnormalised DFT, [C, H, W]: the statistic inside Eq. 14, exactly."""
        h, w = self.shape[-2:]
        return self.spectrum * (h * w) + torch.fft.fft2(self.mean).abs() ** 2

    def _tables(self, device, dtype):
        key = (device, dtype)
        if key not in self._cache:
            w = self.shape[-1]
            self._cache[key] = (
                self.mean.to(device=device, dtype=dtype),
                self.spectrum[..., : w // 2 + 1].to(device=device, dtype=dtype),
            )
        return self._cache[key]

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = check_sigma(x, sigma)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have [C, H, W] = {self.shape}, got {tuple(x.shape[1:])}")
        dtype = x.dtype
        mean, spec = self._tables(x.device, dtype)
        var = spec[None] + (s.to(dtype) ** 2)[:, None, None, None]
        h, w = self.shape[-2:]
        return -torch.fft.irfft2(torch.fft.rfft2(x - mean) / var, s=(h, w))  # a division: exact, not × 1/var

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
        """Exact samples: mean + F⁻¹[√spectrum · F[z]], z white."""
        z = torch.randn(n, *self.shape, generator=generator, dtype=dtype)
        mean, spec = self._tables(z.device, dtype)
        return mean + half_plane_filter(z, spec.sqrt())

    def covariance(self) -> np.ndarray:
        """The dense covariance matrix (small sizes only; for tests)."""
        c, h, w = self.shape
        d = c * h * w
        if d > 4096:
            raise ValueError(f"dense covariance of size {d}×{d} is too large")
        return operator_matrix(lambda x: torch.fft.ifft2(torch.fft.fft2(x) * self.spectrum).real, self.shape)


def fit_power_law(target: StationaryGaussianScore) -> dict:
    """Fit s(k) = A / (|k|² + k0²)^(β/2) to a stationary target's spectrum, per channel (log least squares).

    ``k`` is the integer frequency (bins); the DC coefficient (the mean's fluctuation) is excluded
    from the fit and returned separately. Returns arrays A, beta, k0 (one per channel), dc, size.
    The fit runs to convergence (analytic Jacobian, tolerances 1e-15): with scipy's default tolerances (1e-8) it
    stopped where the last bits of the spectrum sent it, and k0 moved by 1e-6 between two float kernel sets;
    converged, the parameters agree to the last bit or two.
    """
    from scipy.optimize import least_squares

    c, h, w = target.shape
    k2 = radius_squared(h, w).numpy().ravel()
    mask = k2 > 0
    k2 = k2[mask]
    out = {"A": [], "beta": [], "k0": [], "dc": [], "size": (h, w)}
    for ch in range(c):
        logs = np.log(target.spectrum[ch].numpy().ravel()[mask])

        def resid(p, logs=logs):
            log_a, beta, log_k0 = p
            return log_a - 0.5 * beta * np.log(k2 + np.exp(2 * log_k0)) - logs

        def jac(p):
            _, beta, log_k0 = p
            e = np.exp(2 * log_k0)
            return np.stack([np.ones_like(k2), -0.5 * np.log(k2 + e), -beta * e / (k2 + e)], axis=1)

        p = least_squares(resid, x0=[float(logs.max()), 2.0, 0.0], jac=jac, ftol=1e-15, xtol=1e-15, gtol=1e-15).x
        for _ in range(5):  # Gauss-Newton at the minimum: its fixed point is set by the gradient, not the flat cost
            p = p + np.linalg.lstsq(jac(p), -resid(p), rcond=None)[0]
        out["A"].append(float(np.exp(p[0])))
        out["beta"].append(float(p[1]))
        out["k0"].append(float(np.exp(p[2])))
        out["dc"].append(float(target.spectrum[ch, 0, 0]))
    return {k: (np.asarray(v) if k != "size" else v) for k, v in out.items()}


def power_law_field(fit: dict, size: int, mean) -> StationaryGaussianScore:
    """A stationary target at ``size``×``size`` from :func:`fit_power_law` parameters.

    Model: the same scene content seen at a finer sampling of the same field of view, so frequency
    bin k keeps its physical frequency and the unitary-DFT variance scales with the pixel count:
    s'(k) = (size/size₀)² · A / (|k|² + k0²)^(β/2), and DC likewise. ``mean`` is one value per channel.
    A model, not data: the notebooks say where it replaces measured statistics.
    """
    h0, w0 = fit["size"]
    scale = (size * size) / (h0 * w0)
    k2 = radius_squared(size, size)
    spec = []
    for A, beta, k0, dc in zip(fit["A"], fit["beta"], fit["k0"], fit["dc"], strict=True):
        s = scale * A / (k2 + k0**2) ** (beta / 2)
        s[0, 0] = scale * dc
        spec.append(s)
    spectrum = torch.stack(spec)
    mean_img = torch.as_tensor(np.asarray(mean, dtype=np.float64)).reshape(-1, 1, 1).expand(len(spec), size, size)
    return StationaryGaussianScore(mean_img.clone(), spectrum * size * size)
