"""Findings as data: what each notebook finds, written by the notebook, rendered into ``FINDINGS.md`` and the book.

A notebook records every finding through one :class:`Findings` recorder::

    findings = Findings("06_ncsnpp_table1_fig6", profile, stand_in="Fashion-MNIST zero-padded to 32² for CIFAR-10")
    findings.claim("Table 1", "at T = 100 and 200 PDS matches the full-length sampler …", n=N, seeds=SEEDS)
    findings.check("max rel. error", value, 1e-9)               # a number against its tolerance (fails if outside)
    findings.verdict(beats(a, b, "PDS beats vanilla"), True)     # a Verdict the notebook states
    findings.state(verdicts, EXPECTED, claim_of={...})           # many; asserted outside the smoke profile

``claim`` names the paper claim that the following records check (with the run context: n, seeds, the floor). After
every record the notebook's findings are written, atomically, to ``<build>/notebooks/<profile>/<name>.findings.json``
(``$PDS_FINDINGS_DIR`` overrides the folder): the claim, the verdict, whether the notebook asserts it, and the numbers
behind it (means, spreads and counts over seeds, bounds, n, seeds, floor), each as a number.

``python -m pds.publish.findings render --profile default`` (``make findings``) turns the profile's JSON files into one
Markdown document — a section per notebook, a table per claim — and, for the default profile, copies the JSON files
next to the committed ``FINDINGS.md`` (``data/findings/default/``) so that anyone can check it: every number in the
document is one of the JSON's numbers formatted by :func:`fmt` or appears in one of its strings
(:func:`untraced_numbers`; ``tests/test_findings.py``). Nothing in the document is typed by hand.

``python -m pds.publish.findings compare --profile default`` (the end of ``make notebooks``) says whether the notebooks
just run found what is committed (:func:`compare`): the same findings with the same results, each number judged by what
it is — a measured value within a relative tolerance, a residual checked against a bound by that bound and its order of
magnitude (never its digits, which are the CPU's) — except the wall-clock measurements of the notebooks in
:data:`TIMED`, whose results alone are compared. """

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from pds.lab.verdicts import Verdict, summary
from pds.publish.notebooks import PROFILES, check_verdict, code_cells
from pds.publish.notebooks import check as check_number
from pds.storage import BUILD_DIR, DATA_DIR, NOTEBOOK_DIR, REPO_ROOT

__all__ = ["Findings", "findings_dir", "expected", "load", "render", "fmt", "untraced_numbers", "compare",
           "FINDINGS_ENV", "COMMITTED_DIR", "TIMED", "is_residual", "same_residual"]

FINDINGS_ENV = "PDS_FINDINGS_DIR"
COMMITTED_DIR = DATA_DIR / "findings"
SUFFIX = ".findings.json"
TIMED = ("08_timing_table2",)  # notebooks whose numbers are wall-clock times: they change from run to run


def expected(notebook: str) -> dict:
    """The verdicts a notebook states, as computed in the default profile (``notebooks/expected/<notebook>.json``):
    declared in one place beside the notebooks instead of typed into their cells."""
    path = NOTEBOOK_DIR / "expected" / f"{notebook}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a notebook's expected verdicts live there")
    return json.loads(path.read_text())


def findings_dir(profile: str) -> Path:
    """Where the notebooks of ``profile`` write their findings: ``build/notebooks/<profile>/`` (beside the executed
    copies ``make notebooks`` writes), or ``$PDS_FINDINGS_DIR``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    env = os.environ.get(FINDINGS_ENV)
    return Path(env) if env else BUILD_DIR / "notebooks" / profile


def fmt(value) -> str:
    """How a number is shown in the findings: 4 significant digits (integers as they are)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.4g}"


def _plain(x):
    """JSON-ready: numpy scalars and arrays to Python numbers and lists, non-finite floats as strings."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        v = float(x)
        return v if math.isfinite(v) else str(v)
    return x


def _title(notebook: str) -> str:
    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not path.is_file():
        known = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
        raise ValueError(f"no notebook {notebook!r} in {NOTEBOOK_DIR}; known: {known}")
    cells = json.loads(path.read_text())["cells"]
    first = "".join(cells[0]["source"]).strip().splitlines() if cells else []
    return first[0].lstrip("# ").strip() if first else notebook


def source_digest(notebook: str) -> str | None:
    """SHA-256 (16 hex digits) of the code cells of ``notebooks/<notebook>.ipynb`` (None where there is none): recorded
    with a notebook's findings, so that committing them can refuse findings executed from other code."""
    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not path.exists():
        return None
    return hashlib.sha256("\n\x00".join(code_cells(path)).encode()).hexdigest()[:16]


class Findings:
    """The findings of one notebook (see the module docstring). ``stand_in``: what stands in for the paper's data and
    models here; ``note``: what the notebook does when it states no finding of its own."""

    def __init__(self, notebook: str, profile: str, stand_in: str | None = None, note: str | None = None,
                 folder=None):
        self.notebook, self.profile = notebook, profile
        self.path = Path(folder or findings_dir(profile)) / f"{notebook}{SUFFIX}"
        self.doc = {"notebook": notebook, "title": _title(notebook), "profile": profile, "stand_in": stand_in,
                    "note": note, "source": source_digest(notebook), "claims": []}
        self._current: dict | None = None
        self._claims: dict[str, dict] = {}
        self._write()

    # -- recording ----------------------------------------------------------------------------------------------
    def claim(self, label: str, text: str = "", *, n=None, seeds=None, floor=None) -> None:
        """Start (or return to) the paper claim ``label`` (e.g. "Table 1"), described by ``text``; the records that
        follow belong to it. ``n``, ``seeds``, ``floor`` (the metric of real images at the same n, over seeds): the
        run context shown with it."""
        if label not in self._claims:
            entry = {"label": label, "text": text, "n": _plain(n), "seeds": _plain(list(seeds) if seeds is not None
                                                                                   else None),
                     "floor": None if floor is None else _plain(summary(floor)), "findings": []}
            self._claims[label] = entry
            self.doc["claims"].append(entry)
        self._current = self._claims[label]
        self._write()

    def _add(self, record: dict, label: str | None = None) -> None:
        target = self._claims.get(label) if label is not None else self._current
        if target is None:
            if label is not None:
                raise KeyError(f"claim {label!r} was not started with Findings.claim; known: {list(self._claims)}")
            self.claim("Other findings")
            target = self._current
        target["findings"].append(_plain(record))
        self._write()

    def check(self, name: str, value: float, bound: float, kind: str = "<=", enforce: bool = True) -> float:
        """:func:`pds.publish.notebooks.check` (print the number and its tolerance, raise when outside unless
        ``enforce`` is False), recorded."""
        value = float(value)
        ok = value <= bound if kind == "<=" else value >= bound
        self._add({"kind": "check", "name": name, "value": value, "op": kind, "bound": float(bound), "holds": ok,
                   "asserted": bool(enforce)})
        return check_number(name, value, bound, kind, enforce)

    def verdict(self, verdict: Verdict, expected: bool | None = True, key: str | None = None,
                claim: str | None = None) -> Verdict:
        """Record ``verdict``; with ``expected`` (True / False) assert that it holds / fails, in every profile (for
        exact findings that hold at every size)."""
        self._record_verdict(verdict, key, expected, expected is not None, claim)
        if expected is not None:
            check_verdict(verdict, expected)
        else:
            print(verdict)
        return verdict

    def state(self, verdicts: dict, expected: dict, claim_of=None) -> None:
        """Print every verdict of ``verdicts`` (key → Verdict), record it and, in the default and full profiles,
        assert those in ``expected`` (key → whether the claim holds). ``claim_of``:
        key → the claim label it belongs to (a dict or a function); default the current claim."""
        for key, verdict in verdicts.items():
            label = claim_of(key) if callable(claim_of) else (claim_of or {}).get(key)
            asserted = self.profile != "smoke" and key in expected
            self._record_verdict(verdict, key, expected.get(key), asserted, label)
            if asserted:
                check_verdict(verdict, expected[key])
            else:
                print(("" if self.profile == "smoke" else "(not asserted) ") + str(verdict))

    def table(self):
        """This notebook's findings so far as a table (a pandas DataFrame, one row per finding: its claim, what was
        found, whether it holds, whether it is asserted, the numbers), for the notebook's closing "what we found"."""
        import pandas as pd  # only here: building the book does not need it

        rows = [(c["label"], *_fields(f)) for c in self.doc["claims"] for f in c["findings"]]
        return pd.DataFrame(rows, columns=["claim", "finding", "result", "asserted", "numbers"])

    def _record_verdict(self, verdict: Verdict, key, expected, asserted: bool, label) -> None:
        if not isinstance(verdict, Verdict):
            raise TypeError(f"expected a pds.lab.experiments.Verdict, got {type(verdict).__name__}")
        self._add({"kind": "verdict", "key": key, "claim": verdict.claim, "holds": bool(verdict.holds),
                   "expected": expected, "asserted": bool(asserted), "detail": verdict.detail,
                   "numbers": getattr(verdict, "numbers", None) or {}}, label)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, ensure_ascii=False) + "\n")
        tmp.replace(self.path)


# -- reading and rendering ---------------------------------------------------------------------------------------
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


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _context(claim: dict) -> str:
    parts = []
    if claim.get("n") is not None:
        parts.append(f"n = {fmt(claim['n'])} per run")
    if claim.get("seeds") is not None:
        parts.append(("seed " if len(claim["seeds"]) == 1 else "seeds ") + ", ".join(fmt(s) for s in claim["seeds"]))
    floor = claim.get("floor")
    if floor:
        parts.append(f"floor (real images at the same n) {fmt(floor['mean'])} ± {fmt(floor['std'])}")
    return "; ".join(parts)


def _fields(f: dict) -> tuple[str, str, str, str]:
    """(what, result, asserted, numbers) of one finding, as FINDINGS.md and :meth:`Findings.table` show it."""
    if f["kind"] == "check":
        numbers = f"{fmt(f['value'])} (required {'≤' if f['op'] == '<=' else '≥'} {fmt(f['bound'])})"
        return (f["name"].strip(), "holds" if f["holds"] else "fails", "yes" if f["asserted"] else "printed only",
                numbers)
    asserted = "yes" if f.get("expected") is not None and f["asserted"] else "printed only"
    return f["claim"], "holds" if f["holds"] else "does not hold", asserted, f["detail"]


def _row(f: dict) -> str:
    what, result, asserted, numbers = _fields(f)
    result = "**fails**" if result == "fails" else result
    return f"| {_cell(what)} | {result} | {asserted} | {_cell(numbers)} |"


def render(docs: list[dict], profile: str) -> str:
    """The Markdown document of the findings ``docs`` of ``profile`` (see the module docstring)."""
    out = [f"# Findings ({profile} profile)", "",
           f"Generated by `make findings` from what the notebooks of the `{profile}` profile wrote when they ran "
           "(`build/notebooks/<profile>/*.findings.json`); nothing here is typed by hand. One section per notebook, "
           "one table per claim of the paper it checks. *Result* is what the numbers say; *asserted* means the "
           "notebook fails when that result changes, *printed only* that it shows it without insisting on it (a "
           "smoke-profile size, a timing, a setting outside the stated findings). The stand-ins are named in each "
           "section: none of them is the paper's data set.", ""]
    if not docs:
        out += ["No findings were written: run `make notebooks` first.", ""]
    for doc in docs:
        out += [f"## {doc['title']}", "", f"Notebook `notebooks/{doc['notebook']}.ipynb`."]
        if doc.get("stand_in"):
            out[-1] += f" Stand-in: {doc['stand_in']}."
        out.append("")
        if doc.get("note"):
            out += [doc["note"], ""]
        claims = [c for c in doc["claims"] if c["findings"]]
        if not claims and not doc.get("note"):
            out += ["This notebook recorded no finding.", ""]
        for c in claims:
            out += [f"### {c['label']}" + (f" — {c['text']}" if c.get("text") else ""), ""]
            ctx = _context(c)
            if ctx:
                out += [f"Runs: {ctx}.", ""]
            out += ["| finding | result | asserted | the numbers behind it |", "|---|---|---|---|"]
            out += [_row(f) for f in c["findings"]]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def _numbers_in(text: str) -> list[str]:
    return [m.group(0).replace("−", "-") for m in NUMBER.finditer(text)]


def _walk(x, strings: list, numbers: list) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            strings.append(str(k))
            _walk(v, strings, numbers)
    elif isinstance(x, list):
        for v in x:
            _walk(v, strings, numbers)
    elif isinstance(x, bool) or x is None:
        return
    elif isinstance(x, int | float):
        numbers.append(x)
    else:
        strings.append(str(x))


def untraced_numbers(markdown: str, docs: list[dict]) -> list[str]:
    """Numbers in ``markdown`` that come from no findings document of ``docs``: a number is traced when it appears in
    one of their strings (claims, details, titles, names) or is one of their numbers as :func:`fmt` shows it (or as
    an integer). The fixed text of :func:`render` holds no digits."""
    strings: list = []
    numbers: list = []
    for doc in docs:
        _walk(doc, strings, numbers)
    known = {t.lstrip("-") for s in strings for t in _numbers_in(s)}
    for v in numbers:
        known.add(fmt(v).lstrip("-"))
        if isinstance(v, float) and v.is_integer():
            known.add(str(int(v)).lstrip("-"))
    return [t for t in _numbers_in(markdown) if t.lstrip("-") not in known]


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
    for x, y in zip(_numbers_in(a), _numbers_in(b), strict=True):
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


# -- command line ----------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds.publish.findings",
                                     description="render the notebooks' findings")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write the findings of a profile as Markdown")
    r.add_argument("--profile", default="default", choices=PROFILES)
    r.add_argument("--src", default=None, help="folder of *.findings.json (default: where the profile writes them)")
    r.add_argument("--out", default=None, help="Markdown file (default: FINDINGS.md for the default profile, "
                                               "build/notebooks/<profile>/FINDINGS.md otherwise)")
    r.add_argument("--commit", action="store_true", help="also copy the JSON files to data/findings/<profile>/ (what "
                                                         "the committed FINDINGS.md is checked against)")
    c = sub.add_parser("compare", help="say whether the findings just written are the committed ones (exit 1 if not)")
    c.add_argument("--profile", default="default", choices=PROFILES)
    c.add_argument("--src", default=None, help="folder of *.findings.json (default: where the profile writes them)")
    args = parser.parse_args(argv)
    src = Path(args.src) if args.src else findings_dir(args.profile)
    if args.command == "compare":
        committed = COMMITTED_DIR / args.profile
        if not committed.is_dir():
            print(f"no committed findings for the {args.profile} profile ({committed}): nothing to compare with")
            return 0
        diffs = compare(src, committed)
        for line in diffs:
            print("differs from the committed findings:", line, file=sys.stderr)
        if diffs:
            print(f"(if the change is intended: 'PROFILE={args.profile} make findings' commits the new findings)",
                  file=sys.stderr)
        if not diffs:
            print(f"{src}: the committed findings ({committed}): the same results, measured numbers within {RTOL:g}, "
                  f"residuals within their bounds and {ORDERS} orders of magnitude"
                  + (f" (in {', '.join(TIMED)} the asserted results; their times are measured anew)" if TIMED else ""))
        return 1 if diffs else 0
    docs = load(src)
    if not docs:
        print(f"no findings in {src}: run the notebooks of the {args.profile} profile first "
              f"(PROFILE={args.profile} make notebooks)", file=sys.stderr)
        return 2
    stale = [d["notebook"] for d in docs if d.get("source") not in (None, source_digest(d["notebook"]))]
    if args.commit and stale:  # findings of an earlier run of other code must not become the committed ones
        print(f"findings in {src} were executed from other code than notebooks/ now holds: {', '.join(stale)}; run "
              f"them again first (PROFILE={args.profile} make notebooks, or python -m pds.publish.notebooks --profile "
              f"{args.profile} {' '.join(n[:2] for n in stale)})", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (REPO_ROOT / "FINDINGS.md" if args.profile == "default"
                                           else src / "FINDINGS.md")
    text = render(docs, args.profile)
    missing = untraced_numbers(text, docs)
    if missing:  # the renderer itself typed a number: refuse to write it
        print(f"numbers not from the findings: {missing[:10]}", file=sys.stderr)
        return 1
    out.write_text(text)
    if args.commit:
        dst = COMMITTED_DIR / args.profile
        if dst.is_dir():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for doc in docs:
            shutil.copy2(src / f"{doc['notebook']}{SUFFIX}", dst / f"{doc['notebook']}{SUFFIX}")
    print(f"{out}: {len(docs)} notebooks, {sum(len(c['findings']) for d in docs for c in d['claims'])} findings"
          + (f"; JSON copied to {COMMITTED_DIR / args.profile}" if args.commit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
