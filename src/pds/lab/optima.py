"""Finished searches of :func:`pds.exact.optimal.optimise`, kept and found again on any machine: :class:`OptimumStore`,
a :class:`pds.lab.store.Store` of optima (the exact maths stays in :mod:`pds.exact.optimal`; this is its file
storage)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pds.exact.optimal import Optimum, behaviour_fingerprint
from pds.filters import save_filters
from pds.fingerprint import Fingerprint
from pds.lab.store import Store

__all__ = ["OptimumStore"]


class OptimumStore:
    """Finished optima: a :class:`pds.lab.store.Store` named ``optima`` in ``folder`` (``shipped``: e.g.
    ``data/results/optimal/default``) whose description of a search is ``{"description": the search's (the target's
    fingerprint, settings, sampler, NFE, gains, knots, iterations), "fingerprint":
    :func:`pds.exact.optimal.behaviour_fingerprint`}``; :meth:`get_or_run` runs what is missing."""

    def __init__(self, folder, shipped=None):
        self.store = Store(folder, shipped, name="optima")

    @functools.cached_property
    def fingerprint(self) -> Fingerprint:
        return behaviour_fingerprint()

    def _full(self, description: dict) -> dict:
        return {"description": description, "fingerprint": self.fingerprint}

    def find(self, description: dict) -> dict | None:
        """The stored row of a search, by its key or by a matching description."""
        return self.store.find(self._full(description))

    def get_or_run(self, description: dict, run) -> Optimum:
        """The stored optimum of ``description`` or, when there is none, ``run()``'s (stored at once)."""
        row = self.store.get_or_compute(self._full(description), lambda: {"optimum": run().to_dict()})
        return Optimum.from_dict(row["optimum"])

    def save_filter(self, which, shape, path) -> Path:
        """The frequency filter of a stored optimum (``which``: its key or its description) at ``shape`` [C, H, W],
        saved to ``path`` with the recipe that rebuilds it (``pds.lab.cache`` records it with every run that uses
        it)."""
        row = self.store.row(which) if isinstance(which, str) else self.find(which)
        if row is None:
            name = which if isinstance(which, str) else self.store.key(self._full(which))
            raise KeyError(f"no stored optimum {name}")
        opt = Optimum.from_dict(row["optimum"])
        shape = [int(s) for s in shape]
        return save_filters(path, opt.filter.frequency_filter(tuple(shape)),
                            source=f"pds.exact.optimal: {opt.sampler}, {opt.nfe} NFE, optimum {row['key']}",
                            variant="optimised (alpha=None)",
                            recipe=json.dumps({"optimum": row["key"], "shape": shape}, sort_keys=True))

    def ship(self, dst) -> int:
        """Write every stored optimum into ``dst``/optima.jsonl (merged with what is there) and the fingerprints they
        name into ``dst``/fingerprints.jsonl; returns the count."""
        return self.store.ship(dst)
