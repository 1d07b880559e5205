"""The exact score of a real image set, :class:`EmpiricalScore` — the noised empirical distribution, streamed in
blocks with float64 where float32 would lose the weights — and :func:`data_fingerprint`, what a score's stored
image set is known by (the local score machines of :mod:`pds.models.local_score` use both)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from pds.fingerprint import DATA_RTOL, RTOL, Approx, Fingerprint, fingerprint
from pds.scores import check_sigma

__all__ = ["EmpiricalScore", "OnlineSoftmax", "data_fingerprint"]

class OnlineSoftmax:
    """Σ_i w_i·v_i / Σ_i w_i with w_i = e^{l_i}, over logits that arrive in chunks (the online log-sum-exp): the
    running maximum m, Σ e^{l−m} and Σ e^{l−m}·v in float64. :meth:`add` merges a chunk given by its own maximum, sum
    and weighted sum, each side rescaled to the new maximum (e^{m_old − m_new}, e^{top − m_new}); the sum's shape is
    the batch's (and pixels'), the values' may have one more axis after the batch axis. Used by
    :class:`EmpiricalScore` and the local machines of :mod:`pds.models.local_score`."""

    def __init__(self, shape, value_shape, device):
        self.max = torch.full(tuple(shape), -math.inf, dtype=torch.float64, device=device)
        self.sum = torch.zeros_like(self.max)
        self.acc = torch.zeros(tuple(value_shape), dtype=torch.float64, device=device)

    def _to_values(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.acc.ndim == t.ndim else t.unsqueeze(1)

    def add(self, top: torch.Tensor, total: torch.Tensor, weighted: torch.Tensor) -> None:
        """Merge a chunk: ``top`` its maximum, ``total`` = Σ e^{l−top}, ``weighted`` = Σ e^{l−top}·v."""
        new = torch.maximum(self.max, top.double())
        old, here = torch.exp(self.max - new), torch.exp(top.double() - new)  # old is 0 at the first chunk
        self.sum = self.sum * old + total * here
        self.acc.mul_(self._to_values(old)).add_(weighted.to(torch.float64) * self._to_values(here))
        self.max = new

    def mean(self) -> torch.Tensor:
        """Σ w·v / Σ w."""
        return self.acc / self._to_values(self.sum)

    def log_sum(self) -> torch.Tensor:
        """log Σ_i e^{l_i}."""
        return self.max + torch.log(self.sum)


_DATA_FINGERPRINTS: dict[str, Fingerprint] = {}  # by the SHA-256 of the stored values: a set summarised once


def data_fingerprint(score) -> Fingerprint:
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
    those rows; otherwise the ``k`` nearest candidates found in the pass are measured again in float64 as ‖x − x_i‖²
    (sums of squares: no cancellation) and the weights are the float64 softmax over them; candidates beyond the k-th
    weigh less than e^-40 relative to the nearest when its logit gap exceeds 40, and a row where it does not is
    computed again over the whole set in float64.

    Weighted sets, averaged values (for patch machines: :class:`pds.models.local_score.LocalScore`): ``counts`` [N]
    gives each image a multiplicity m_i (w = softmax_i(log m_i − ‖x − x_i‖²/(2σ²)): the set with image i repeated m_i
    times, so identical images can be stored once), and ``values`` [N, V] makes :meth:`posterior_mean` return
    Σ_i w_i v_i [B, V] instead of Σ_i w_i x_i (e.g. only a patch's centre pixel); the score then needs the images
    themselves (``values=None``).

    ``images``: [N, C, H, W] (any float dtype; stored in ``dtype`` on ``device``; a chunk holds at most ``chunk`` images
    and at most 2^24 values). Memory: the set in ``dtype`` plus per call a B × chunk block of logits and weights, the
    B × D float64 accumulators and a B × D product, and the refinement's float64 candidates (at most 64 MB); see
    :meth:`peak_bytes` (and ``benchmarks/README.md`` for measured high-water marks).
    """

    def __init__(self, images: torch.Tensor, dtype=torch.float32, device=None, chunk: int = 4096, k: int = 32,
                 tol: float = 1e-3, counts: torch.Tensor | None = None, values: torch.Tensor | None = None):
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
        self.counts, self.V = None, self.X
        self._logc = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        if counts is not None:
            counts = torch.as_tensor(counts, device=self.device)
            if counts.shape != (self.n,) or not bool((counts > 0).all()):
                raise ValueError(f"counts must be {self.n} positive multiplicities (one per image), got shape "
                                 f"{tuple(counts.shape)}")
            self.counts, self._logc = counts.double(), counts.double().log()
        if values is not None:
            if not isinstance(values, torch.Tensor) or values.ndim != 2 or len(values) != self.n:
                raise ValueError(f"values must be a tensor [N = {self.n}, V] (one row per image), got "
                                 f"{tuple(getattr(values, 'shape', ()))}")
            self.V = values.to(device=self.device, dtype=dtype).contiguous()

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.shape))}], got "
                             f"{tuple(getattr(x, 'shape', ()))}")
        return x.reshape(len(x), -1).to(device=self.device)

    def _stream(self, flat: torch.Tensor, s: torch.Tensor, topk: bool, exact: bool = False):
        """One pass over the set: the posterior mean (float64), the log-sum-exp of the logits (float64), and, with
        ``topk``, the k smallest approximate distances of each row and their indices. ``exact``: in float64.

        The logits are computed without the row constant −‖x‖²/(2σ²), which cancels in the weights (it is added back
        to the log-sum-exp): (2x·x_i − ‖x_i‖²)/(2σ²), one fused product per chunk. Logits more than 80 below a row's
        chunk's maximum are clamped there before the exponential (their weights, below e^-80 relative, would
        otherwise be float32 denormals, which are slow); what they contribute is below N·e^-80 relative."""
        sq, dtype = (self.sq, torch.float64) if exact else (self._sq, self.dtype)
        B = flat.shape[0]
        xc = flat.to(dtype)
        xx = (flat.double() ** 2).sum(1)
        inv = (0.5 / s**2).to(dtype)[:, None]  # 1 / (2σ²)
        soft = OnlineSoftmax((B,), (B, self.V.shape[1]), self.device)
        best_d = best_i = None
        for start in range(0, self.n, self.chunk):
            Xc = self._exact_rows(start) if exact else self.X[start : start + self.chunk]
            logits = torch.addmm(sq[None, start : start + self.chunk], xc, Xc.T, beta=-1, alpha=2).mul_(inv)
            if self.counts is not None:
                logits.add_(self._logc[None, start : start + self.chunk].to(logits.dtype))
            if topk:  # the k nearest so far (largest logits), from approximate distances
                cat_l = logits if best_d is None else torch.cat([best_d, logits], dim=1)
                idx = torch.arange(start, start + len(Xc), device=self.device).expand(B, -1)
                cat_i = idx if best_i is None else torch.cat([best_i, idx], dim=1)
                best_d, pos = torch.topk(cat_l, min(self.k, cat_l.shape[1]), dim=1)
                best_i = torch.gather(cat_i, 1, pos)
            top = logits.amax(dim=1)
            w = logits.sub_(top[:, None]).clamp_(min=-80.0).exp_()
            Vc = Xc if self.V is self.X else self.V[start : start + self.chunk].to(Xc.dtype)
            soft.add(top, w.sum(dim=1, dtype=torch.float64), w @ Vc)
        return soft.mean(), soft.log_sum() - xx * (0.5 / s**2), best_d, best_i

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
            if self.counts is not None:
                logits = logits + self._logc[cand[a : a + per]]
            top = logits.max(dim=1, keepdim=True).values
            w = torch.exp(logits - top)
            total = w.sum(1, keepdim=True)
            Vk = Xk if self.V is self.X else self.V[cand[a : a + per]]
            means.append(torch.bmm((w / total).to(self.dtype)[:, None, :], Vk)[:, 0].double())
            lses.append(top[:, 0] + torch.log(total[:, 0]))
            covered.append((top[:, 0] - logits.min(dim=1).values > 40.0) | (cand.shape[1] >= self.n))
        return torch.cat(means), torch.cat(lses), torch.cat(covered)

    def _compute(self, x: torch.Tensor, sigma):
        flat, s = self._flat(x), check_sigma(x, sigma).to(self.device)
        if (s <= 0).any():
            raise ValueError("sigma must be > 0 for the score of the empirical distribution (at σ = 0 it is a sum of "
                             "point masses)")
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
        """E[x_0 | x] = Σ_i w_i x_i (the denoiser D(x, σ)), with x's shape and dtype; with ``values``, Σ_i w_i v_i
        [B, V]."""
        _, _, mean, _ = self._compute(x, sigma)
        shape = x.shape if self.V is self.X else (len(x), self.V.shape[1])
        return mean.reshape(shape).to(device=x.device, dtype=x.dtype)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇log p_σ(x) = (Σ_i w_i x_i − x)/σ², with x's shape and dtype."""
        if self.V is not self.X:
            raise ValueError("this EmpiricalScore averages other values than its images (values=...): it has no score; "
                             "build it without values")
        flat, s, mean, _ = self._compute(x, sigma)
        score = (mean - flat.double()) / (s**2)[:, None]
        return score.reshape(x.shape).to(device=x.device, dtype=x.dtype)

    def log_density(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """log p_σ(x) per sample (float64): logsumexp_i(−‖x − x_i‖²/(2σ²)) − log N − (D/2)·log(2πσ²)."""
        flat, s, _, lse = self._compute(x, sigma)
        D = flat.shape[1]
        total = self.n if self.counts is None else float(self.counts.sum())
        return lse - math.log(total) - 0.5 * D * torch.log(2 * math.pi * s**2)

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

    def data_fingerprint(self) -> Fingerprint:
        """The set's values (:mod:`pds.fingerprint`, compared to float32 rounding): what the score is a function of
        (computed once: the stored set does not change)."""
        return data_fingerprint(self)

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
