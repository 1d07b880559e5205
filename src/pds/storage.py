"""Where the repository keeps things, and writing there so that nothing finished is lost and nothing partial is read.

``REPO_ROOT``, ``DATA_DIR``, ... are every path the package uses: the package lives in ``src/pds`` of the repository;
the shipped artefacts (filters, checkpoints, runs) are in ``data/``, notebooks write ``figures/`` and keep finished
runs under ``runs/`` (git-ignored), builds go to ``build/``.

The writers (each documented below): :func:`atomic_write`, so that a reader sees the old file or the new one, never
half of one (a kill at any moment leaves at most a ``*.tmp*`` file, which readers ignore); :func:`append_text`,
:func:`append_line` and :func:`read_lines` for JSON lines a kill can cut; :class:`RunLock`, so that two processes
started by hand cannot draw into one run folder at once. A full disk (ENOSPC, EDQUOT) raises :class:`DiskFull`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["REPO_ROOT", "DATA_DIR", "FIGURES_DIR", "RUNS_DIR", "BUILD_DIR", "NOTEBOOK_DIR",
           "DiskFull", "check_output", "atomic_write", "append_text", "append_line", "read_lines", "RunLock",
           "RunLocked", "free_bytes"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
FIGURES_DIR = REPO_ROOT / "figures"
RUNS_DIR = REPO_ROOT / "runs"
BUILD_DIR = REPO_ROOT / "build"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """The disk filled up while a result was written; the partial file was removed."""

    def __str__(self) -> str:
        return str(self.strerror)


class RunLocked(RuntimeError):
    """Another live process holds the run folder."""


def free_bytes(path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_output(path, flag: str, folder: bool = False) -> Path:
    """Refuse, before anything is written, an output ``path`` that cannot be written: a folder where a file is
    asked for (``folder=False``), a file where a folder is (``folder=True``), or a path under a file. ``flag`` names
    the option in the message (e.g. "--out")."""
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} is a file, not a folder: name a new or existing folder")
    if not folder and p.is_dir():
        raise ValueError(f"{flag} {p} is a folder: name a file (inside it, if you like)")
    for above in (p if folder else p.parent, *(p if folder else p.parent).parents):
        if above.exists():
            if not above.is_dir():
                raise ValueError(f"{flag} {p}: {above} is a file, so nothing can be written under it; choose a path "
                                 "inside a folder")
            break
    return p


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def atomic_write(path, write: Callable[[Path], None], what: str, done: str = "") -> Path:
    """``write(tmp)`` writes the content to a temporary path beside ``path``; it is then renamed to ``path``. On a full
    disk the temporary file is removed and :class:`DiskFull` says ``what`` was being written, ``done`` (what is
    finished, e.g. "3 of 8 shards"), the free space and that rerunning the same command resumes."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{''.join(path.suffixes) or '.tmp'}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        if exc.errno in FULL:
            finished = f"; {done} are finished and kept" if done else ""
            raise DiskFull(exc.errno, f"disk full while writing {what} ({path}){finished}; "
                                      f"{_human(free_bytes(path))} free there: free space and rerun the same "
                                      "command to resume") from None
        raise
    return path


def append_text(path, text: str, what: str) -> None:
    """Append ``text`` (whole lines) to ``path`` in a single O_APPEND write; when a kill cut the previous line, a
    newline goes first (the cut line then stands alone, and readers skip it). A full disk raises :class:`DiskFull`."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    text = "\n" + text
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            data = text.encode()
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in FULL:
            raise DiskFull(exc.errno, f"disk full while writing {what} ({path}); {_human(free_bytes(path))} free "
                                      "there: free space and rerun the same command to resume") from None
        raise


def append_line(path, record: dict, what: str) -> None:
    """Append ``record`` as one JSON line (:func:`append_text`)."""
    append_text(path, json.dumps(record) + "\n", what)


def read_lines(path) -> list[dict]:
    """The JSON records of a file written by :func:`append_line` ([] when it does not exist); a line a kill cut does
    not parse and is skipped (what it recorded is simply redone)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """``acquire()`` ... ``release()``: hold ``folder/.pds.lock`` (host, pid, start time, ``what``) in between.
    Taken by another live process of this host, or by any process of another host: :class:`RunLocked`, naming it.
    Left by a process that is gone (a kill): taken over, with a notice on stderr."""

    NAME = ".pds.lock"

    def __init__(self, folder, what: str = "a run"):
        self.path = Path(folder) / self.NAME
        self.what = what
        self.held = False

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "what": self.what}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # being written this instant, or cut by a kill: look again
                    time.sleep(0.2)
                    holder = self._holder()
                if holder is not None and holder.get("host") != me["host"]:
                    raise RunLocked(f"{self.path.parent} is being written by pid {holder.get('pid')} on host "
                                    f"{holder.get('host')} ({holder.get('what')}); wait for it to finish, or delete "
                                    f"{self.path} if that process is gone") from None
                if holder is not None and _alive(int(holder.get("pid", -1))):
                    raise RunLocked(f"{self.path.parent} is being written by another process, pid {holder['pid']} on "
                                    f"this host ({holder.get('what')}); wait for it to finish or stop it") from None
                print(f"pds: taking over the lock of {self.path.parent} left by "
                      f"{'an unreadable lock' if holder is None else 'pid ' + str(holder.get('pid'))}, which is gone",
                      file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            self.held = True
            return self
        raise RunLocked(f"could not take the lock {self.path}: other processes keep taking it")

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is None or holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
