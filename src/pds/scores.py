"""Score models: the interface and exact Gaussian oracles.

A score model is any callable ``score(x, sigma) -> tensor`` with ``x`` of shape [N, C, H, W] and
``sigma`` a tensor of shape [N] (the noise level of each sample); it returns ∇ log p_σ(x), the
score of the data distribution convolved with N(0, σ²I), with the shape of ``x``.

The oracles here are exact for Gaussian data, so samplers can be checked against closed forms:

* :class:`GaussianScore` — N(μ, Σ) with a full covariance (small images and toys).
* :class:`StationaryGaussianScore` — a Gaussian field whose covariance is diagonal in the 2-D
  Fourier basis of each channel (a stationary field with a power spectrum), at any size.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from pds.filters import streamed_mean
from pds.fingerprint import DATA_RTOL, RTOL, Approx, Fingerprint, fingerprint
from pds.fourier import mirror_frequencies, power_spectrum, radius_squared
from pds.precondition import operator_matrix

__all__ = ["GaussianScore", "StationaryGaussianScore", "EmpiricalScore", "LocalScore", "PatchSchedule", "check_sigma",
           "fit_power_law", "power_law_field"]


def check_sigma(x: torch.Tensor, sigma) -> torch.Tensor:
    """Validate a batch and its noise levels; return sigma as a float64 tensor of shape [N]."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a tensor of shape [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
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
        return -torch.fft.irfft2(torch.fft.rfft2(x - mean) / var, s=(h, w))

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
        """Exact samples: mean + F⁻¹[√spectrum · F[z]], z white."""
        z = torch.randn(n, *self.shape, generator=generator, dtype=dtype)
        mean, spec = self._tables(z.device, dtype)
        h, w = self.shape[-2:]
        return mean + torch.fft.irfft2(torch.fft.rfft2(z) * spec.sqrt(), s=(h, w))

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


_DATA_FINGERPRINTS: dict[str, Fingerprint] = {}  # by the SHA-256 of the stored values: a set summarised once


def _data_fingerprint(score) -> Fingerprint:
    """The fingerprint of a score's stored image set (``X``, ``shape``, ``n``), computed once per score, and once per
    process for the same stored values (found by their SHA-256: hashing 60 000 images takes a fortieth of the time
    of summarising them)."""
    if getattr(score, "_data_fp", None) is None:
        X = score.X.detach()
        h = hashlib.sha256(repr((list(score.shape), score.n, str(X.dtype), tuple(X.shape))).encode())
        flat = X.reshape(-1)
        for a in range(0, len(flat), 2**24):
            h.update(flat[a : a + 2**24].cpu().numpy().tobytes())
        key = h.hexdigest()
        if key not in _DATA_FINGERPRINTS:
            if len(_DATA_FINGERPRINTS) >= 16:
                _DATA_FINGERPRINTS.pop(next(iter(_DATA_FINGERPRINTS)))
            _DATA_FINGERPRINTS[key] = fingerprint("image set", list(score.shape), score.n, Approx(X, DATA_RTOL))
        score._data_fp = _DATA_FINGERPRINTS[key]
    return score._data_fp


class EmpiricalScore:
    """The exact score of a real image set: the noised empirical distribution p_σ = (1/N) Σ_i N(x_i, σ²I).

    ∇log p_σ(x) = (Σ_i w_i(x)·x_i − x)/σ² with w = softmax_i(−‖x − x_i‖²/(2σ²)); the denoiser is the posterior mean
    Σ_i w_i x_i (:meth:`posterior_mean`), the score ``(posterior_mean − x)/σ²`` (Tweedie). A sampler run on it has no
    model error: it ends on training images (it memorises, by design), and every departure is the sampler's.

    Computation, streamed over the set in chunks of ``chunk`` images so that memory stays bounded: per chunk one product
    G = x·X_cᵀ gives the squared distances ‖x‖² − 2G + ‖x_i‖², an online log-sum-exp keeps each row's running maximum
    and (in float64) its sum of weights, and a second product w·X_c accumulates the posterior mean (in float64),
    rescaled whenever a row's maximum moves. Both products run in ``dtype`` (float32 by default; float64 makes every
    step exact to rounding).

    Where float32 would lose the weights: the distances carry an absolute error of about ε·(‖x‖² + ‖x_i‖²) (the
    cancellation in ‖x‖² − 2G + ‖x_i‖², ε the dtype's precision), which becomes a logit error once divided by 2σ². For
    the rows where that bound exceeds ``tol`` (small σ), a small set (N ≤ 10k) is simply passed again in float64 for
    those rows; otherwise the ``k`` nearest candidates found in the pass are measured
    again in float64 as ‖x − x_i‖² (sums of squares: no cancellation) and the weights are the float64 softmax over
    them; candidates
    beyond the k-th weigh less than e^-40 relative to the nearest when its logit gap exceeds 40, and a row where it does
    not is computed again over the whole set in float64.

    ``images``: [N, C, H, W] (any float dtype; stored in ``dtype`` on ``device``; a chunk holds at most ``chunk`` images
    and at most 2^24 values). Memory: the set in ``dtype`` plus per call a B × chunk block of logits and weights, the
    B × D float64 accumulators and a B × D product, and the refinement's float64 candidates (at most 64 MB); see
    :meth:`peak_bytes` (and ``benchmarks/README.md`` for measured high-water marks).
    """

    def __init__(self, images: torch.Tensor, dtype=torch.float32, device=None, chunk: int = 4096, k: int = 32,
                 tol: float = 1e-3):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) < 1:
            raise ValueError(f"images must be a non-empty tensor [N, C, H, W], got {getattr(images, 'shape', images)}")
        if not torch.is_floating_point(images):
            raise ValueError(f"images must be floating-point values, got {images.dtype}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if int(chunk) != chunk or chunk < 1 or int(k) != k or k < 1 or not tol > 0:
            raise ValueError(f"chunk and k must be positive integers and tol > 0, got {chunk}, {k}, {tol}")
        self.shape = tuple(images.shape[1:])
        self.n, D = len(images), int(np.prod(self.shape))
        # rows per chunk: at most ``chunk``, and at most 2^24 values (64 MB in float32) whatever the image size
        self.chunk = int(max(1, min(chunk, 2**24 // D)))
        self.dtype, self.k, self.tol = dtype, int(min(k, len(images))), float(tol)
        self.device = torch.device(device) if device is not None else images.device
        self.X = images.reshape(self.n, -1).to(device=self.device, dtype=dtype).contiguous()
        rows = max(1, 2**20 // D)  # small blocks: no float64 copy of the set, even for a moment
        blocks = [self.X[a : a + rows] for a in range(0, self.n, rows)]
        if not all(bool(torch.isfinite(b).all()) for b in blocks):
            raise ValueError("images must be finite (NaN or inf found)")
        self.sq = torch.cat([(b.double() ** 2).sum(1) for b in blocks])  # ‖x_i‖² in float64, exact for stored values
        self._sq = self.sq.to(dtype)
        self._X64 = None

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.shape))}], got "
                             f"{tuple(getattr(x, 'shape', ()))}")
        return x.reshape(len(x), -1).to(device=self.device)

    def _sigma(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = check_sigma(x, sigma).to(self.device)
        if (s <= 0).any():
            raise ValueError("sigma must be > 0 for the score of the empirical distribution (at σ = 0 it is a sum of "
                             "point masses)")
        return s

    def _stream(self, flat: torch.Tensor, s: torch.Tensor, topk: bool, exact: bool = False):
        """One pass over the set: the posterior mean (float64), the log-sum-exp of the logits (float64), and, with
        ``topk``, the k smallest approximate distances of each row and their indices. ``exact``: in float64.

        The logits are computed without the row constant −‖x‖²/(2σ²), which cancels in the weights (it is added back
        to the log-sum-exp): (2x·x_i − ‖x_i‖²)/(2σ²), one fused product per chunk. Logits more than 80 below a row's
        running maximum are clamped there before the exponential (their weights, below e^-80 relative, would
        otherwise be float32 denormals, which are slow); what they contribute is below N·e^-80 relative."""
        sq, dtype = (self.sq, torch.float64) if exact else (self._sq, self.dtype)
        B = flat.shape[0]
        xc = flat.to(dtype)
        xx = (flat.double() ** 2).sum(1)
        inv = (0.5 / s**2).to(dtype)[:, None]  # 1 / (2σ²)
        run_max = torch.full((B,), -math.inf, dtype=torch.float64, device=self.device)
        run_sum = torch.zeros(B, dtype=torch.float64, device=self.device)
        acc = torch.zeros(B, flat.shape[1], dtype=torch.float64, device=self.device)
        best_d = best_i = None
        for start in range(0, self.n, self.chunk):
            Xc = self._exact_rows(start) if exact else self.X[start : start + self.chunk]
            logits = torch.addmm(sq[None, start : start + self.chunk], xc, Xc.T, beta=-1, alpha=2).mul_(inv)
            new_max = torch.maximum(run_max, logits.amax(dim=1).double())
            scale = torch.exp(run_max - new_max)  # 0 for the first chunk (exp(−inf))
            if topk:  # the k nearest so far (largest logits), from approximate distances
                cat_l = logits if best_d is None else torch.cat([best_d, logits], dim=1)
                idx = torch.arange(start, start + len(Xc), device=self.device).expand(B, -1)
                cat_i = idx if best_i is None else torch.cat([best_i, idx], dim=1)
                best_d, pos = torch.topk(cat_l, min(self.k, cat_l.shape[1]), dim=1)
                best_i = torch.gather(cat_i, 1, pos)
            w = logits.sub_(new_max.to(dtype)[:, None]).clamp_(min=-80.0).exp_()
            run_sum = run_sum * scale + w.sum(dim=1, dtype=torch.float64)
            acc.mul_(scale[:, None]).add_(w @ Xc)  # in place: one B × D temporary in dtype
            run_max = new_max
        lse = run_max + torch.log(run_sum) - xx * (0.5 / s**2)
        return acc / run_sum[:, None], lse, best_d, best_i

    def _exact_rows(self, start: int) -> torch.Tensor:
        """Rows ``start … start + chunk`` of the set in float64: from a float64 copy kept when it fits in 256 MB (small
        sets, where the exact pass replaces the candidate refinement), else converted on the fly."""
        if self.dtype == torch.float64:
            return self.X[start : start + self.chunk]
        if self._X64 is None and self.X.numel() * 8 <= 2**28:
            self._X64 = self.X.double()
        src = self._X64 if self._X64 is not None else self.X
        return src[start : start + self.chunk].double()

    def _refine_rows(self, flat: torch.Tensor, s: torch.Tensor, cand: torch.Tensor):
        """Accurate weights over each row's candidates: (posterior mean, log-sum-exp, whether the candidates cover every
        non-negligible weight). The distances are sums of squared differences in float64 (no cancellation: every
        term is positive), so their relative error is float64's, whatever σ; so are the weights and the
        log-sum-exp; the weighted sum of the candidates is a product in the stored dtype. Rows go in small groups (at
        most 2^20 gathered values) whose buffers the allocator reuses."""
        x64 = flat.double()
        means, lses, covered = [], [], []
        per = max(1, int(2**20 // max(1, cand.shape[1] * x64.shape[1])))  # rows per group: small, reused buffers
        for a in range(0, len(x64), per):
            Xk = self.X[cand[a : a + per]]  # [b, k, D]: the stored values
            d = torch.sub(x64[a : a + per, None, :], Xk).square_().sum(-1)  # the differences in float64
            logits = -d / (2.0 * s[a : a + per, None] ** 2)
            top = logits.max(dim=1, keepdim=True).values
            w = torch.exp(logits - top)
            total = w.sum(1, keepdim=True)
            means.append(torch.bmm((w / total).to(self.dtype)[:, None, :], Xk)[:, 0].double())
            lses.append(top[:, 0] + torch.log(total[:, 0]))
            covered.append((top[:, 0] - logits.min(dim=1).values > 40.0) | (cand.shape[1] >= self.n))
        return torch.cat(means), torch.cat(lses), torch.cat(covered)

    def _compute(self, x: torch.Tensor, sigma):
        flat, s = self._flat(x), self._sigma(x, sigma)
        eps = torch.finfo(self.dtype).eps
        bound = 8 * eps * ((flat.double() ** 2).sum(1) + float(self.sq.max())) / (2 * s**2)
        rows = bound > self.tol
        small = self.n <= 10 * self.k  # a small set: one float64 pass costs less than gathering candidates
        mean, lse, _, cand = self._stream(flat, s, topk=bool(rows.any()) and not small)
        if rows.any():
            r = rows.nonzero()[:, 0]
            if small:
                m, l, _, _ = self._stream(flat[r], s[r], topk=False, exact=True)
            else:
                m, l, ok = self._refine_rows(flat[r], s[r], cand[r])
                if not ok.all():
                    bad = r[~ok]
                    m[~ok], l[~ok], _, _ = self._stream(flat[bad], s[bad], topk=False, exact=True)
            mean[r], lse[r] = m, l
        return flat, s, mean, lse

    # -- the interface ----------------------------------------------------------------------------------------------
    def posterior_mean(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x_0 | x] = Σ_i w_i x_i (the denoiser D(x, σ)), with x's shape and dtype."""
        _, _, mean, _ = self._compute(x, sigma)
        return mean.reshape(x.shape).to(device=x.device, dtype=x.dtype)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇log p_σ(x) = (Σ_i w_i x_i − x)/σ², with x's shape and dtype."""
        flat, s, mean, _ = self._compute(x, sigma)
        score = (mean - flat.double()) / (s**2)[:, None]
        return score.reshape(x.shape).to(device=x.device, dtype=x.dtype)

    def log_density(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """log p_σ(x) per sample (float64): logsumexp_i(−‖x − x_i‖²/(2σ²)) − log N − (D/2)·log(2πσ²)."""
        flat, s, _, lse = self._compute(x, sigma)
        D = flat.shape[1]
        return lse - math.log(self.n) - 0.5 * D * torch.log(2 * math.pi * s**2)

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, Euclidean distance) of the image of the set nearest to each sample; the ``k`` best candidates of
        the fast pass are measured again in float64."""
        flat = self._flat(x)
        xc, xx = flat.to(self.dtype), (flat.double() ** 2).sum(1).to(self.dtype)
        best_d = best_i = None
        for start in range(0, self.n, self.chunk):
            Xc = self.X[start : start + self.chunk]
            d = (xx[:, None] + self._sq[None, start : start + self.chunk]) - 2.0 * (xc @ Xc.T)
            idx = torch.arange(start, start + len(Xc), device=self.device).expand(len(flat), -1)
            cat_d = d if best_d is None else torch.cat([best_d, d], dim=1)
            cat_i = idx if best_i is None else torch.cat([best_i, idx], dim=1)
            best_d, pos = torch.topk(cat_d, min(self.k, cat_d.shape[1]), dim=1, largest=False)
            best_i = torch.gather(cat_i, 1, pos)
        x64 = flat.double()
        exact = torch.stack([((x64[b] - self.X[best_i[b]].double()) ** 2).sum(-1) for b in range(len(flat))])
        j = exact.argmin(dim=1)
        return best_i.gather(1, j[:, None])[:, 0], exact.gather(1, j[:, None])[:, 0].sqrt()

    @property
    def sha256(self) -> str:
        """SHA-256 of the stored set (its values in the stored dtype, row-major): what the score is a function of."""
        if getattr(self, "_sha", None) is None:
            h = hashlib.sha256(f"{tuple(self.X.shape)}|{self.dtype}|".encode())
            for a in range(0, self.n, self.chunk):
                h.update(self.X[a : a + self.chunk].cpu().numpy().tobytes())
            self._sha = h.hexdigest()
        return self._sha

    def data_fingerprint(self) -> Fingerprint:
        """The set's values (:mod:`pds.fingerprint`, compared to float32 rounding): what the score is a function of
        (computed once: the stored set does not change)."""
        return _data_fingerprint(self)

    def fingerprint(self) -> Fingerprint:
        """A behaviour fingerprint (:mod:`pds.fingerprint`) of this score: the set's values and settings, and what the
        code computes on a fixed tiny set — the score at three noise levels in float64 and in float32 with its
        refinement (compared to 1e-4: float32's rounding differs between machines at 1e-7 and the tiny set's
        posterior weights amplify it). A result cache keys runs with it."""
        gen = torch.Generator().manual_seed(0)
        X0 = torch.rand(24, 1, 6, 6, generator=gen, dtype=torch.float64)
        x0 = X0[:4] + 0.05 * torch.randn(4, 1, 6, 6, generator=gen, dtype=torch.float64)
        parts: list = ["EmpiricalScore", self.data_fingerprint(), self.k, self.tol]
        for dtype, rtol in ((torch.float64, RTOL), (torch.float32, 1e-4)):
            canon = EmpiricalScore(X0, dtype=dtype, chunk=5, k=4)
            for sigma in (0.01, 0.3, 3.0):
                parts.append(Approx(canon(x0.to(dtype), sigma) * sigma**2, rtol))
        return fingerprint(*parts)

    def peak_bytes(self, batch: int) -> int:
        """Memory this score holds or allocates at its peak for one call with ``batch`` samples (bytes): the stored
        set, the float64 norms, one chunk's distances, logits and weights, the float64 accumulators and the candidate
        list (the refinement's float64 candidates go in groups of at most 2^20 values, 8 MB)."""
        D, item = int(np.prod(self.shape)), torch.finfo(self.dtype).bits // 8
        chunk = min(self.chunk, self.n)
        stored = self.n * D * item + self.n * 8 * 2
        per_chunk = batch * chunk * item * 3 + batch * chunk * 8  # d, logits, w (+ the float64 sum's temporary)
        accum = batch * D * (8 + 8 + item) + batch * (self.k + chunk) * 16  # x in float64, acc, w·X_c; candidates
        return int(stored + per_chunk + accum)


class LocalScore:
    """The score of Kamb & Ganguli's local score machines (ICML 2025, arXiv 2412.20292), in VE form: a closed form with
    a CNN's inductive bias — locality and, for ELS, translation equivariance — and no training.

    Each pixel p of the denoised image is a softmax-weighted average of the centre pixels of training patches:

        D(x, σ)_p = Σ_{(i, q)} w_{iq}(p) X_i[q],   w(p) = softmax_{(i, q)}(−‖x_P(p) − X_{i,P(q)}‖² / (2σ²)),

    x_P(p) the k × k patch of x centred on p (all channels); the candidates are the same position q = p only
    (``equivariant=False``: LS, the authors' ``LocalScoreModule``) or many positions (``equivariant=True``: ELS). The
    score is (D − x)/σ² (Tweedie). Boundary: ``padding="zeros"`` (as the networks trained here pad) or ``"circular"``
    (periodic) — the two modes of the authors' calibrations. Which positions an ELS query sees, ``candidates``:

    * ``"inside"`` — the authors' rules (Kamb & Ganguli's code, ``src/utils/idealscore.py``). Circular:
      ``LocalEquivScoreModule`` — the query patch wraps around, the candidates are the patches lying fully inside a
      training image, N·(H − k + 1)·(W − k + 1) of them. Zeros: ``LocalEquivBordersScoreModule``, the
      "boundary-broken" ELS — a query patch keeps only its pixels inside the image, and its candidates are the
      positions clipped the same way (as many rows and columns cut at each edge): a pixel of the interior sees the
      fully-inside patches, one at an edge the positions at the same offset from that edge along it, one in a corner
      its own position. A padded pixel is never compared, so the padding value does not enter: shifting the images and
      x by a constant shifts D by it.
    * ``"all"`` — this project's first machine: every position of every image, N·H·W patches, each padded (zeros)
      or wrapped beyond the edges; with zeros a padded pixel counts as black, so the padding value enters (the
      same images in [−1, 1] and in [0, 1] give different D). Kept under its name for the runs made with it.

    Patch size: ``patch`` is an odd k, or a function σ ↦ k (a schedule: the paper's calibration, or one fitted here).
    Limits: LS with a patch covering the image (k ≥ 2·max(H, W) − 1, zeros) is :class:`EmpiricalScore`, and so is the
    boundary-broken ELS (every position then clipped its own way); k = 1 is each pixel's marginal posterior.

    Computation. LS: the distances ‖x_P(p)‖² + ‖X_{i,P(p)}‖² − 2⟨x_P(p), X_{i,P(p)}⟩, the first a constant of the pixel
    (it cancels in the softmax), the others box filters (k × k window sums) of Σ_c X_i² and Σ_c x·X_i: O(HW) per
    (sample, image), streamed over the set in chunks of ``chunk`` images with an online log-sum-exp. ELS: the N·H·W
    training patches are a set of small images and D_p is the centre pixel of that set's posterior mean at x_P(p) —
    :class:`EmpiricalScore` on patches (its float32 accuracy handling and streaming included), one matrix product of
    the B·H·W query patches with the N·H·W training patches, O(k²C) per (pixel, candidate). ``dtype``: float64 by
    default (exact to rounding; float32 is :class:`EmpiricalScore`'s float32).
    """

    def __init__(self, images: torch.Tensor, patch, equivariant: bool = True, padding: str = "zeros",
                 dtype=torch.float64, device=None, chunk: int = 64, candidates: str = "all"):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) < 1:
            raise ValueError(f"images must be a non-empty tensor [N, C, H, W], got {getattr(images, 'shape', images)}")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"padding must be 'zeros' or 'circular', got {padding!r}")
        if candidates not in ("all", "inside") or (candidates == "inside" and not equivariant):
            raise ValueError(f"candidates must be 'all' or 'inside' (the authors' ELS rules; an ELS machine, "
                             f"equivariant=True), got {candidates!r} with equivariant={equivariant}")
        self.candidates = candidates
        if dtype not in (torch.float32, torch.float64) or int(chunk) != chunk or chunk < 1:
            raise ValueError(f"dtype must be torch.float32 or torch.float64 and chunk a positive integer, got {dtype}, "
                             f"{chunk}")
        if not callable(patch):
            self._k(patch)
        self.patch, self.equivariant, self.padding = patch, bool(equivariant), padding
        self.dtype, self.chunk = dtype, int(chunk)
        self.device = torch.device(device) if device is not None else images.device
        self.X = images.to(device=self.device, dtype=dtype).contiguous()
        if not bool(torch.isfinite(self.X).all()):
            raise ValueError("images must be finite (NaN or inf found)")
        self.shape, self.n = tuple(images.shape[1:]), len(images)
        self._per_k: dict[int, object] = {}  # LS: the patch norms; ELS: the EmpiricalScore of the patches

    @staticmethod
    def _k(k) -> int:
        if isinstance(k, bool) or int(k) != k or k < 1 or int(k) % 2 == 0:
            raise ValueError(f"the patch size must be an odd positive integer (a centre pixel), got {k!r}")
        return int(k)

    def patch_size(self, sigma: float) -> int:
        """k at noise level ``sigma``."""
        return self._k(self.patch(float(sigma)) if callable(self.patch) else self.patch)

    def _pad(self, t: torch.Tensor, r: int) -> torch.Tensor:
        """t [M, C, H, W] extended by r pixels on each side: zeros, or periodically (the image repeats)."""
        if self.padding == "zeros":
            return torch.nn.functional.pad(t, (r, r, r, r))
        h, w = t.shape[-2:]
        iy, ix = torch.arange(-r, h + r, device=t.device) % h, torch.arange(-r, w + r, device=t.device) % w
        return t[..., iy[:, None], ix[None, :]]

    def _box(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """The k × k window sums of t [..., H, W] centred on each pixel (beyond the edges as ``padding`` says)."""
        lead, (h, w) = t.shape[:-2], t.shape[-2:]
        out = torch.nn.functional.avg_pool2d(self._pad(t.reshape(-1, 1, h, w), k // 2), k, stride=1)
        return (out * (k * k)).reshape(*lead, h, w)

    def _patches(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """Every k × k patch of t [M, C, H, W], as [M·H·W, C, k, k] (pixel-major within each image)."""
        c = t.shape[1]
        cols = torch.nn.functional.unfold(self._pad(t, k // 2), k)  # [M, C·k·k, H·W]
        return cols.transpose(1, 2).reshape(-1, c, k, k)

    def _local(self, x: torch.Tensor, sigma: float, k: int) -> torch.Tensor:
        """LS: at each pixel, the online softmax over the set's patches at that pixel, chunk by chunk."""
        if k not in self._per_k:
            self._per_k[k] = self._box((self.X**2).sum(1), k)  # ‖X_{i,P(p)}‖², [N, H, W]
        norms, inv = self._per_k[k], 0.5 / sigma**2
        run_max = torch.full((len(x), *self.shape[1:]), -math.inf, dtype=torch.float64, device=self.device)
        run_sum = torch.zeros_like(run_max)
        acc = torch.zeros(len(x), *self.shape, dtype=torch.float64, device=self.device)
        for a in range(0, self.n, self.chunk):
            Xc = self.X[a : a + self.chunk]
            cross = self._box(torch.einsum("bchw,nchw->bnhw", x, Xc), k)
            logits = ((2 * cross - norms[None, a : a + self.chunk]) * inv).double()
            new_max = torch.maximum(run_max, logits.amax(dim=1))
            scale, wts = torch.exp(run_max - new_max), torch.exp(logits - new_max[:, None])
            run_sum = run_sum * scale + wts.sum(1)
            acc = acc * scale[:, None] + torch.einsum("bnhw,nchw->bchw", wts, Xc.double())
            run_max = new_max
        return acc / run_sum[:, None]

    def _clip(self, n: int, r: int) -> list[tuple[int, int]]:
        """Per row (or column) of an axis of length n: how many rows of its window of radius r the (top, bottom) edge
        cuts."""
        return [(max(0, r - i), max(0, i + r - (n - 1))) for i in range(n)]

    def _inside(self, x: torch.Tensor, sigma: float, k: int) -> torch.Tensor:
        """ELS by the authors' rules (``candidates="inside"``): per class of positions clipped alike, the centre pixel
        of the posterior mean over the training patches at the class's positions, each compared on its in-image part
        (circular: one class, the query wrapped, the candidates the fully-inside patches)."""
        (c, h, w), r = self.shape, k // 2
        if self.padding == "circular":
            if k > min(h, w):
                raise ValueError(f"patch size {k} exceeds the {h}×{w} images: no patch lies inside an image, so the "
                                 "authors' circular ELS has no candidate (use a smaller patch)")
            classes = [((r, h - r), (r, w - r), (0, 0), (0, 0))]
        else:
            rows, cols = self._clip(h, r), self._clip(w, r)
            span = {n: {a: (clips.index(a), len(clips) - clips[::-1].index(a)) for a in clips}  # a class's positions
                    for n, clips in (("rows", rows), ("cols", cols))}
            classes = [(span["rows"][a], span["cols"][b], a, b) for a in span["rows"] for b in span["cols"]]
        out = torch.empty(len(x), c, h, w, dtype=torch.float64, device=self.device)
        for (i0, i1), (j0, j1), (top, bottom), (left, right) in classes:
            kh, kw = k - top - bottom, k - left - right  # the window's in-image part, the same for the whole class
            if self.padding == "circular":
                queries = self._patches(x, k).reshape(len(x), h * w, c, k, k)
                key = (k, "circular")
            else:
                crop = (slice(i0 - r + top, i1 - 1 + r - bottom + 1), slice(j0 - r + left, j1 - 1 + r - right + 1))
                queries = torch.nn.functional.unfold(x[:, :, crop[0], crop[1]], (kh, kw))
                queries = queries.transpose(1, 2).reshape(len(x), -1, c, kh, kw)
                key = (k, i0, j0)
            if key not in self._per_k:
                src = self.X if self.padding == "circular" else self.X[:, :, crop[0], crop[1]]
                cand = torch.nn.functional.unfold(src, (kh, kw)).transpose(1, 2).reshape(-1, c, kh, kw)
                self._per_k[key] = EmpiricalScore(cand, dtype=self.dtype, device=self.device, chunk=1024)
            flat = queries.reshape(-1, c, kh, kw)
            mean = torch.cat([self._per_k[key].posterior_mean(flat[a : a + 512], sigma)[:, :, r - top, r - left]
                              for a in range(0, len(flat), 512)]).double()
            if self.padding == "circular":
                return mean.reshape(len(x), h, w, c).permute(0, 3, 1, 2)
            out[:, :, i0:i1, j0:j1] = mean.reshape(len(x), i1 - i0, j1 - j0, c).permute(0, 3, 1, 2)
        return out

    def _equivariant(self, x: torch.Tensor, sigma: float, k: int) -> torch.Tensor:
        """ELS: the centre pixel of the posterior mean over all N·H·W training patches, at each query patch."""
        if self.candidates == "inside":
            return self._inside(x, sigma, k)
        if k not in self._per_k:  # blocks of 512 queries × 1024 candidates: 3× faster here than larger ones
            self._per_k[k] = EmpiricalScore(self._patches(self.X, k), dtype=self.dtype, device=self.device, chunk=1024)
        queries, r = self._patches(x, k), k // 2
        mean = torch.cat([self._per_k[k].posterior_mean(queries[a : a + 512], sigma)[:, :, r, r]
                          for a in range(0, len(queries), 512)])  # [B·H·W, C]
        h, w = self.shape[1:]
        return mean.double().reshape(len(x), h, w, -1).permute(0, 3, 1, 2)

    def data_fingerprint(self) -> Fingerprint:
        """The training images' values, as :meth:`EmpiricalScore.data_fingerprint`."""
        return _data_fingerprint(self)

    def fingerprint(self) -> Fingerprint:
        """A behaviour fingerprint (:mod:`pds.fingerprint`): the images, the settings, the patch size at 49 noise levels
        from 10⁻³ to 10³, and what the code computes on a fixed tiny set (LS and ELS, both boundaries, float64 and
        float32, the latter compared to 1e-4 as :meth:`EmpiricalScore.fingerprint` does). A result cache keys runs
        with it."""
        grid = [self.patch_size(float(s)) for s in np.geomspace(1e-3, 1e3, 49)]
        parts: list = ["LocalScore", self.data_fingerprint(), self.equivariant, self.padding, str(self.dtype), grid]
        if self.candidates != "all":  # the authors' rules (the machines of runs made before them keep their keys)
            parts += [self.candidates]
        gen = torch.Generator().manual_seed(0)
        X0 = torch.rand(6, 1, 5, 5, generator=gen, dtype=torch.float64)
        x0 = X0[:2] + 0.1 * torch.randn(2, 1, 5, 5, generator=gen, dtype=torch.float64)
        for dtype, rtol in ((torch.float64, RTOL), (torch.float32, 1e-4)):
            for equivariant in (False, True):
                for padding in ("zeros", "circular"):
                    canon = LocalScore(X0, 3, equivariant=equivariant, padding=padding, dtype=dtype)
                    parts += [Approx(canon.posterior_mean(x0.to(dtype), s), rtol) for s in (0.05, 0.5)]
        if self.candidates != "all":
            for padding in ("zeros", "circular"):
                canon = LocalScore(X0, 3, padding=padding, candidates=self.candidates)
                parts += [Approx(canon.posterior_mean(x0, s), RTOL) for s in (0.05, 0.5)]
        return fingerprint(*parts)

    def posterior_mean(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x, σ), with x's shape and dtype (one patch size per distinct σ in the batch)."""
        s = check_sigma(x, sigma)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.shape))}], got {tuple(x.shape)}")
        if (s <= 0).any():
            raise ValueError("sigma must be > 0 for a local score machine")
        out = torch.empty(x.shape, dtype=torch.float64, device=self.device)
        xs = x.to(device=self.device, dtype=self.dtype)
        for value in torch.unique(s).tolist():
            rows = (s == value).nonzero()[:, 0].to(self.device)
            k = self.patch_size(value)
            out[rows] = (self._equivariant if self.equivariant else self._local)(xs[rows], value, k)
        return out.to(device=x.device, dtype=x.dtype)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """(D(x, σ) − x)/σ², with x's shape and dtype."""
        s = check_sigma(x, sigma)
        d = self.posterior_mean(x, sigma).to(device=x.device, dtype=torch.float64)
        return ((d - x.double()) / (s**2)[:, None, None, None]).to(x.dtype)


class PatchSchedule:
    """A patch size per noise level from a calibration (:func:`pds.lab.network_like.calibrate_patch`): σ ↦ the k of
    the calibrated σ nearest in log σ (below the smallest and above the largest, their k). A
    :class:`LocalScore` takes it as ``patch``; ``to_dict`` / ``from_dict`` record it."""

    def __init__(self, sigmas, ks):
        sigmas, ks = list(sigmas), list(ks)
        if len(sigmas) != len(ks):
            raise ValueError(f"a patch schedule needs one k per noise level, got {len(sigmas)} levels and {len(ks)} ks")
        pairs = sorted(zip((float(s) for s in sigmas), (LocalScore._k(k) for k in ks), strict=True))
        levels = [s for s, _ in pairs]
        if not levels or not all(math.isfinite(s) and s > 0 for s in levels) or len(set(levels)) < len(levels):
            raise ValueError(f"a patch schedule needs distinct positive noise levels, one k each, got {sigmas}, {ks}")
        self.sigmas, self.ks = [s for s, _ in pairs], [k for _, k in pairs]
        self._logs = np.log(self.sigmas)

    def __call__(self, sigma: float) -> int:
        return self.ks[int(np.argmin(np.abs(self._logs - math.log(float(sigma)))))]

    def __repr__(self) -> str:
        return f"PatchSchedule({dict(zip(self.sigmas, self.ks, strict=True))})"

    def to_dict(self) -> dict:
        return {"sigmas": list(self.sigmas), "ks": list(self.ks)}

    @classmethod
    def from_dict(cls, d: dict) -> PatchSchedule:
        return cls(d["sigmas"], d["ks"])
