"""A notebook run under another float kernel set finds what is committed and draws the committed figures (issue 37).

Another CPU (AVX-512 with or without FP16/BF16, AVX2, ...) rounds float32 and float64 kernels otherwise; on one machine
``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell`` does the same. Notebook 01 is where
round-off residuals are findings (Theorems 1 and 2, Eq. 11, Sec. 4.2 and 5 to 1e-9 and below): run in the default
profile under that kernel set, `python -m pds.publish.findings compare` accepts its findings and every figure it writes
is byte for byte the committed one, so `make notebooks` leaves `git status` clean there.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pds.publish.compare import compare
from pds.publish.findings import COMMITTED_DIR
from pds.storage import FIGURES_DIR

OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
NOTEBOOK = "01_fokker_planck_invariance"


@pytest.mark.notebook
def test_notebook_01_under_another_kernel_set_keeps_its_findings_and_figures(tmp_path):
    figures, found = tmp_path / "figures", tmp_path / "findings"
    env = {**os.environ, **OTHER_KERNELS, "OMP_NUM_THREADS": "1", "PDS_FIGURE_DIR": str(figures),
           "PDS_FINDINGS_DIR": str(found)}
    out = subprocess.run([sys.executable, "-m", "pds.publish.notebooks", "--profile", "default", "--out",
                          str(tmp_path / "executed"), NOTEBOOK], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    committed = COMMITTED_DIR / "default"
    diffs = [d for d in compare(found, committed) if not d.endswith(f"only in {committed}")]
    assert diffs == []
    drawn = sorted(figures.glob("*.png"))
    assert len(drawn) >= 5 and all(p.stem.startswith("01_") for p in drawn)
    changed = [p.name for p in drawn if p.read_bytes() != (FIGURES_DIR / p.name).read_bytes()]
    assert changed == [], f"figures that differ from the committed ones under {OTHER_KERNELS}: {changed}"
