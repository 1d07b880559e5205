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

__all__ = ["Store", "description_key"]


def description_key(description: dict) -> str:
    """SHA-1 (16 hex digits) of a description's canonical JSON, its fingerprints already named by their ids."""
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """Rows ``{"key", "description", **fields}`` in ``folder/<name>.jsonl`` (see the module docstring)."""

    def __init__(self, folder, shipped=None, name: str = "results"):
        self.folder, self.shipped, self.name = Path(folder), (Path(shipped) if shipped else None), name
        self.table = FingerprintTable(self.folder, self.shipped)
        self._rows: dict[str, dict] = {}
        self._by_skeleton: dict[str, list[dict]] = {}  # rows whose descriptions differ at most in fingerprint ids
        for where in (self.shipped, self.folder):
            if where is not None:
                for row in read_lines(where / f"{name}.jsonl"):
                    if "key" in row:
                        self._index(row)

    def _index(self, row: dict) -> None:
        self._rows[row["key"]] = row
        self._by_skeleton.setdefault(description_key(skeleton(row["description"])), []).append(row)

    def rows(self) -> list[dict]:
        return list(self._rows.values())

    def row(self, key: str) -> dict | None:
        """The stored row of ``key``, or None."""
        return self._rows.get(key)

    def key(self, description: dict) -> str:
        """The key of ``description`` (which may hold :class:`~pds.fingerprint.Fingerprint` s)."""
        return description_key(self.table.ids(description))

    def find(self, description: dict) -> dict | None:
        """The stored row of ``description``: by its key, or a row whose description matches within tolerance."""
        wanted = self.table.ids(description)
        row = self._rows.get(description_key(wanted))
        if row is not None:
            return row
        alike = self._by_skeleton.get(description_key(skeleton(wanted)), [])
        return next((r for r in alike if self.table.matches(r["description"], wanted)), None)

    def add(self, description: dict, **fields) -> dict:
        """Store a finished result: ``fields`` (JSON-able) under ``description``; returns the row."""
        wanted = self.table.ids(description)
        row = {"key": description_key(wanted), "description": wanted, **fields}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.table.save(wanted)
        append_line(self.folder / f"{self.name}.jsonl", row, f"the result {row['key']}")
        self._index(row)
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
        dst = Path(dst)
        dst.mkdir(parents=True, exist_ok=True)
        there = Store(dst, name=self.name)
        merged = {**there._rows, **self._rows}
        self.table.add(*there.table.known.values())
        used = sorted({i for row in merged.values() for i in ids_in(row["description"])})
        fps = "".join(json.dumps(self.table.known[i].to_dict()) + "\n" for i in used)
        atomic_write(dst / FingerprintTable.NAME, lambda tmp: tmp.write_text(fps), "the fingerprints of the rows")
        text = "".join(json.dumps(r) + "\n" for r in merged.values())
        atomic_write(dst / f"{self.name}.jsonl", lambda tmp: tmp.write_text(text), f"the shipped {self.name}")
        return len(merged)
