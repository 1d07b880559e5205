"""Fingerprints: what a piece of code computes, or what a computed array holds, compared within a tolerance.

A result store (:mod:`pds.lab.cache`, :class:`pds.lab.optima.OptimumStore`) must find a finished run again on any
machine.
Its key cannot hash raw float bytes: float kernels differ between CPUs (AVX-512 with or without FP16/BF16, AVX2, the
scalar fallback), so the last bits of a float32 FFT or convolution, and of a float64 BLAS sum, are not the same
everywhere. Nor can it hash rounded values: however coarse the rounding, a value that falls near a rounding boundary
flips it. So a fingerprint keeps its numbers and is compared with a tolerance.

A :class:`Fingerprint` has

* ``exact``: SHA-256 (16 hex digits) of everything that is not a computed float — names, integers, shapes and dtypes,
  counts of NaN and inf, bytes of files that are data (a checkpoint), the exact parts of nested fingerprints;
* ``groups``: the computed floats, each with its relative tolerance. A number is kept as it is; an array by its
  :func:`summary` — its root mean square and five normalised projections (its mean and four fixed ±1 patterns),
  six numbers whatever its size.

Two fingerprints :meth:`~Fingerprint.same` are the same behaviour when their exact parts are equal and every number
agrees within its group's tolerance: ``RTOL`` (1e-9) for float64 computations, ``DATA_RTOL`` (1e-6) for arrays
computed in float32 or from float32 data (a filter estimated from float32 images, an image set), and 1e-4 for the
Gaussian targets of :mod:`pds.exact.optimal` (fitted from float32 images). Measured between two kernel sets on one
machine (``benchmarks/fingerprint_kernels.py``: AVX-512 against ATen's scalar kernels, oneDNN's AVX2 and OpenBLAS's
Haswell ones): float64 fingerprints moved by at most 4.2e-15 (relative), the filter estimated at
run time by 1.5e-16 (on another CPU the issue that asked for this saw 1e-8), the 1024² power-law target by 4.6e-7
(before its fit ran to convergence) —
each at least 200 times inside its tolerance; a numerical change of an algorithm moves a float64 canonical run by far
more than 1e-9 of its scale.

:attr:`Fingerprint.id` names a fingerprint: its exact part and the hash of its numbers rounded to a digit below their
tolerance. On one machine an id is stable; on another, a number lying at a rounding boundary can give another id,
which is why stores look up a run by its key first and then, among runs that differ only in fingerprint ids, by
:meth:`~Fingerprint.same` (:class:`FingerprintTable`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pds.storage import append_line, read_lines

__all__ = ["Fingerprint", "fingerprint", "Approx", "summary", "FingerprintTable", "RTOL", "DATA_RTOL",
           "SETTINGS_RTOL", "is_id", "skeleton", "alike", "ids_in", "score_fingerprint"]

RTOL = 1e-9  # float64 computations
DATA_RTOL = 1e-6  # arrays computed in float32 (or from float32 inputs)
PROJECTIONS = 4
_ID = re.compile(r"^[0-9a-f]{16}~[0-9a-f]{8}$")


@dataclass(frozen=True)
class Approx:
    """A part of :func:`fingerprint` compared with its own relative tolerance (e.g. ``DATA_RTOL`` for a float32
    result)."""

    value: object
    rtol: float


def _signs(start: int, n: int, j: int) -> np.ndarray:
    """Entries ``start … start+n−1`` of the j-th fixed ±1 pattern: an integer hash of the index (the same on every
    machine and every numpy). Kept as bits for the chunks :func:`summary` asks for again and again."""
    bits = _sign_bits(start, n, j)
    s = np.unpackbits(bits, count=n).astype(np.float64)
    s *= 2.0
    s -= 1.0
    return s


@functools.lru_cache(maxsize=128)  # at most 64 MiB: 128 chunks of CHUNK bits
def _sign_bits(start: int, n: int, j: int) -> np.ndarray:
    v = np.arange(start + 1, start + n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        v *= np.uint64(0x9E3779B97F4A7C15 ^ (0x632BE59BD9B4E019 * (j + 1) & 0xFFFFFFFFFFFFFFFF))
        v ^= v >> np.uint64(31)
        v *= np.uint64(0xBF58476D1CE4E5B9)
        v ^= v >> np.uint64(29)
    v >>= np.uint64(40)
    v &= np.uint64(1)
    bits = np.packbits(v.astype(np.uint8))
    bits.flags.writeable = False
    return bits


CHUNK = 2**22  # entries per pass of summary(): a 60 000-image set is summarised without a float64 copy of it


def summary(values) -> tuple[list, list[float], list[float]]:
    """(exact facts, scales, normalised numbers) of an array: its shape, dtype and counts of NaN / +inf / -inf; its
    root mean square over the finite entries; its mean and its projections on ``PROJECTIONS`` fixed ±1 patterns,
    each divided by the RMS (and the projections by √N), so that they are of order one. Computed in float64, in
    passes of ``CHUNK`` entries."""
    dtype = str(values.dtype).replace("torch.", "") if hasattr(values, "dtype") else "float64"
    shape = list(values.shape) if hasattr(values, "shape") else list(np.shape(values))
    flat = values.detach().reshape(-1) if isinstance(values, torch.Tensor) else np.asarray(values).reshape(-1)
    n_nan = n_pos = n_neg = count = 0
    total, squares, proj = 0.0, 0.0, np.zeros(PROJECTIONS)
    for start in range(0, max(len(flat), 1), CHUNK):
        part = flat[start : start + CHUNK]
        a = part.cpu().to(torch.float64).numpy() if isinstance(part, torch.Tensor) else part.astype(np.float64)
        finite = np.isfinite(a)
        n_nan += int(np.isnan(a).sum())
        n_pos += int(np.isposinf(a).sum())
        n_neg += int(np.isneginf(a).sum())
        f = np.where(finite, a, 0.0)
        count += int(finite.sum())
        total += float(f.sum())
        squares += float(f @ f)
        proj += [float(f @ _signs(start, len(f), j)) for j in range(PROJECTIONS)]
    facts = [shape, dtype, n_nan, n_pos, n_neg]
    rms = math.sqrt(squares / count) if count else 0.0
    if rms == 0.0 or not math.isfinite(rms):
        return facts, [rms], [0.0] * (1 + PROJECTIONS)
    return facts, [rms], [total / count / rms] + [float(p) / (rms * math.sqrt(count)) for p in proj]


def _digits(rtol: float) -> int:
    return max(1, math.floor(-math.log10(rtol)) - 1)


@dataclass(frozen=True)
class Fingerprint:
    """See the module docstring. ``groups``: tuples (rtol, floor, numbers); a number ``v`` of a group matches ``w``
    when |v − w| <= rtol · max(|v|, |w|, floor) (floor 0: relative; floor 1: the normalised numbers of a summary)."""

    exact: str
    groups: tuple = ()

    @property
    def id(self) -> str:
        h = hashlib.sha256()
        for rtol, floor, nums in self.groups:
            d = _digits(rtol)
            if floor:
                h.update(np.round(np.asarray(nums, dtype=np.float64) * 10.0**d).astype("<i8").tobytes())
            else:  # d significant digits of each number
                for v in nums:
                    h.update(f"{v:.{d - 1}e}".encode() if math.isfinite(v) and v != 0 else repr(v).encode())
            h.update(b"|")
        return f"{self.exact}~{h.hexdigest()[:8]}"

    def same(self, other: Fingerprint) -> bool:
        """The same behaviour: equal exact parts, every number within its group's tolerance."""
        if self.exact != other.exact or len(self.groups) != len(other.groups):
            return False
        for (r1, f1, a), (r2, f2, b) in zip(self.groups, other.groups, strict=True):
            if r1 != r2 or f1 != f2 or len(a) != len(b):
                return False
            for v, w in zip(a, b, strict=True):
                if not (v == w or abs(v - w) <= r1 * max(abs(v), abs(w), f1)):
                    return False
        return True

    def largest_difference(self, other: Fingerprint) -> float:
        """The largest difference of their numbers in units of each one's tolerance (<= 1: :meth:`same`)."""
        worst = 0.0
        for (r, f, a), (_, _, b) in zip(self.groups, other.groups, strict=True):
            for v, w in zip(a, b, strict=True):
                if v != w:
                    worst = max(worst, abs(v - w) / (r * max(abs(v), abs(w), f)))
        return worst

    def to_dict(self) -> dict:
        return {"id": self.id, "exact": self.exact, "groups": [[r, f, list(n)] for r, f, n in self.groups]}

    @classmethod
    def from_dict(cls, d: dict) -> Fingerprint:
        return cls(d["exact"], tuple((float(r), float(f), tuple(float(v) for v in n)) for r, f, n in d["groups"]))


def fingerprint(*parts, rtol: float = RTOL) -> Fingerprint:
    """The fingerprint of ``parts``: tensors and arrays by their :func:`summary`, Python floats as they are (both
    compared within ``rtol``, or the part's own with :class:`Approx`), nested :class:`Fingerprint` s merged (their
    exact parts hashed in, their numbers kept with their tolerances), bytes as they are, anything else as canonical
    JSON (sorted keys)."""
    h, groups = hashlib.sha256(), []
    for part in parts:
        tol = rtol
        if isinstance(part, Approx):
            part, tol = part.value, part.rtol
        if isinstance(part, Fingerprint):
            h.update(b"F" + part.exact.encode())
            groups += part.groups
        elif isinstance(part, bytes):
            h.update(b"B" + part)
        elif isinstance(part, torch.Tensor | np.ndarray):
            facts, scales, normed = summary(part)
            h.update(b"A" + json.dumps(facts).encode())
            groups += [(tol, 0.0, tuple(scales)), (tol, 1.0, tuple(normed))]
        elif isinstance(part, float) and not isinstance(part, bool):
            h.update(b"f")
            groups.append((tol, 0.0, (part,)))
        else:
            h.update(b"J" + json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return Fingerprint(h.hexdigest()[:16], tuple(groups))


def score_fingerprint(score, shape, sigmas) -> Fingerprint:
    """What a score model ``score(x, σ)`` computes: its own ``fingerprint()`` where it has one (a closed form over an
    image set, e.g. :class:`pds.empirical.EmpiricalScore`), else its outputs in float64 — a torch module as a copy in
    double precision and eval mode — on two fixed random inputs of ``shape`` [C, H, W] at each σ of ``sigmas``."""
    name = type(score).__name__
    if callable(getattr(score, "fingerprint", None)):
        return fingerprint(name, score.fingerprint())
    if isinstance(score, torch.nn.Module):
        score = copy.deepcopy(score).double().eval()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        outs = [score(x, float(s)) for s in sigmas]
    return fingerprint(name, *[float(s) for s in sigmas], *outs)


def is_id(value) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


SETTINGS_RTOL = 1e-12  # floats written in a description (settings such as a σ ladder computed with np.exp)


def skeleton(obj):
    """The shape of ``obj`` (a JSON description): every fingerprint id replaced by its exact part and every float by
    a placeholder. Two descriptions with the same skeleton differ at most in the numbers of their fingerprints and in
    their floats — settings computed on the CPU (a σ ladder from ``np.exp``: another CPU's SIMD exp differs in the last
    bit), which :meth:`FingerprintTable.matches` compares within ``SETTINGS_RTOL``."""
    if isinstance(obj, dict):
        return {k: skeleton(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [skeleton(v) for v in obj]
    if isinstance(obj, float):
        return "<float>"
    return obj.split("~")[0] + "~" if is_id(obj) else obj


def alike(a, b, known: dict | None = None) -> bool:
    """Whether two JSON descriptions are the same: the same skeleton (:func:`skeleton`), every float within
    ``SETTINGS_RTOL`` (relative) and every fingerprint id the same, or naming fingerprints of ``known`` (id →
    :class:`Fingerprint`) that are the same within their tolerances."""
    if skeleton(a) != skeleton(b):
        return False
    return _alike(a, b, known or {})


def _alike(a, b, known: dict) -> bool:
    if isinstance(a, dict):
        return all(_alike(a[k], b[k], known) for k in a)
    if isinstance(a, list | tuple):
        return all(_alike(x, y, known) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or abs(a - b) <= SETTINGS_RTOL * max(abs(a), abs(b))
    if is_id(a) and a != b:
        return a in known and b in known and known[a].same(known[b])
    return a == b


def ids_in(obj) -> list[str]:
    """Every fingerprint id in a JSON description, in a fixed order."""
    if isinstance(obj, dict):
        return [i for k in sorted(obj) for i in ids_in(obj[k])]
    if isinstance(obj, list | tuple):
        return [i for v in obj for i in ids_in(v)]
    return [obj] if is_id(obj) else []


class FingerprintTable:
    """The fingerprints that descriptions in a store refer to by id: ``fingerprints.jsonl`` in each folder (append
    only, one line per id; read-only folders, e.g. a shipped copy, are read too). :meth:`matches` says whether a
    stored description is the same as a new one: equal skeletons and, id by id, :meth:`Fingerprint.same`."""

    NAME = "fingerprints.jsonl"

    def __init__(self, folder, *read_only):
        self.folder = Path(folder)
        self.known: dict[str, Fingerprint] = {}
        self._mine: set[str] = set()
        for where in (*read_only, self.folder):
            if where is not None:
                for row in read_lines(Path(where) / self.NAME):
                    self.known[row["id"]] = Fingerprint.from_dict(row)
                    if Path(where) == self.folder:
                        self._mine.add(row["id"])

    def add(self, *fps: Fingerprint) -> None:
        """Remember fingerprints (written to this folder when a description that uses them is stored)."""
        for fp in fps:
            self.known.setdefault(fp.id, fp)

    def save(self, description) -> None:
        """Write the fingerprints ``description`` refers to that this folder does not hold yet."""
        for i in ids_in(description):
            if i not in self._mine and i in self.known:
                append_line(self.folder / self.NAME, self.known[i].to_dict(), f"the fingerprint {i}")
                self._mine.add(i)

    def ids(self, obj):
        """``obj`` (a description holding :class:`Fingerprint` s) with each replaced by its id, remembered here."""
        if isinstance(obj, Fingerprint):
            self.add(obj)
            return obj.id
        if isinstance(obj, dict):
            return {k: self.ids(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.ids(v) for v in obj]
        return obj

    def matches(self, stored, wanted) -> bool:
        """Whether the ``stored`` description is the ``wanted`` one: the same skeleton, every fingerprint the same
        within its tolerance, every float within ``SETTINGS_RTOL`` (relative)."""
        return alike(stored, wanted, self.known)

