"""Kamb & Ganguli's local score machines (ICML 2025, arXiv 2412.20292): closed-form score models with a CNN's
inductive bias — locality (LS) and translation equivariance (ELS) — and no training; the network-like witnesses of
notebook 13. Models of a score as the networks of this package are, built from a training set instead of weights:
:class:`LocalScore` and its patch-size schedule :class:`PatchSchedule`. They use the method's exact empirical score
(:class:`pds.empirical.EmpiricalScore`) on patches."""

from __future__ import annotations

import math

import numpy as np
import torch

from pds.empirical import EmpiricalScore, OnlineSoftmax, data_fingerprint
from pds.fingerprint import RTOL, Approx, Fingerprint, fingerprint
from pds.scores import GaussianScore, check_sigma

__all__ = ["LocalScore", "PatchSchedule", "PCALocalityScore"]


def _score_of(machine, x: torch.Tensor, sigma) -> torch.Tensor:
    """(D(x, σ) − x)/σ² (Tweedie) of a machine's ``posterior_mean``, computed in float64, returned in x's dtype."""
    s = check_sigma(x, sigma)
    d = machine.posterior_mean(x, sigma).to(device=x.device, dtype=torch.float64)
    return ((d - x.double()) / (s**2)[:, None, None, None]).to(x.dtype)


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
    the B·H·W query patches with the N·H·W training patches, O(k²C) per (pixel, candidate). The authors' rules
    (``"inside"``) average only the candidates' centre pixels and, with ``dedup`` (the default), store each distinct
    candidate patch once with its multiplicity — the same softmax, exactly: the zero patches of a padded set, repeated
    textures (``benchmarks/local_score.py`` measures the gain). ``dtype``: float64 by default (exact to rounding;
    float32 is :class:`EmpiricalScore`'s float32).
    """

    def __init__(self, images: torch.Tensor, patch, equivariant: bool = True, padding: str = "zeros",
                 dtype=torch.float64, device=None, chunk: int = 64, candidates: str = "all", dedup: bool = True):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) < 1:
            raise ValueError(f"images must be a non-empty tensor [N, C, H, W], got {getattr(images, 'shape', images)}")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"padding must be 'zeros' or 'circular', got {padding!r}")
        if candidates not in ("all", "inside") or (candidates == "inside" and not equivariant):
            raise ValueError(f"candidates must be 'all' or 'inside' (the authors' ELS rules; an ELS machine, "
                             f"equivariant=True), got {candidates!r} with equivariant={equivariant}")
        self.candidates, self.dedup = candidates, bool(dedup)
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
        soft = OnlineSoftmax((len(x), *self.shape[1:]), (len(x), *self.shape), self.device)
        for a in range(0, self.n, self.chunk):
            Xc = self.X[a : a + self.chunk]
            cross = self._box(torch.einsum("bchw,nchw->bnhw", x, Xc), k)
            logits = ((2 * cross - norms[None, a : a + self.chunk]) * inv).double()
            top = logits.amax(dim=1)
            wts = torch.exp(logits - top[:, None])
            soft.add(top, wts.sum(1), torch.einsum("bnhw,nchw->bchw", wts, Xc.double()))
        return soft.mean()

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
                cand = torch.nn.functional.unfold(src, (kh, kw)).transpose(1, 2)  # [N, positions, C·kh·kw]
                self._per_k[key] = self._candidates(cand.reshape(-1, c, kh, kw), r - top, r - left)
            flat = queries.reshape(-1, c, kh, kw)
            mean = torch.cat([self._per_k[key].posterior_mean(flat[a : a + 512], sigma)
                              for a in range(0, len(flat), 512)]).double()  # [queries, C]: the centre pixels
            if self.padding == "circular":
                return mean.reshape(len(x), h, w, c).permute(0, 3, 1, 2)
            out[:, :, i0:i1, j0:j1] = mean.reshape(len(x), i1 - i0, j1 - j0, c).permute(0, 3, 1, 2)
        return out

    def _candidates(self, patches: torch.Tensor, cy: int, cx: int) -> EmpiricalScore:
        """The posterior mean of a patch set's centre pixels (row ``cy``, column ``cx``): an :class:`EmpiricalScore` of
        the patches returning only those pixels (``values``) and, with ``dedup``, each distinct patch stored once with
        its multiplicity (``counts``): the same softmax, exactly, over fewer candidates."""
        if self.dedup:
            patches, counts = torch.unique(patches, dim=0, return_counts=True)
        else:
            counts = None
        return EmpiricalScore(patches, dtype=self.dtype, device=self.device, chunk=1024, counts=counts,
                              values=patches[:, :, cy, cx])

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
        return data_fingerprint(self)

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
        return _score_of(self, x, sigma)


class PatchSchedule:
    """A patch size per noise level from a calibration (:func:`pds.lessons.network_like.calibrate_patch`): σ ↦ the k of
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


class PCALocalityScore:
    """Lukoianov, Yuan, Solomon & Sitzmann's analytic denoiser ("Locality in image diffusion models emerges from data
    statistics", NeurIPS 2025, arXiv 2509.09672), as their code computes it (``PCALocalityDenoiser`` of
    ``analytic-diffusion/analytic-diffusion-studio``, ``models/pca_locality.py``; reimplemented here from that rule):
    locality taken from the data's correlations instead of a square patch.

    The optimal linear (Wiener) denoiser of the set, W(σ) = Σ(Σ + σ²I)⁻¹ = U diag(λ/(λ + σ²)) Uᵀ (Σ = U diag(λ) Uᵀ,
    ``wiener``: a :class:`pds.scores.GaussianScore`, e.g. ``GaussianScore.from_images``; their VP form
    ᾱλ/(1 − ᾱ + ᾱλ) is this with σ² = (1 − ᾱ)/ᾱ), gives each output pixel m a mask: M[n, m] = 1 where
    |W[n, m] / W[n, n]| ≥ ``threshold`` · max |W / diag W| (a row's diagonal below 1e-6 counts as 1), else 0. Then

        D(x, σ)_m = Σ_i w_i(m) X_i[m],   w(m) = softmax_i(−Σ_n M[n, m] (x_n − X_i[n])² / (2σ² · temperature)),

    a softmax over the training images per pixel, each compared only on that pixel's mask. ``batches``: None (the
    default, the formula above: one softmax over the whole set) or their code's streaming — the softmax taken within
    consecutive blocks of ``batches`` images (their data loader's batch, 512) and the blocks' averages averaged with
    equal weight ("WSSM"), which is not the softmax over the set. ``threshold``: their code's default is 0.02, their
    Fashion-MNIST configuration 0.005. The score is (D − x)/σ². Limit: ``threshold`` = 0 keeps every pixel (M = 1):
    the exact empirical score (:class:`pds.empirical.EmpiricalScore`).

    Cost: per (sample, image) one product of the squared differences with M, O(D²): ``chunk`` images at a time, in
    ``dtype`` (float32 by default; the differences are squared before the product, so no cancellation), the softmax in
    float64.
    """

    def __init__(self, images: torch.Tensor, wiener: GaussianScore, threshold: float = 0.02, temperature: float = 1.0,
                 batches: int | None = None, dtype=torch.float32, device=None, chunk: int = 256):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) < 1:
            raise ValueError(f"images must be a non-empty tensor [N, C, H, W], got {getattr(images, 'shape', images)}")
        if not isinstance(wiener, GaussianScore) or tuple(wiener.shape) != tuple(images.shape[1:]):
            raise ValueError(f"wiener must be a GaussianScore of the images' shape {tuple(images.shape[1:])} (e.g. "
                             "GaussianScore.from_images(images))")
        if not 0 <= threshold < 1 or not temperature > 0 or (batches is not None and int(batches) < 1):
            raise ValueError(f"need 0 ≤ threshold < 1, temperature > 0 and batches None or ≥ 1, got {threshold}, "
                             f"{temperature}, {batches}")
        self.threshold, self.temperature, self.wiener = float(threshold), float(temperature), wiener
        self.batches = None if batches is None else int(batches)
        self.dtype, self.chunk = dtype, int(chunk)
        self.device = torch.device(device) if device is not None else images.device
        self.X = images.reshape(len(images), -1).to(device=self.device, dtype=dtype)
        self.shape, self.n = tuple(images.shape[1:]), len(images)
        self._masks: dict[float, torch.Tensor] = {}

    def mask(self, sigma: float) -> torch.Tensor:
        """M(σ) [D, D] (input pixel n, output pixel m), 0 or 1, in ``dtype``."""
        if sigma not in self._masks:
            U, lam = self.wiener.evecs, self.wiener.evals
            W = (U * (lam / (lam + sigma**2))) @ U.T
            diag = torch.diagonal(W).clone()
            diag[diag.abs() < 1e-6] = 1.0
            ratio = (W / diag[:, None]).abs()
            keep = ratio >= self.threshold * ratio.max() if self.threshold > 0 else torch.ones_like(ratio, dtype=bool)
            self._masks[sigma] = keep.to(device=self.device, dtype=self.dtype)
        return self._masks[sigma]

    def _block(self, x: torch.Tensor, M: torch.Tensor, X: torch.Tensor, inv: float):
        """One block of images: per (sample, pixel) the running max and the sums Σ w and Σ w X over it."""
        logits = torch.stack([(((xb[None] - X) ** 2) @ M).double() * -inv for xb in x])  # [B, n, D]
        top = logits.amax(1)
        w = torch.exp(logits - top[:, None])
        return top, w.sum(1), (w * X.double()[None]).sum(1)

    def posterior_mean(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x, σ), with x's shape and dtype (σ a number, or one per sample)."""
        s = check_sigma(x, sigma)
        if tuple(x.shape[1:]) != self.shape or (s <= 0).any():
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.shape))}] and σ > 0, got "
                             f"{tuple(x.shape)}")
        out = torch.empty(len(x), self.X.shape[1], dtype=torch.float64, device=self.device)
        xs = x.reshape(len(x), -1).to(device=self.device, dtype=self.dtype)
        for value in torch.unique(s).tolist():
            rows = (s == value).nonzero()[:, 0].to(self.device)
            out[rows] = self._mean(xs[rows], value)
        return out.reshape(x.shape).to(device=x.device, dtype=x.dtype)

    def _mean(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        M, inv = self.mask(sigma), 0.5 / (sigma**2 * self.temperature)
        size = self.batches or self.n
        blocks = []
        for a in range(0, self.n, size):  # a block: the softmax's domain (the whole set unless ``batches``)
            soft = OnlineSoftmax((len(x), self.X.shape[1]), (len(x), self.X.shape[1]), self.device)
            for b in range(a, min(a + size, self.n), self.chunk):
                soft.add(*self._block(x, M, self.X[b : min(b + self.chunk, a + size)], inv))
            blocks.append(soft.mean())
        return torch.stack(blocks).mean(0)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """(D(x, σ) − x)/σ², with x's shape and dtype."""
        return _score_of(self, x, sigma)

    def fingerprint(self) -> Fingerprint:
        """A behaviour fingerprint: the images, the Wiener filter's spectrum, the settings, and what the code computes
        on a fixed tiny set in float64 (both softmax domains)."""
        gen = torch.Generator().manual_seed(0)
        X0 = torch.rand(6, 1, 4, 4, generator=gen, dtype=torch.float64)
        x0 = X0[:2] + 0.1 * torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64)
        canon = [PCALocalityScore(X0, GaussianScore.from_images(X0), 0.2, batches=b, dtype=torch.float64)
                 for b in (None, 4)]
        return fingerprint("PCALocalityScore", data_fingerprint(self), Approx(self.wiener.evals, RTOL),
                           self.threshold, self.temperature, self.batches, str(self.dtype),
                           *[Approx(c.posterior_mean(x0, s), RTOL) for c in canon for s in (0.05, 0.5)])
