"""Every notebook runs end-to-end under papermill in the smoke profile (one test per notebook).

A failing cell fails the test; the executed copy, traceback included, is kept under
build/notebooks/smoke/ for reading.
"""

from __future__ import annotations

import json

import pytest

from pds.notebooks import list_notebooks, run_notebook
from pds.paths import REPO_ROOT

NOTEBOOKS = list_notebooks()
OUT = REPO_ROOT / "build" / "notebooks" / "smoke"


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


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(path):
    out = run_notebook(path, "smoke", OUT, timeout=600)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
