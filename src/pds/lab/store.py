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
        self._shipped_rows = [] if self.shipped is None else [r for r in read_lines(self._file(self.shipped))
                                                                if "key" in r and "description" in r]
        self._load()

    def _file(self, where: Path) -> Path:
        return where / f"{self.name}.jsonl"

    def _stat(self):
        path = self._file(self.folder)
        return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None

    def _load(self) -> None:
        """Index the shipped rows, then this folder's (a row of this folder replaces a shipped one with its key); a
        line cut by a kill is skipped, and that computation is simply redone."""
        self._state, self._rows, self._by_skeleton, self._where = self._stat(), {}, {}, {}
        for where, rows in ((self.shipped, self._shipped_rows), (self.folder, read_lines(self._file(self.folder)))):
            for row in rows:
                if "key" in row and "description" in row:
                    self._index(row, where)

    def _fresh(self) -> None:
        """Read this folder's rows again if its file changed (another process appended: two sweeps may share it)."""
        if self._stat() != self._state:
            self._load()

    def _index(self, row: dict, where: Path) -> None:
        if row["key"] in self._rows:  # replaced: drop the older row from its skeleton's list
            older = self._rows[row["key"]]
            alike = self._by_skeleton.get(description_key(skeleton(older["description"])), [])
            alike[:] = [r for r in alike if r is not older]
        self._rows[row["key"]], self._where[row["key"]] = row, where
        self._by_skeleton.setdefault(description_key(skeleton(row["description"])), []).append(row)

    def rows(self) -> list[dict]:
        self._fresh()
        return list(self._rows.values())

    def row(self, key: str) -> dict | None:
        """The stored row of ``key``, or None."""
        self._fresh()
        return self._rows.get(key)

    def where(self, key: str) -> Path | None:
        """The folder the row of ``key`` was read from (this store's or the shipped one), or None."""
        self._fresh()
        return self._where.get(key)

    def key(self, description: dict) -> str:
        """The key of ``description`` (which may hold :class:`~pds.fingerprint.Fingerprint` s)."""
        return description_key(self.table.ids(description))

    def find(self, description: dict, usable: Callable[[dict, Path], bool] | None = None) -> dict | None:
        """The stored row of ``description``: by its key, or a row whose description matches within tolerance;
        ``usable(row, folder)``: whether a row found can serve (e.g. its samples file is there)."""
        self._fresh()
        wanted = self.table.ids(description)

        def ok(row):
            return usable is None or usable(row, self._where[row["key"]])

        row = self._rows.get(description_key(wanted))
        if row is not None and ok(row):
            return row
        alike = self._by_skeleton.get(description_key(skeleton(wanted)), [])
        return next((r for r in alike if ok(r) and self.table.matches(r["description"], wanted)), None)

    def add(self, description: dict, **fields) -> dict:
        """Store a finished result: ``fields`` (JSON-able) under ``description``; returns the row."""
        wanted = self.table.ids(description)
        row = {"key": description_key(wanted), "description": wanted, **fields}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.table.save(wanted)
        self._fresh()
        append_line(self._file(self.folder), row, f"the result {row['key']}")
        self._index(row, self.folder)
        self._state = self._stat()
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
        merged = {**{r["key"]: r for r in there.rows()}, **{r["key"]: r for r in self.rows()}}
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
