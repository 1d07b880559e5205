"""benchmarks/gpu_session.sh, the script of a lent GPU session, runs every step at tiny sizes on the CPU (DRY=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

from pds.storage import REPO_ROOT


def test_the_gpu_session_script_runs_every_step_dry(tmp_path):
    out = tmp_path / "session"
    env = {**os.environ, "DRY": "1", "OUT": str(out), "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_session.sh")], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = {s["step"]: s for s in map(json.loads, (out / "steps.jsonl").read_text().splitlines())}
    assert set(steps) == {"full_shapes", "ncsnpp_speed", "torchrun", "train"}
    assert all(s["rc"] == 0 for s in steps.values()), steps
    rows = json.loads((out / "full_shapes_cpu.json").read_text())
    assert [r["experiment"] for r in rows] == ["mnist_ncsn", "cifar10_ncsnpp"] and all(r["batch"] == 2 for r in rows)
    assert json.loads((out / "ncsnpp_speed_cpu.json").read_text())
    assert json.loads((out / "torchrun_nccl.json").read_text())["images"] == 8
    with tarfile.open(out / "ncsnpp_fashion32_nf32.tar") as t:
        assert sorted(t.getnames()) == ["ncsnpp_fashion32_nf32.json", "ncsnpp_fashion32_nf32.log.jsonl",
                                        "ncsnpp_fashion32_nf32.pth"]
