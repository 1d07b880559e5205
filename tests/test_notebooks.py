"""Every notebook runs end-to-end under plain papermill in the smoke profile (one test per notebook), without
touching the shipped figures/ (the notebook itself sends smoke figures to build/).

A failing cell fails the test; the executed copy, traceback included, is kept under
build/notebooks/smoke/ for reading.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from pds.publish.notebooks import kernel_name, list_notebooks
from pds.storage import BUILD_DIR, FIGURES_DIR

NOTEBOOKS = list_notebooks()
OUT = BUILD_DIR / "notebooks" / "smoke"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_source_is_clean(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), "no 'parameters' cell"
    assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), "source holds outputs"
    ids = [c.get("id") for c in cells]  # nbformat 4.5: every cell has a unique id (a missing one is a warning today)
    assert None not in ids and len(set(ids)) == len(ids), "cells without an id, or with the same id"
    # a markdown cell introduces the notebook and precedes every step
    assert cells[0]["cell_type"] == "markdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_ends_by_saying_what_it_found(path):
    """After its checks every notebook closes with "What we found": its findings as a table and a paragraph."""
    cells = json.loads(path.read_text())["cells"]
    heads = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
             and "".join(c["source"]).startswith("## What we found")]
    checks = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
              and "".join(c["source"]).startswith("## Checks")]
    assert len(heads) == 1 and checks and heads[0] > checks[0], "no single '## What we found' after '## Checks'"
    tail = cells[heads[0] + 1:]
    assert [c["cell_type"] for c in tail] == ["code", "markdown"], [c["cell_type"] for c in tail]
    assert "".join(tail[0]["source"]).strip() == "findings.table()"
    assert len("".join(tail[1]["source"]).split()) >= 30, "the closing paragraph says too little"


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile_with_plain_papermill(path, monkeypatch):
    import papermill

    monkeypatch.delenv("PDS_FIGURE_DIR", raising=False)
    before = snapshot(FIGURES_DIR)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"profile": "smoke"}, kernel_name=kernel_name(),
                               cwd=str(path.parent), progress_bar=False, execution_timeout=600)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert snapshot(FIGURES_DIR) == before, "a smoke run changed the shipped figures/"


@pytest.mark.notebook
def test_smoke_findings_and_the_smoke_book():
    """After the smoke runs above (pytest keeps this file's order): every notebook wrote its findings, their rendering
    holds no number that is not theirs, and the book built from the executed copies has a page per notebook, every
    image of every page exists and no relative link is broken (what `PROFILE=smoke make book` builds)."""
    from pds.publish.book import build, check_site, learning_path
    from pds.publish.compare import load
    from pds.publish.findings import render, untraced_numbers

    missing = [p.name for p in NOTEBOOKS if not (OUT / p.name).is_file()]
    assert not missing, f"not executed: {missing} (run the whole file: pytest tests/test_notebooks.py)"
    docs = load(OUT)
    assert [d["notebook"] for d in docs] == [p.stem for p in NOTEBOOKS]
    text = render(docs, "smoke")
    assert untraced_numbers(text, docs) == []
    book = BUILD_DIR / "book"  # what `PROFILE=smoke make book` writes; kept for the browser test below
    result = build("smoke", src=OUT, out=book)
    path = [step["source"].stem for step in learning_path(OUT)]  # notebook order, 14 read right after 03
    assert result["pages"] == path and sorted(path) == [p.stem for p in NOTEBOOKS] and result["missing"] == []
    assert check_site(book) == []
    page = (book / f"{NOTEBOOKS[0].stem}.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # the figures are in the page
    assert "On this page:" in page and (book / "mathjax" / "MathJax.js").is_file()
    assert "Theorem 1" in (book / "findings.html").read_text()
    index = (book / "index.html").read_text()
    assert index.count("read first:") == len(NOTEBOOKS) and index.count(" min</span>") == len(NOTEBOOKS)


MATH_DONE = """
return !!(window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0)
"""


@pytest.mark.notebook
def test_the_book_typesets_its_equations_offline_in_a_real_browser(browser):
    """The smoke book (built by the test above into build/book/) opened from disk in headless Chromium with the network
    off: the index, and notebook 00's page with its equations typeset by the MathJax copied into the book (output
    elements present, no raw TeX left in the text, no MathJax error). Screenshots under build/book/screenshots/."""
    from selenium.webdriver.support.ui import WebDriverWait

    book = BUILD_DIR / "book"
    if not (book / "00_pds_step_by_step.html").is_file():
        pytest.fail("no smoke book in build/book/: run the whole file (pytest tests/test_notebooks.py)")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                                 "downloadThroughput": -1, "uploadThroughput": -1})
    shots = book / "screenshots"
    shots.mkdir(exist_ok=True)
    browser.get((book / "index.html").as_uri())
    assert "Learning" in browser.title or browser.find_elements("css selector", "ol.path li")
    browser.save_screenshot(str(shots / "index.png"))
    browser.get((book / "00_pds_step_by_step.html").as_uri())
    WebDriverWait(browser, 90).until(lambda d: d.execute_script(MATH_DONE))
    typeset = browser.find_elements("css selector", ".MathJax, .MathJax_Display")
    text = browser.execute_script("return document.body.innerText")
    assert len(typeset) >= 10, f"only {len(typeset)} typeset equations"
    assert "$$" not in text and "\\mathcal" not in text and "\\frac" not in text, "raw TeX left on the page"
    assert not browser.find_elements("css selector", ".MathJax_Error") and "Math Processing Error" not in text
    browser.save_screenshot(str(shots / "00_pds_step_by_step.png"))


def code_lines(cell) -> int:
    return sum(1 for line in "".join(cell["source"]).splitlines() if line.strip())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_teaches_before_it_audits(path):
    """Small cells in the lesson (at most two code cells — the setup and one more — above 15 non-blank lines, none
    above 40), the findings stated in one final "Checks" section after the lesson, whose cells may be longer (none above
    40: they hold the tables of what is compared and by which rule, issue 39), no locals() lookups; notebooks 11 and 12
    at most 200 code lines in their lesson."""
    cells = json.loads(path.read_text())["cells"]
    checks = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                   and "".join(c["source"]).startswith("## Checks")), len(cells))
    code = [c for c in cells[:checks] if c["cell_type"] == "code"]
    sizes = [code_lines(c) for c in code]
    assert sum(s > 15 for s in sizes) <= 2 and max(sizes) <= 40, f"code cells of {sorted(sizes)[-4:]} lines"
    audit = [code_lines(c) for c in cells[checks:] if c["cell_type"] == "code"]
    assert max(audit, default=0) <= 40, f"a Checks cell of {max(audit)} lines"
    assert not any("locals()" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")
    early = [i for i, c in enumerate(cells[:checks]) if c["cell_type"] == "code"
             and any(k in "".join(c["source"]) for k in ("findings.", "Findings("))]
    assert not early, f"findings stated before the Checks section, in cells {early}"
    if path.stem[:2] in ("11", "12"):
        assert sum(sizes) <= 200, f"{sum(sizes)} code lines"
