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
just run found what is committed (:mod:`pds.publish.compare` says how each number is judged)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from pds.lab.verdicts import Verdict, summary
from pds.publish.compare import ORDERS, RTOL, SUFFIX, TIMED, compare, load, numbers_in
from pds.publish.notebooks import PROFILES, check_profile, check_verdict, code_cells
from pds.publish.notebooks import check as check_number
from pds.storage import BUILD_DIR, DATA_DIR, NOTEBOOK_DIR, REPO_ROOT

__all__ = ["Findings", "findings_dir", "expected", "render", "fmt", "untraced_numbers",
           "FINDINGS_ENV", "COMMITTED_DIR"]

FINDINGS_ENV = "PDS_FINDINGS_DIR"
COMMITTED_DIR = DATA_DIR / "findings"


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
    check_profile(profile)
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


def notebook_title(notebook: str) -> str:
    """The first line of ``notebooks/<notebook>.ipynb``'s first cell, without its ``#``."""
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
        self.doc = {"notebook": notebook, "title": notebook_title(notebook), "profile": profile, "stand_in": stand_in,
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
    known = {t.lstrip("-") for s in strings for t in numbers_in(s)}
    for v in numbers:
        known.add(fmt(v).lstrip("-"))
        if isinstance(v, float) and v.is_integer():
            known.add(str(int(v)).lstrip("-"))
    return [t for t in numbers_in(markdown) if t.lstrip("-") not in known]


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
