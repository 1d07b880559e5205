"""Verdicts: the claims the notebooks state, as tested functions — :class:`Verdict` (a claim, whether it holds, the
numbers behind it), the two rules the notebooks apply to measurements over seeds (:func:`beats`: lower by two
standard errors; :func:`matches`: within two standard deviations of a reference) and :func:`spread` / :func:`summary`
of the values. Light on purpose (numpy only): the findings and the book import it without the networks and samplers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Verdict", "spread", "summary", "beats", "matches"]


@dataclass(frozen=True)
class Verdict:
    """A claim about measured values, whether it holds, and the numbers behind it."""

    claim: str
    holds: bool
    detail: str
    numbers: dict = field(default_factory=dict, compare=False, repr=False)  # the numbers of ``detail``, as numbers

    def __str__(self) -> str:
        return f"{'HOLDS' if self.holds else 'DOES NOT HOLD'}: {self.claim} — {self.detail}"


def spread(values) -> tuple[float, float, int]:
    """(mean, standard deviation over seeds with ddof 1 (0 for one value), count) of a list of numbers."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"need at least one finite value, got {v.tolist()}")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _fmt(values, label: str) -> str:
    m, s, k = spread(values)
    return f"{label} {m:.4g} ± {s:.2g} (over {k})"


def _floor(floor) -> str:
    return "" if floor is None else f"; floor {_fmt(floor, 'at the same n')}"


def summary(values) -> dict:
    """Mean, standard deviation (ddof 1) and count of values over seeds, with the values."""
    m, s, k = spread(values)
    return {"mean": m, "std": s, "count": k, "values": [float(v) for v in values]}


def _numbers(floor=None, **parts) -> dict:
    out = {k: (summary(v) if isinstance(v, list | tuple | np.ndarray) else float(v)) for k, v in parts.items()}
    if floor is not None:
        out["floor"] = summary(floor)
    return out


def _no_value(values) -> int:
    return int((~np.isfinite(np.asarray(list(values), dtype=np.float64))).sum())


def _worst(values, other, claim: str, nonfinite: str, other_first: bool) -> Verdict | None:
    """``nonfinite="worst"``: a run without a finite value (diverged, nothing to measure) counts as the worst; the
    verdict is then decided without the statistics (None when every value is finite, or with ``"raise"``)."""
    if nonfinite not in ("raise", "worst"):
        raise ValueError(f"nonfinite must be 'raise' or 'worst', got {nonfinite!r}")
    if nonfinite == "raise":
        return None
    a, b = _no_value(values), _no_value(other)
    if not a and not b:
        return None
    if a:
        return Verdict(claim, False, f"{a} of {len(list(values))} runs gave no value (diverged or nothing to measure): "
                                     f"{[float(v) for v in values]}")
    return Verdict(claim, other_first, f"{b} of {len(list(other))} runs of the other side gave no value (the worst): "
                                       f"{[float(v) for v in other]}; this side {[float(v) for v in values]}")


def matches(values, reference, claim: str, floor=None, nonfinite: str = "raise") -> Verdict:
    """"``values`` match ``reference``" (lower is better, e.g. FD or W2): mean(values) ≤ mean(reference) +
    2·std(reference), the std over the reference's seeds (0 with a single, exact value). ``nonfinite``: "raise" (a
    non-finite value is an error) or "worst" (it is the worst possible value: such values never match, and a
    reference with one is matched by nothing)."""
    if (v := _worst(values, reference, claim, nonfinite, other_first=False)) is not None:
        return v
    m, _, _ = spread(values)
    mr, sr, _ = spread(reference)
    bound = mr + 2.0 * sr
    return Verdict(claim, m <= bound, f"{_fmt(values, 'mean')} vs bound {bound:.4g} = "
                                      f"{_fmt(reference, 'reference')} + 2 std{_floor(floor)}",
                   _numbers(floor, values=list(values), reference=list(reference), bound=bound))


def beats(values, other, claim: str, floor=None, nonfinite: str = "raise") -> Verdict:
    """"``values`` beat ``other``" (lower is better): mean(values) + 2·se < mean(other), with se the standard error
    of the difference of the means over seeds, √(s_a²/n_a + s_b²/n_b) (0 for single, exact values). ``nonfinite``:
    "raise", or "worst" (a non-finite value is the worst: finite values beat a side that has one, and a side with one
    beats nothing)."""
    if (v := _worst(values, other, claim, nonfinite, other_first=True)) is not None:
        return v
    ma, sa, na = spread(values)
    mb, sb, nb = spread(other)
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    return Verdict(claim, ma + 2.0 * se < mb, f"{_fmt(values, 'mean')} vs {_fmt(other, 'other')}, "
                                             f"difference {mb - ma:.4g}, 2 se {2 * se:.3g}{_floor(floor)}",
                   _numbers(floor, values=list(values), other=list(other), difference=mb - ma, two_se=2 * se))
