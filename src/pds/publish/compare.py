"""Reading the findings a run of the notebooks wrote (:func:`load`) and whether they are what is committed (``python -m
pds.publish.findings compare``, the end of ``make notebooks``): :func:`compare` judges each number by what it is — a
measured value within a relative tolerance (:data:`RTOL`), a residual checked against a bound by that bound and its
order of magnitude (never its digits, which are the CPU's: :func:`is_residual`, :func:`same_residual`) — except the
wall-clock measurements of the notebooks in :data:`TIMED`, whose results alone are compared."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from pds.storage import NOTEBOOK_DIR

__all__ = ["load", "numbers_in", "SUFFIX", "compare", "is_residual", "same_residual", "TIMED", "RTOL", "ORDERS",
           "RESIDUAL_FRACTION"]

SUFFIX = ".findings.json"  # <notebook>.findings.json beside each executed notebook
TIMED = ("08_timing_table2",)  # notebooks whose numbers are wall-clock times: they change from run to run


def load(folder) -> list[dict]:
    """The findings documents in ``folder``, in notebook order (only notebooks that exist)."""
    folder = Path(folder)
    order = [p.stem for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))]
    docs = []
    for name in order:
        path = folder / f"{name}{SUFFIX}"
        if path.is_file():
            docs.append(json.loads(path.read_text()))
    return docs


NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def numbers_in(text: str) -> list[str]:
    return [m.group(0).replace("−", "-") for m in NUMBER.finditer(text)]


def _outcomes(doc: dict, timed: bool = False) -> list[tuple]:
    """(claim, kind, name, holds, expected, asserted) of every finding; in a timed notebook a finding it does not
    assert has no result to compare (whether a time meets a target is the machine's, not the code's)."""
    return [(c["label"], f["kind"], f.get("key") or f.get("name") or f.get("claim"),
             f["holds"] if f.get("asserted") or not timed else None, f.get("expected"), f.get("asserted"))
            for c in doc["claims"] for f in c["findings"]]


RESIDUAL_FRACTION = 0.01  # a check "value ≤ bound" found below this fraction of its bound states a residual
ORDERS = 3  # how many orders of magnitude a residual may move before compare calls it a change
RTOL = 1e-6  # a measured number: relative tolerance (float32 kernels round differently on other CPUs)


def is_residual(finding: dict) -> bool:
    """Whether a recorded finding is a residual checked against a bound: a :meth:`Findings.check` "value ≤ bound"
    whose value lies in [0, ``RESIDUAL_FRACTION``·bound] — a round-off or discretisation error required to vanish,
    whose digits are those of the CPU's float kernels (on another machine 2.83e-15 comes out as 2.23e-15), not a
    result. A value near its bound, or a check "≥", is a measured value."""
    return (finding.get("kind") == "check" and finding.get("op") == "<=" and isinstance(finding.get("value"), float)
            and 0.0 <= finding["value"] <= RESIDUAL_FRACTION * finding["bound"])


def same_residual(old: float, new: float, bound: float, orders: float = ORDERS) -> bool:
    """A residual ``new`` judged against the committed ``old``: it still meets its ``bound`` and lies within
    ``orders`` orders of magnitude of ``old`` — both read as at least 1e-6 of the bound, below which every residual is
    the same (zero, or round-off far inside its requirement)."""
    if not 0.0 <= new <= bound:
        return False
    floor = 1e-6 * bound
    if floor == 0.0:
        return new == old
    return abs(math.log10(max(new, floor)) - math.log10(max(old, floor))) <= orders


def _last_digit(token: str) -> float:
    """One unit in the last printed digit of a number as text (``"0.0535"`` → 1e-4, ``"2.2e-15"`` → 1e-16)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _same_text(a: str, b: str, rtol: float) -> bool:
    """Equal texts but for their numbers, which agree within ``rtol`` or one unit of their last printed digit (a
    number printed to 4 digits flips its last one when another CPU's rounding moves it across a half unit)."""
    split_a, split_b = NUMBER.split(a), NUMBER.split(b)
    if split_a != split_b:
        return False
    for x, y in zip(numbers_in(a), numbers_in(b), strict=True):
        u, v = float(x), float(y)
        if abs(u - v) > max(rtol * max(abs(u), abs(v)), _last_digit(x), _last_digit(y)) * (1 + 1e-9):
            return False
    return True


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _scale(x) -> float:
    """The largest finite magnitude among the numbers in ``x`` (0 when none)."""
    if isinstance(x, dict):
        return max((_scale(v) for v in x.values()), default=0.0)
    if isinstance(x, list):
        return max((_scale(v) for v in x), default=0.0)
    return abs(x) if _is_number(x) and math.isfinite(x) else 0.0


def _same(a, b, rtol: float, scale: float = 0.0) -> bool:
    """Equal structure and flags; numbers within ``rtol`` of the larger of themselves and ``scale`` — in a finding,
    its largest number: a number derived from others is as precise as they are (a difference of two FDs of 1 170,
    7.49, moves by 2e-6 of itself when the FDs move by 5e-9 of theirs); texts equal but for their numbers
    (:func:`_same_text`); a residual check (:func:`is_residual`, judged from ``a``, the committed side) by
    :func:`same_residual`."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return False
        if "kind" in a:  # a finding: its numbers are as precise as its largest
            scale = max(scale, _scale(a), _scale(b))
        if is_residual(a) and isinstance(b.get("value"), float):
            rest = [k for k in a if k != "value"]
            return (same_residual(a["value"], b["value"], a["bound"])
                    and all(_same(a[k], b[k], rtol, scale) for k in rest))
        return all(_same(a[k], b[k], rtol, scale) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, rtol, scale) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a == b or _same_text(a, b, rtol)
    if _is_number(a) and _is_number(b):
        if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
            return (math.isnan(a) and math.isnan(b)) or a == b
        return abs(a - b) <= rtol * max(abs(a), abs(b), scale) + 1e-300
    return a == b


def compare(fresh, committed, timed=TIMED, rtol: float = RTOL) -> list[str]:
    """How the findings in the folder ``fresh`` differ from those in ``committed`` (e.g. ``data/findings/default``), a
    line per difference (none: the same), each number judged by what it is: a notebook on one side only; a finding
    added, removed or whose result (holds, expected, asserted) changed — exactly; for the other notebooks a claim
    whose context, texts or numbers changed: a measured number beyond ``rtol`` (relative to itself or to its finding's
    largest number: what another CPU's float32 rounding moves is not a change), a number printed in a text beyond one
    unit of its last digit, a residual checked against a bound (:func:`is_residual`) when it no longer meets the bound
    or moves more than :data:`ORDERS` orders of magnitude (:func:`same_residual`; never by its digits). In the
    notebooks of ``timed`` only the results count (their numbers are times), and of those only the asserted ones."""
    new = {d["notebook"]: d for d in load(fresh)}
    old = {d["notebook"]: d for d in load(committed)}
    out = [f"{nb}: only in {where}" for nb, where in
           [(nb, fresh) for nb in new if nb not in old] + [(nb, committed) for nb in old if nb not in new]]
    for nb in [nb for nb in old if nb in new]:
        a, b = _outcomes(old[nb], nb in timed), _outcomes(new[nb], nb in timed)
        if a != b:
            ka, kb = {x[:3]: x for x in a}, {y[:3]: y for y in b}  # matched by claim, kind and name, not position
            changed = [f"{k[0]} / {k[2]}: {'holds' if ka[k][3] else 'fails'} → {'holds' if kb[k][3] else 'fails'}"
                       for k in ka if k in kb and ka[k] != kb[k]]
            changed += [f"added {k[0]} / {k[2]}" for k in kb if k not in ka]
            changed += [f"removed {k[0]} / {k[2]}" for k in ka if k not in kb]
            out.append(f"{nb}: {len(a)} findings → {len(b)}" + ("; " + "; ".join(changed[:5]) if changed else "")
                       + (f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""))
        elif nb not in timed and not _same(*({k: v for k, v in d.items() if k != "source"} for d in (old[nb], new[nb])),
                                           rtol):
            changed = [f"{c['label']} / {f.get('key') or f.get('name') or f.get('claim')}"
                       + (f" ({f['value']:.3g} → {g['value']:.3g})" if f["kind"] == "check" else "")
                       for c, d in zip(old[nb]["claims"], new[nb]["claims"], strict=True)
                       for f, g in zip(c["findings"], d["findings"], strict=True) if not _same(f, g, rtol)]
            claims = [c["label"] for c, d in zip(old[nb]["claims"], new[nb]["claims"], strict=True)
                      if not _same({k: v for k, v in c.items() if k != "findings"},
                                   {k: v for k, v in d.items() if k != "findings"}, rtol)]
            header = not _same({k: v for k, v in old[nb].items() if k != "claims"},
                               {k: v for k, v in new[nb].items() if k != "claims"}, rtol)
            what = changed + [f"the context of {c}" for c in claims] + (["its header"] if header else [])
            out.append(f"{nb}: the numbers or texts changed: " + "; ".join(what[:5])
                       + (f" (and {len(what) - 5} more)" if len(what) > 5 else ""))
    return out
