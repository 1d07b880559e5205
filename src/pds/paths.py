"""Where the repository keeps things (one place for every path the package uses).

The package lives in ``src/pds`` of the repository; the shipped artefacts (filters, checkpoints) are in
``data/``, notebooks write ``figures/`` and keep finished runs under ``runs/`` (git-ignored).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "DATA_DIR", "FIGURES_DIR", "RUNS_DIR", "BUILD_DIR", "NOTEBOOK_DIR"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
FIGURES_DIR = REPO_ROOT / "figures"
RUNS_DIR = REPO_ROOT / "runs"
BUILD_DIR = REPO_ROOT / "build"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
