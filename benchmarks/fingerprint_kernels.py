"""How far the fingerprints that key the shipped results move between float kernel sets, against their tolerances.

Computes, in two processes — the machine's own kernels and another set (ATen's scalar kernels, oneDNN's AVX2 ones,
OpenBLAS's Haswell ones: ``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell``) —
every kind of fingerprint the result cache and the optimum store key by: the sampling fingerprint of one shipped run
per model, sampler and filter kind, the network fingerprint of every shipped model (trained and exact), every metric,
the filter files the notebooks estimate or optimise at run time, notebook 12's Gaussian targets and the optimiser's
behaviour fingerprint. Prints, per kind, the largest difference in units of its tolerance (<= 1: the same fingerprint)
and the largest relative difference of its numbers, whether the ids came out equal, and writes the table to
``benchmarks/results/fingerprint_kernels.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fingerprint_kernels.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
RESULTS = Path(__file__).resolve().parent / "results" / "fingerprint_kernels.json"


def dump(path: str) -> None:
    """Every fingerprint kind, by name, as dicts (this process's kernels)."""
    import torch

    from pds.exact.optimal import behaviour_fingerprint, target_fingerprint
    from pds.filters import filters_fingerprint
    from pds.lab.cache import metric_fingerprint, network_fingerprint, sampling_fingerprint, stored_rows
    from pds.lab.data import natural_image_crops
    from pds.lab.recompute import rebuild
    from pds.scores import StationaryGaussianScore, fit_power_law, power_law_field
    from pds.storage import DATA_DIR

    quality, optimal = DATA_DIR / "results" / "quality" / "default", DATA_DIR / "results" / "optimal" / "default"
    picked = {}
    for row in stored_rows(quality):
        picked.setdefault((row["name"], row["model"]["kind"], row["method"]["sampler"], row["method"]["filter"],
                           row["method"]["solenoidal"], row["method"]["space"]), row)
    out, models, metrics, seen = {}, {}, {}, set()
    work = tempfile.mkdtemp()
    for (name, kind, sampler, filt, sol, space), row in picked.items():
        model, method, metric = rebuild(row, work, optimal, models, metrics)
        out[f"sampling {name} {sampler} {filt} {sol} {space}"] = sampling_fingerprint(model, method).to_dict()
        if (name, kind) not in seen:
            seen.add((name, kind))
            out[f"network {name} ({kind})"] = network_fingerprint(model).to_dict()
        out[f"metric {json.dumps(row['metric_source'], sort_keys=True)}"] = metric_fingerprint(metric).to_dict()
        if method.filter == "file":
            out[f"filter file {json.dumps(row['filter_source'], sort_keys=True)}"] = filters_fingerprint(
                method.path).to_dict()
    targets = {s: StationaryGaussianScore.from_images(natural_image_crops(300, s, seed=0)) for s in (32, 256)}
    targets[1024] = power_law_field(fit_power_law(targets[256]), 1024, targets[256].mean.mean((1, 2)))
    for s, t in targets.items():
        out[f"target {s}² Gaussian"] = target_fingerprint(t).to_dict()
    out["optimiser behaviour"] = behaviour_fingerprint().to_dict()
    out["_torch"] = {"version": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}
    Path(path).write_text(json.dumps(out))


def relative(a: dict, b: dict) -> float:
    worst = 0.0
    for (_, floor, x), (_, _, y) in zip(a["groups"], b["groups"], strict=True):
        for v, w in zip(x, y, strict=True):
            if v != w:
                worst = max(worst, abs(v - w) / max(abs(v), abs(w), floor, 1e-300))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        dump(args.dump)
        return 0
    from pds.fingerprint import Fingerprint

    with tempfile.TemporaryDirectory() as tmp:
        dumps = {}
        for label, env in (("own kernels", {}), ("other kernels", OTHER_KERNELS)):
            path = Path(tmp) / f"{label}.json"
            subprocess.run([sys.executable, __file__, "--dump", str(path)], check=True,
                           env={**os.environ, **env})
            dumps[label] = json.loads(path.read_text())
    a, b = dumps["own kernels"], dumps["other kernels"]
    table = []
    for name in a:
        if name.startswith("_"):
            continue
        fa, fb = Fingerprint.from_dict(a[name]), Fingerprint.from_dict(b[name])
        table.append({"fingerprint": name, "same_id": fa.id == fb.id, "same": fa.same(fb),
                      "largest_in_tolerances": fa.largest_difference(fb),
                      "largest_relative": relative(a[name], b[name]),
                      "rtols": sorted({g[0] for g in a[name]["groups"]})})
    width = max(len(r["fingerprint"]) for r in table)
    for r in table:
        print(f"{r['fingerprint']:<{width}}  same {r['same']!s:5}  id {'=' if r['same_id'] else '≠'}  "
              f"{r['largest_in_tolerances']:9.2e} of its tolerance  (relative {r['largest_relative']:.1e}, "
              f"rtol {r['rtols']})")
    worst = max(r["largest_in_tolerances"] for r in table)
    print(f"{len(table)} fingerprints: {sum(r['same'] for r in table)} the same, {sum(r['same_id'] for r in table)} "
          f"with equal ids; the largest difference is {worst:.2e} of its tolerance (capabilities "
          f"{a['_torch']['capability']} / {b['_torch']['capability']})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"kernels": {"own": a["_torch"], "other": {**b["_torch"], **OTHER_KERNELS}},
                                   "fingerprints": table}, indent=1) + "\n")
    return 0 if all(r["same"] for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
