"""Stored runs drawn again and checked (``python -m pds.lab.recompute verify|found``, which runs :func:`main` here):
:func:`rebuild` builds a stored row's model, method and metric from what the row records, :func:`recompute` draws it
again and compares (bit for bit on the machine that drew it, within float32 tolerances elsewhere), and
:func:`still_found` says which shipped runs the current code no longer finds. The result cache itself is
:mod:`pds.lab.cache`."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from pds.configs import experiment as experiment_named
from pds.fingerprint import FingerprintTable, alike
from pds.lab.cache import (
    SAMPLE_FRACTION,
    SAMPLE_LEVELS,
    STATS_RTOL,
    VALUE_RTOL,
    ResultCache,
    _as_uint8,
    _draw_run,
    _settings_but_weights,
    describe,
    description_of,
    run_key,
    stored_rows,
)
from pds.lab.experiments import Method, SmallModel
from pds.lab.image_sets import els_twin, exact_model, exact_twin, image_set, landing_metric, statistics_filter_file
from pds.lab.metrics import fashion_test_fd, image_statistics
from pds.lab.optima import OptimumStore
from pds.models.local_score import PatchSchedule
from pds.storage import DATA_DIR, read_lines

__all__ = ["rebuild", "recompute", "still_found", "method_of", "rebuild_filter", "main"]


def method_of(row: dict, filter_path=None) -> Method:
    """The :class:`~pds.lab.experiments.Method` of a stored row; a filter file is named by its values only, so a row
    with one needs ``filter_path`` (:func:`rebuild` makes it from the row's ``filter_source``)."""
    fields = dict(row["method"])
    fields.pop("file", None)
    if fields.get("filter") == "file":
        if filter_path is None:
            raise ValueError(f"run {row['key']} uses a filter file: give its path "
                             "(or rebuild it, pds.lab.recompute.rebuild)")
        fields["path"] = str(filter_path)
    return Method(**fields)


def rebuild_filter(recipe: dict, path, optimal_folder=None) -> Path:
    """Write the filter file of a ``filter_source`` recipe to ``path``: ``{"estimate": <image set recipe>,
    "variant": ...}`` (:func:`pds.lab.image_sets.statistics_filter_file`) or ``{"optimum": KEY, "shape": [C, H, W]}``
    (an optimum of the store in ``optimal_folder``: :meth:`pds.lab.optima.OptimumStore.save_filter`)."""
    if "estimate" in recipe:
        return statistics_filter_file(image_set(recipe["estimate"]), path, variant=recipe.get("variant", "released"))
    if "optimum" in recipe:
        if optimal_folder is None:
            raise ValueError("an optimised filter needs the folder of its optimum store")
        return OptimumStore(optimal_folder).save_filter(recipe["optimum"], recipe["shape"], path)
    raise ValueError(f"unknown filter recipe {recipe!r}")


def rebuild(row: dict, workdir, optimal_folder=None, models: dict | None = None, metrics: dict | None = None):
    """(model, method, metric) of a stored row, built from what it records: a model trained here by its name, a
    model on an image set by its ``source`` (:func:`pds.lab.image_sets.image_set`,
    :func:`~pds.lab.image_sets.exact_model`, :func:`~pds.lab.image_sets.exact_twin`,
    :func:`~pds.lab.image_sets.els_twin`), its metric by ``metric_source``, a filter file by ``filter_source``
    (written into ``workdir``). ``models`` / ``metrics``: dicts that keep what was built for the next rows."""
    models = {} if models is None else models
    metrics = {} if metrics is None else metrics
    src = row["model"].get("source")
    mkey = json.dumps([row["name"], src], sort_keys=True)
    if mkey not in models:
        if src is None:
            models[mkey] = SmallModel(row["name"])
        elif "els" in src:
            patch = PatchSchedule.from_dict(src["els"])
            models[mkey] = els_twin(SmallModel(src["twin_of"]), image_set(src["set"]), patch,
                                    src.get("candidates", "all"))
        elif "twin_of" in src:
            models[mkey] = exact_twin(SmallModel(src["twin_of"]), image_set(src["set"]))
        else:
            models[mkey] = exact_model(image_set(src["set"]), experiment_named(src["experiment"]), pad=src["pad"])
        built = _settings_but_weights(models[mkey])
        stored = {k: v for k, v in row["model"].items() if k != "weights"}
        if not alike(stored, built):  # floats within SETTINGS_RTOL: a σ ladder differs in its last bit between CPUs
            differ = sorted(k for k in set(built) | set(stored) if not alike(built.get(k), stored.get(k)))
            raise ValueError(f"run {row['key']}: the model rebuilt from its record differs in {differ} (a model or an "
                             "experiment changed after the run was drawn); it cannot be drawn again as it was")
    model = models[mkey]
    msrc = row.get("metric_source")
    if msrc is None:
        raise ValueError(f"run {row['key']} does not record how to rebuild its metric ({row.get('metric')})")
    key = json.dumps(msrc, sort_keys=True)
    if key not in metrics:
        if msrc.get("classifier_fd") == "fashion-mnist/test":
            metrics[key] = fashion_test_fd()
        elif "landing" in msrc:
            metrics[key] = landing_metric(image_set(msrc["landing"]), msrc["sigma_min"])
        else:
            raise ValueError(f"unknown metric recipe {msrc!r}")
    path = None
    if row["method"].get("filter") == "file":
        if row.get("filter_source") is None:
            raise ValueError(f"run {row['key']} does not record how to rebuild its filter file")
        recipe = json.dumps(row["filter_source"], sort_keys=True)
        path = Path(workdir) / f"filter-{hashlib.sha1(recipe.encode()).hexdigest()[:12]}.npz"
        if not path.is_file():  # rows that share a recipe share the file
            rebuild_filter(row["filter_source"], path, optimal_folder)
    return model, method_of(row, path), metrics[key]


def _relative(a, b) -> float:
    if a == b:
        return 0.0
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def recompute(row: dict, model: SmallModel, method: Method, score_fn, stored_samples: np.ndarray | None = None,
              device=None, table: FingerprintTable | None = None) -> dict:
    """Draw the run of a stored ``row`` again from scratch (no cache) with ``model``, ``method`` and ``score_fn`` and
    compare with what is stored: its description under the current code (the same key, or the same fingerprints
    within their tolerances, given the stored fingerprints in ``table``), NFE, the metric value, the image statistics
    and the first stored samples (``stored_samples``, uint8). ``bit_for_bit``: all equal; ``within_tolerance``: the
    key or the fingerprints match, NFE equal, the value within ``VALUE_RTOL``, the statistics within ``STATS_RTOL``
    and the samples within ``SAMPLE_LEVELS`` in all but ``SAMPLE_FRACTION`` of the pixels. The differences are
    returned with them."""
    table = FingerprintTable(tempfile.mkdtemp()) if table is None else table
    desc = table.ids(describe(model, method, row["T"], row["n"], row["seed"], row["batch_size"], device, score_fn))
    x, nfe, wall, diverged = _draw_run(model, method, row["T"], row["n"], row["seed"], row["batch_size"], False,
                                       device)
    if diverged is None:
        value, stats = float(score_fn(x, nfe=nfe, seed=row["seed"]).value), image_statistics(x)
    else:
        value, stats = math.inf, None
    stored_stats = row.get("image_stats") or {}
    stats_diff = max((_relative(stored_stats.get(k), v) for k, v in (stats or {}).items()), default=0.0)
    if (stats is None) != (not stored_stats):
        stats_diff = math.inf
    key_now = run_key(desc)
    out = {"key": row["key"], "label": row.get("label"), "key_now": key_now,
           "fingerprints_match": key_now == row["key"] or table.matches(description_of(row), desc),
           "value": row["value"], "value_now": value, "value_rel_diff": _relative(row["value"], value),
           "image_stats": row.get("image_stats"), "image_stats_now": stats, "image_stats_rel_diff": stats_diff,
           "nfe": row["nfe"], "nfe_now": nfe, "wall_s": wall}
    exact = [key_now == row["key"], value == row["value"], stats == row.get("image_stats"), nfe == row["nfe"]]
    close = [out["fingerprints_match"], nfe == row["nfe"], out["value_rel_diff"] <= VALUE_RTOL,
             stats_diff <= STATS_RTOL]
    if stored_samples is not None:
        now = _as_uint8(x)[: len(stored_samples)]
        out["samples_compared"] = int(len(stored_samples))
        if now.shape != stored_samples.shape:
            out.update(samples_differing_fraction=1.0, samples_largest_level_difference=255)
        else:
            diff = np.abs(now.astype(np.int16) - stored_samples.astype(np.int16))
            out.update(samples_differing_fraction=float((diff > 0).mean()) if diff.size else 0.0,
                       samples_largest_level_difference=int(diff.max(initial=0)))
        exact.append(out["samples_differing_fraction"] == 0.0)
        close.append(out["samples_largest_level_difference"] <= SAMPLE_LEVELS
                     and out["samples_differing_fraction"] <= SAMPLE_FRACTION)
    out["bit_for_bit"], out["within_tolerance"] = all(exact), all(close)
    return out


def _verify_main(keys, folder, device=None) -> int:
    """``python -m pds.lab.recompute verify KEY …``: draw stored runs again from scratch and compare
    (:func:`recompute`);
    every run the notebooks ship can be rebuilt (:func:`rebuild`): the models trained here, the exact image-set
    targets, their metrics and filter files. Prints one JSON line per run and a summary; exit status 0 when every run
    is within tolerance."""
    folder = Path(folder)
    cache = ResultCache(tempfile.mkdtemp(), shipped=folder)
    optimal = folder.parent.parent / "optimal" / folder.name
    models, metrics, counts = {}, {}, {"bit for bit": 0, "within tolerance": 0, "outside tolerance": 0}
    with tempfile.TemporaryDirectory() as work:
        for key in keys:
            row = cache.get(key)
            if row is None:
                listed = cache.store.row(key) is not None  # its samples file is missing
                why = (f"run {key} is listed in {folder / 'results.jsonl'} but its samples file "
                       f"{folder / (key + '.npz')} is missing: restore it (git checkout, or copy it from the cache it "
                       "came from)" if listed
                       else f"no run {key} in {folder / 'results.jsonl'}")
                print(f"python -m pds.lab.recompute verify: error: {why}", file=sys.stderr)
                return 2
            model, method, score_fn = rebuild(row, work, optimal if optimal.is_dir() else None, models, metrics)
            with np.load(folder / f"{key}.npz") as data:
                stored = data["samples"]
            res = recompute(row, model, method, score_fn, stored, device=device, table=cache.table)
            verdict = ("bit for bit" if res["bit_for_bit"] else
                       "within tolerance" if res["within_tolerance"] else "outside tolerance")
            counts[verdict] += 1
            print(json.dumps({"verdict": verdict, **res}), flush=True)
    print(f"{len(keys)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f" (tolerances: samples ±{SAMPLE_LEVELS} level in ≤ {SAMPLE_FRACTION:g} of the pixels, value "
            f"{VALUE_RTOL:g}, image statistics {STATS_RTOL:g} relative)", flush=True)
    return 0 if counts["outside tolerance"] == 0 else 1


def one_of_each_kind(rows: list[dict]) -> list[dict]:
    """One row (the shortest T, then the first) per model and method with its numbers left out (α, r, λ, ω): every
    kind of shipped run, each sampler, filter and model once, at a small part of the cost of all rows."""
    kinds: dict[str, dict] = {}
    for row in rows:
        method = {k: v for k, v in row["method"].items() if k not in ("alpha", "r", "lam", "omega")}
        kind = json.dumps([row["name"], row["model"].get("source"), method], sort_keys=True)
        if kind not in kinds or row["T"] < kinds[kind]["T"]:
            kinds[kind] = row
    return list(kinds.values())


def still_found(workdir, folder=None, optimal_folder=None, kinds_only: bool = False) -> dict:
    """Rebuild every shipped row (or :func:`one_of_each_kind`) from its record (:func:`rebuild`) and look it up as the
    notebooks do (its key, or its fingerprints within tolerance): the rows a code change orphaned are ``stale``."""
    folder = Path(folder or DATA_DIR / "results" / "quality" / "default")
    optimal_folder = optimal_folder or DATA_DIR / "results" / "optimal" / "default"
    cache, models, metrics = ResultCache(Path(workdir) / "cache", shipped=folder), {}, {}
    lines = [r for r in read_lines(folder / "results.jsonl") if "key" in r]  # every line: a key stored twice shows
    rows = stored_rows(folder)  # the shipped rows only, one per key
    checked = one_of_each_kind(rows) if kinds_only else rows
    stale, by_key = [], 0
    for row in checked:
        model, method, metric = rebuild(row, workdir, optimal_folder, models, metrics)
        desc = cache.describe(model, method, row["T"], row["n"], row["seed"], row["batch_size"], metric, row["device"])
        found = cache.find(desc)
        by_key += run_key(desc) == row["key"]
        if found is None or found["key"] != row["key"]:
            stale.append(f"{row['key']} ({row['label']}, T={row['T']}, seed {row['seed']})")
    return {"rows": len(lines), "keys": len({r["key"] for r in lines}), "checked": len(checked), "by_key": by_key,
            "stale": stale}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds.lab.recompute",
                                     description="recompute cached runs from scratch")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="draw stored runs again and compare: bit for bit, or within the float32 "
                                      "tolerances of another machine")
    v.add_argument("keys", nargs="+", help="run keys (the 'key' of a row of results.jsonl)")
    v.add_argument("--folder", default=str(DATA_DIR / "results/quality/default"))
    v.add_argument("--device", default=None)
    f = sub.add_parser("found", help="rebuild the shipped runs from their records and say which ones the current "
                                     "code no longer finds (after a change to a sampler, a score or a metric)")
    f.add_argument("--folder", default=str(DATA_DIR / "results/quality/default"))
    f.add_argument("--kinds", action="store_true", help="one run of each kind (minutes less), not every run")
    args = parser.parse_args(argv)
    if args.command == "found":
        with tempfile.TemporaryDirectory() as work:
            got = still_found(work, args.folder, kinds_only=args.kinds)
        print(json.dumps(got))
        print(f"{got['checked']} of {got['rows']} shipped runs checked: {got['by_key']} found by their key, "
              f"{got['checked'] - got['by_key'] - len(got['stale'])} by their fingerprints within tolerance, "
              f"{len(got['stale'])} no longer found" + (" (make results draws them again)" if got["stale"] else ""))
        return 1 if got["stale"] else 0
    return _verify_main(args.keys, args.folder, args.device)


if __name__ == "__main__":
    sys.exit(main())
