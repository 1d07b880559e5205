"""Behaviour fingerprints: digests of what code *computes*, not of its source text.

A fingerprint runs a canonical tiny computation (fixed seed, fixed inputs, float64) and hashes its outputs. Refactors
and comments leave it unchanged; a numerical change changes it. To be the same on every machine, outputs are
quantised before hashing: each array is divided by the power of ten at or above its largest magnitude and rounded
to ``digits`` decimals (8 by default), so differences at the level of float64 rounding — vector widths, MKL or
pocketfft code paths, the summation order of a BLAS — do not change a digest, while any change of an algorithm
(which moves results by far more than 1e-8 of their scale) does. :mod:`pds.cache` keys finished runs with them.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch

__all__ = ["quantised", "digest"]


def quantised(values, digits: int = 8) -> bytes:
    """The bytes of ``values`` (an array, tensor or number) rounded to ``digits`` decimals of their scale (the power
    of ten at or above the largest finite magnitude), with their shape and where they are not finite."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(a)
    top = float(np.abs(a[finite]).max()) if finite.any() else 0.0
    scale = 10.0 ** math.ceil(math.log10(top)) if top > 0 else 1.0
    q = np.where(finite, np.round(np.where(finite, a, 0.0) / scale * 10.0**digits), 0.0).astype("<i8")
    special = np.where(np.isnan(a), 1, np.where(np.isposinf(a), 2, np.where(np.isneginf(a), 3, 0))).astype("u1")
    return f"{a.shape}|{scale:.0e}|".encode() + q.tobytes() + special.tobytes()


def digest(*parts, digits: int = 8) -> str:
    """SHA-256 (first 16 hex digits) of ``parts``: arrays, tensors and numbers are :func:`quantised`, bytes taken as
    they are, anything else as its canonical JSON (sorted keys)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, torch.Tensor | np.ndarray | float) and not isinstance(part, bool):
            h.update(quantised(part, digits))
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]
