"""Faults a long run meets (issue 22): an unreadable shard, a full disk, two processes on one folder, a SIGKILL in the
middle of a write. Each ends in one line naming the problem and the fix, leaves nothing a rerun would trip over, and
the rerun completes with every index exactly once and the same images as an undisturbed run."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pds.cli import main
from pds.lab.generate import load_samples
from pds.storage import DiskFull, RunLock

SAMPLE = ["sample", "--checkpoint", "ncsn_fashion28", "--method", "vanilla", "--T", "3", "--count", "8",
          "--shard-size", "2", "--batch", "2", "--seed", "0"]


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """An undisturbed run of SAMPLE: the images every repaired run must reproduce."""
    out = tmp_path_factory.mktemp("clean") / "run"
    assert main([*SAMPLE, "--out", str(out)]) == 0
    return load_samples(out)[0]


def same_as_clean(out, clean):
    images, _ = load_samples(out)  # refuses a run with a missing or duplicated index
    assert torch.equal(images, clean)
    assert not list(out.glob("*.tmp*")) and not (out / RunLock.NAME).exists()


def test_an_unreadable_shard_is_named_by_fid_and_set_aside_by_a_rerun(tmp_path, capsys, clean):
    out = tmp_path / "run"
    assert main([*SAMPLE, "--out", str(out)]) == 0
    shard = out / "shard_00001.npz"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated
    code, err = run_cli(["fid", "--samples", str(out), "--ref-data", "fashion-mnist"], capsys)
    assert code == 2 and "shard_00001.npz cannot be read" in err and "rerun the same `pds sample` command" in err
    (out / "shard_00002.npz").write_text("not a zip")
    code, err = run_cli([*SAMPLE, "--out", str(out)], capsys)
    assert code == 0 and err.count("cannot be read") == 2 and "set aside as shard_00001.unreadable-1.npz.bad" in err
    assert (out / "shard_00001.unreadable-1.npz.bad").read_bytes() == data[: len(data) // 2]  # kept, not deleted
    same_as_clean(out, clean)


def full_disk_after(calls: int, real, file_arg: int = 0):
    """A writer that works ``calls`` times, then writes half a file and fails as a full disk does (``file_arg``: the
    position of its file argument)."""
    state = {"n": 0}

    def write(*args, **kwargs):
        state["n"] += 1
        if state["n"] > calls:
            with open(args[file_arg], "wb") as f:
                f.write(b"PK\x03\x04 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return write


def test_a_full_disk_while_writing_a_shard_is_one_line_and_the_rerun_completes(tmp_path, capsys, monkeypatch, clean):
    import pds.lab.generate as G

    out = tmp_path / "run"
    monkeypatch.setattr(G.np, "savez", full_disk_after(1, np.savez))
    code, err = run_cli([*SAMPLE, "--out", str(out)], capsys)
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("pds:")]  # not the bar
    assert code == 2 and len(errors) == 1 and errors[0].startswith("pds: error: disk full")
    assert "disk full while writing shard 1" in err and "1 of this process's 4 shards are finished and kept" in err
    assert "free there" in err and "rerun the same command" in err
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "shard_00000.npz"]  # no temporary file, no lock
    monkeypatch.undo()
    assert main([*SAMPLE, "--out", str(out)]) == 0
    same_as_clean(out, clean)


def test_a_full_disk_in_the_result_cache_and_in_a_training_checkpoint(tmp_path, capsys, monkeypatch):
    from test_experiments import counting_score, toy

    import pds.lab.cache as C
    import pds.models.checkpoints as K
    from pds.lab.cache import ResultCache
    from pds.lab.experiments import Method

    cache = ResultCache(tmp_path / "cache")
    model, (score_fn, _) = toy("ncsn"), counting_score()
    monkeypatch.setattr(C.np, "savez_compressed", full_disk_after(0, np.savez_compressed))
    with pytest.raises(DiskFull, match="disk full while writing the samples of run"):
        cache.run(model, Method(), 3, 2, 0, score_fn)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []  # no row, no partial samples
    monkeypatch.undo()
    assert cache.run(model, Method(), 3, 2, 0, score_fn)["nfe"] == 3

    train = ["train", "--kind", "ncsn", "--data", "fashion-mnist", "--n", "64", "--width", "4", "--levels", "3",
             "--steps", "4", "--batch-size", "8", "--save-every", "2", "--out", str(tmp_path / "m.pth")]
    monkeypatch.setattr(K.torch, "save", full_disk_after(1, torch.save, file_arg=1))
    code, err = run_cli(train, capsys)
    assert code == 2 and "disk full while writing a checkpoint" in err and "previous checkpoint" in err
    assert not list(tmp_path.glob("m.tmp*")) and (tmp_path / "m.pth").is_file()  # step 2 is kept
    monkeypatch.undo()
    assert main(train) == 0


CHILD = """
import sys, time, os
sys.argv = ["pds", *{args!r}]
{patch}
from pds.cli import main
sys.exit(main())
"""


def child(args, patch="", **kw):
    code = CHILD.format(args=list(args), patch=textwrap.dedent(patch))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def wait_for(path, proc, timeout=120.0):
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the child ended early: {proc.stderr.read()}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def test_two_processes_by_hand_on_one_folder_and_a_stale_lock(tmp_path, clean):
    out = tmp_path / "run"
    marker = tmp_path / "drawing"
    # the first process stops inside its first shard's write, holding the lock, until the marker is removed
    slow = f"""
    import numpy as np, pathlib
    real, first = np.savez, [True]
    def savez(*a, **k):
        if first.pop() if first else False:
            m = pathlib.Path({str(marker)!r})
            m.touch()
            while m.exists():
                time.sleep(0.05)
        return real(*a, **k)
    np.savez = savez
    """
    first = child([*SAMPLE, "--out", str(out)], slow)
    wait_for(marker, first)
    second = subprocess.run([sys.executable, "-m", "pds", *SAMPLE, "--out", str(out)], capture_output=True, text=True)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"being written by another process, pid {first.pid}" in second.stderr
    marker.unlink()
    assert first.wait(120) == 0
    same_as_clean(out, clean)
    # a lock left by a process that is gone is taken over, with a notice
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / RunLock.NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "what": "killed"}))
    again = subprocess.run([sys.executable, "-m", "pds", *SAMPLE, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 0 and f"left by pid {gone.pid}, which is gone" in again.stderr
    same_as_clean(out, clean)


@pytest.mark.parametrize("point", ["inside a shard's write", "between the write and the rename"])
def test_a_sigkill_in_the_middle_of_a_shard_and_the_rerun(tmp_path, point, clean):
    out = tmp_path / "run"
    marker = tmp_path / "now"
    # a real SIGKILL while the third shard is half written (or written but not yet renamed into place)
    hold = f"""
    import numpy as np, os, pathlib
    real_savez, real_replace, state = np.savez, os.replace, {{"n": 0}}
    def park():
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(600)
    def savez(file, *a, **k):
        state["n"] += 1
        if state["n"] == 3 and {point == "inside a shard's write"!r}:
            with open(file, "wb") as f:
                f.write(b"PK half")
            park()
        return real_savez(file, *a, **k)
    def replace(src, dst):
        if state["n"] == 3 and str(dst).endswith("shard_00002.npz"):
            park()
        return real_replace(src, dst)
    np.savez, os.replace = savez, replace
    """
    proc = child([*SAMPLE, "--out", str(out)], hold)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00000.npz", "shard_00001.npz", "shard_00002.tmp.npz"]
    rerun = subprocess.run([sys.executable, "-m", "pds", *SAMPLE, "--out", str(out)], capture_output=True, text=True)
    assert rerun.returncode == 0 and "which is gone" in rerun.stderr  # the killed process's lock is taken over
    same_as_clean(out, clean)


def test_a_sigkill_in_the_middle_of_a_cache_row(tmp_path):
    """The row is cut after half its bytes: the cache reads the other rows, redoes that run and appends it on a line of
    its own."""
    root = tmp_path / "cache"
    marker = tmp_path / "now"
    script = f"""
import os, sys, time, pathlib
sys.path.insert(0, {str(os.path.dirname(__file__))!r})
import pds.storage as S
from pds.lab.cache import ResultCache
from pds.lab.experiments import Method
from test_experiments import counting_score, toy
real = os.write
def write(fd, data):
    if b'"seed": 1' in data:  # the second run's row: half of it, then a SIGKILL
        real(fd, data[: len(data) // 2])
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(600)
    return real(fd, data)
if sys.argv[1] == "kill":
    S.os.write = write
cache, model, (score_fn, _) = ResultCache({str(root)!r}), toy("ncsnpp"), counting_score()
rows = [cache.run(model, Method(), 3, 4, s, score_fn) for s in (0, 1, 2)]
print(" ".join(r["key"] for r in rows))
"""
    proc = subprocess.Popen([sys.executable, "-c", script, "kill"], stdout=subprocess.PIPE, text=True)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    lines = (root / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and not lines[1].endswith("}")  # one whole row and half of the next
    done = subprocess.run([sys.executable, "-c", script, "rerun"], capture_output=True, text=True, check=True)
    keys = done.stdout.split()
    from pds.lab.cache import ResultCache

    rows = ResultCache(root).rows()
    assert sorted(r["key"] for r in rows) == sorted(keys) and len(set(keys)) == 3  # every run once, none cut
    assert all((root / f"{k}.npz").is_file() for k in keys)
