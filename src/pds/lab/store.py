"""A store of finished computations, found again by what they compute (:mod:`pds.fingerprint`), on any machine.

A computation is described by a JSON-able dict — its settings, and :class:`~pds.fingerprint.Fingerprint` s of what
its result depends on (the code's behaviour on canonical inputs, a network, a data set). Its **key** is the SHA-1 (16
hex digits) of that description with every fingerprint named by its id; the fingerprints themselves are kept beside
the rows (``fingerprints.jsonl``). A result is found by its key or, on a machine where a fingerprint's id came out
otherwise (float kernels round differently), by a stored description that is the same within the fingerprints'
tolerances (:meth:`pds.fingerprint.FingerprintTable.matches`). Nothing is compared bit for bit.

Rows are JSON lines in ``folder/<name>.jsonl`` (``{"key", "description", **fields}``), appended in one write each, so
a computation killed midway loses only itself. ``shipped``: a read-only folder of the same layout consulted after
``folder`` (the repository ships the default profile's expensive results under ``data/results/``); :meth:`Store.ship`
copies what was computed into such a folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from pds.fingerprint import FingerprintTable, ids_in, skeleton
from pds.storage import append_line, atomic_write, read_lines

__all__ = ["Store", "description_key", "write_rows"]


def description_key(description: dict) -> str:
    """SHA-1 (16 hex digits) of a description's canonical JSON, its fingerprints already named by their ids."""
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """Rows ``{"key", "description", **fields}`` in ``folder/<name>.jsonl`` (see the module docstring)."""

    def __init__(self, folder, shipped=None, name: str = "results"):
        self.folder, self.shipped, self.name = Path(folder), (Path(shipped) if shipped else None), name
        self.table = FingerprintTable(self.folder, self.shipped)
        shipped = [] if self.shipped is None else read_lines(self._file(self.shipped))
        # (row, its skeleton's key), computed once: a reload after every append of a sweep re-reads only this folder
        self._shipped_rows = [(r, self._skeleton_key(r)) for r in shipped if "key" in r and "description" in r]
        self._load()

    def _file(self, where: Path) -> Path:
        return where / f"{self.name}.jsonl"

    def _stat(self):
        path = self._file(self.folder)
        return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None

    def _load(self) -> None:
        """Index the shipped rows and this folder's; a line cut by a kill is skipped, and that computation is simply
        redone. Every stored version of a key is kept, this folder's first (a row here replaces a shipped one with its
        key only where it can serve: :meth:`find`'s ``usable``)."""
        self._state, self._versions, self._by_skeleton = self._stat(), {}, {}
        for row, skeleton_key in self._shipped_rows:
            self._index(row, self.shipped, skeleton_key)
        for row in read_lines(self._file(self.folder)):
            if "key" in row and "description" in row:
                self._index(row, self.folder, self._skeleton_key(row))

    def _fresh(self) -> None:
        """Read the rows again if this folder's file changed (another process, or this one, appended: two sweeps may
        share a folder, and a row appended between two of ours is then not missed)."""
        if self._stat() != self._state:
            self._load()

    @staticmethod
    def _skeleton_key(row: dict) -> str:
        return description_key(skeleton(row["description"]))

    def _index(self, row: dict, where: Path, skeleton_key: str) -> None:
        entry, mine = (row, where), where == self.folder
        alike = self._by_skeleton.setdefault(skeleton_key, [])
        versions = self._versions.setdefault(row["key"], [])
        if mine:  # a later row of this folder replaces its earlier one
            old = [e for e in versions if e[1] == self.folder]
            versions[:] = [e for e in versions if e[1] != self.folder]
            alike[:] = [e for e in alike if not any(e[0] is o[0] for o in old)]
        for where_to in (versions, alike):
            where_to.insert(0 if mine else len(where_to), entry)

    def versions(self, key: str) -> list[tuple[dict, Path]]:
        """Every stored (row, folder) of ``key``, this folder's first."""
        self._fresh()
        return list(self._versions.get(key, []))

    def rows(self) -> list[dict]:
        """One row per key (this folder's where it has one)."""
        self._fresh()
        return [v[0][0] for v in self._versions.values()]

    def row(self, key: str) -> dict | None:
        """The stored row of ``key`` (this folder's first), or None."""
        found = self.versions(key)
        return found[0][0] if found else None

    def key(self, description: dict) -> str:
        """The key of ``description`` (which may hold :class:`~pds.fingerprint.Fingerprint` s)."""
        return description_key(self.table.ids(description))

    def find(self, description: dict, usable: Callable[[dict, Path], bool] | None = None) -> dict | None:
        """The stored row of ``description``: by its key, or a row whose description matches within tolerance (this
        folder's rows first); ``usable(row, folder)``: whether a row found can serve (e.g. its samples file is
        there)."""
        self._fresh()
        wanted = self.table.ids(description)

        def ok(entry):
            return usable is None or usable(*entry)

        for entry in self._versions.get(description_key(wanted), []):
            if ok(entry):
                return entry[0]
        alike = self._by_skeleton.get(description_key(skeleton(wanted)), [])
        return next((r for r, f in alike if ok((r, f)) and self.table.matches(r["description"], wanted)), None)

    def add(self, description: dict, **fields) -> dict:
        """Store a finished result: ``fields`` (JSON-able) under ``description``; returns the row."""
        wanted = self.table.ids(description)
        row = {"key": description_key(wanted), "description": wanted, **fields}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.table.save(wanted)
        append_line(self._file(self.folder), row, f"the result {row['key']}")  # read back by the next _fresh
        return row

    def get_or_compute(self, description: dict, compute: Callable[[], dict]) -> dict:
        """The stored row of ``description`` or, when there is none, ``compute()``'s fields (stored at once, with the
        wall time ``wall_s``)."""
        row = self.find(description)
        if row is None:
            t0 = time.perf_counter()
            fields = compute()
            row = self.add(description, **fields, wall_s=time.perf_counter() - t0)
        return row

    def ship(self, dst) -> int:
        """Write every row into ``dst``/<name>.jsonl (merged with what is there; a row of this store replaces one with
        its key) and the fingerprints they name into ``dst``/fingerprints.jsonl; returns the count of rows."""
        there = Store(dst, name=self.name)
        self.table.add(*there.table.known.values())
        merged = {**{r["key"]: r for r in there.rows()}, **{r["key"]: r for r in self.rows()}}  # ours replace theirs
        return write_rows(dst, self.name, merged.values(), self.table)


def write_rows(folder, name: str, rows, table: FingerprintTable) -> int:
    """Write ``rows`` (``{"key", "description", **fields}``) as ``folder``/<name>.jsonl and the fingerprints their
    descriptions name as its fingerprints.jsonl (every one known to ``table``), each atomically; returns the count."""
    folder, rows = Path(folder), list(rows)
    folder.mkdir(parents=True, exist_ok=True)
    used = sorted({i for row in rows for i in ids_in(row["description"])})
    missing = [i for i in used if i not in table.known]
    if missing:
        raise ValueError(f"{len(missing)} fingerprints named by the rows are unknown, e.g. {missing[:3]}")
    fps = "".join(json.dumps(table.known[i].to_dict()) + "\n" for i in used)
    atomic_write(folder / FingerprintTable.NAME, lambda tmp: tmp.write_text(fps), "the fingerprints of the rows")
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(folder / f"{name}.jsonl", lambda tmp: tmp.write_text(text), f"the {name}")
    return len(rows)
