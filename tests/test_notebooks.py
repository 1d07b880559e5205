"""Every notebook runs end-to-end under plain papermill in the smoke profile (one test per notebook), without
touching the shipped figures/ (the notebook itself sends smoke figures to build/).

A failing cell fails the test; the executed copy, traceback included, is kept under
build/notebooks/smoke/ for reading.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from pds.lab.notebooks import kernel_name, list_notebooks
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
    # a markdown cell introduces the notebook and precedes every step
    assert cells[0]["cell_type"] == "markdown"


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
def test_smoke_findings_and_the_smoke_book(tmp_path):
    """After the smoke runs above (pytest keeps this file's order): every notebook wrote its findings, their rendering
    holds no number that is not theirs, and the book built from the executed copies has a page per notebook, every
    image of every page exists and no relative link is broken (what `PROFILE=smoke make book` builds)."""
    from pds.lab.book import build, check_site
    from pds.lab.findings import load, render, untraced_numbers

    missing = [p.name for p in NOTEBOOKS if not (OUT / p.name).is_file()]
    assert not missing, f"not executed: {missing} (run the whole file: pytest tests/test_notebooks.py)"
    docs = load(OUT)
    assert [d["notebook"] for d in docs] == [p.stem for p in NOTEBOOKS]
    text = render(docs, "smoke")
    assert untraced_numbers(text, docs) == []
    result = build("smoke", src=OUT, out=tmp_path / "book")
    assert result["pages"] == [p.stem for p in NOTEBOOKS] and result["missing"] == []
    assert check_site(tmp_path / "book") == []
    page = (tmp_path / "book" / f"{NOTEBOOKS[0].stem}.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # the figures are in the page
    assert "Theorem 1" in (tmp_path / "book" / "findings.html").read_text()
