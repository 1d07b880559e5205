"""Re-key the shipped runs and optima by value fingerprints (issue 27), without recomputing them.

Run once from the repository root with the code of the commit that adds this file:
    OMP_NUM_THREADS=1 .venv/bin/python data/results/rekey-2026-12-02.py
It rebuilds, for every shipped row, the model, method (filter file included) and metric the notebooks built, from the
recipes it now records (``source``, ``metric_source``, ``filter_source``), and checks them against what the row was
keyed by before: the image set's SHA-256 (the old ``weights`` of an exact model), the filter file's SHA-256, every
setting of the description. The rows then get the description and key the current code computes; the samples file is
renamed. Optima: each old target digest is matched to the target notebook 12 builds. Writes rekey-2026-12-02.json
(old key -> new key and the checks). Proof that the rebuilt runs are the drawn ones: `python -m pds.lab.cache verify`
draws a few again (README in this folder).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from pds.lab.cache import ResultCache, rebuild, run_key, write_rows
from pds.models.checkpoints import file_sha256
from pds.models.configs import experiment, stand_in_for
from pds.lab.data import natural_image_crops
from pds.lab.experiments import SmallModel
from pds.filters import load_filters, save_filters
from pds.fingerprint import FingerprintTable
from pds.lab.image_sets import image_set
from pds.lab.metrics import TEST_SET
from pds.exact.optimal import OptimumStore, target_fingerprint
from pds.storage import DATA_DIR
from pds.scores import EmpiricalScore, StationaryGaussianScore, fit_power_law, power_law_field

QUALITY, OPTIMAL = DATA_DIR / "results" / "quality" / "default", DATA_DIR / "results" / "optimal" / "default"
FASHION100 = {"set": "fashion-mnist", "split": "train", "per_class": 10}
FACES = {"set": "lfw-faces"}
CROPS = {"set": "photo-crops", "n": 100, "size": 256, "seed": 0}
SOURCES = {  # the model names of the old rows -> (set recipe, experiment, pad) as notebooks 11 and 12 built them
    "exact:fashion-mnist-100": (FASHION100, "mnist_ncsn", 0),
    "exact:fashion-mnist-100-pad2": (FASHION100, "cifar10_ncsnpp", 2),
    "exact:lfw-faces-25": (FACES, "ffhq_ncsnpp", 0),
    "exact:photo-crops-256": (CROPS, "bedroom_ncsnpp", 0),
}
TWINS = {"ncsnpp": "ncsnpp_fashion32", "ncsn": "ncsn_fashion28"}


def old_digest(*arrays) -> str:
    """pds.fingerprint.digest of the code before this change, for arrays (to recognise the old target digests)."""
    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().to(torch.float64).numpy()
        finite = np.isfinite(a)
        top = float(np.abs(a[finite]).max()) if finite.any() else 0.0
        scale = 10.0 ** math.ceil(math.log10(top)) if top > 0 else 1.0
        q = np.where(finite, np.round(np.where(finite, a, 0.0) / scale * 1e8), 0.0).astype("<i8")
        special = np.where(np.isnan(a), 1, np.where(np.isposinf(a), 2, np.where(np.isneginf(a), 3, 0))).astype("u1")
        h.update(f"{a.shape}|{scale:.0e}|".encode() + q.tobytes() + special.tobytes())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def old_set_sha(images: torch.Tensor, pad: int) -> str:
    padded = torch.nn.functional.pad(images, (pad,) * 4) if pad else images
    return EmpiricalScore(padded).sha256


def old_file_sha(path, label: str) -> str:
    """The SHA-256 the old key held: the file as the notebooks wrote it (the same values, the old metadata)."""
    f = load_filters(path)
    if "lfw-faces-25" in label:
        meta = {"source": "the 100 LFW faces of scikit-image", "n": 100, "variant": "released"}
    else:
        name, nfe = label.split(" from ")[1].split(".npz")[0].split("-pc-")
        meta = {"source": f"pds.exact.optimal: PC, {nfe} NFE, Gaussian of the {name} target's images",
                "variant": "optimised (alpha=None)"}
    out = Path(tempfile.mkdtemp()) / "old.npz"
    return file_sha256(save_filters(out, f.freq, f.space, **meta))


def main() -> int:
    report = {"runs": {}, "optima": {}, "problems": []}
    # -- optima: the targets of notebook 12 (default profile) and their old digests
    targets = {s: StationaryGaussianScore.from_images(natural_image_crops(300, s, seed=0)) for s in (32, 256)}
    targets[1024] = power_law_field(fit_power_law(targets[256]), 1024, targets[256].mean.mean((1, 2)))
    fashion, faces, crops = image_set(FASHION100), image_set(FACES), image_set(CROPS)
    carry = {"exact": torch.nn.functional.pad(fashion.images, (2,) * 4), "faces": faces.images,
             "crops": crops.images, "trained": SmallModel("ncsnpp_fashion32").train_images()[:5000]}
    for label, images in carry.items():
        targets[label] = StationaryGaussianScore.from_images(images.double())
    by_old = {old_digest(t.mean, t.spectrum): name for name, t in targets.items()}
    tfp = {name: target_fingerprint(t) for name, t in targets.items()}
    old_rows = [json.loads(line) for line in (OPTIMAL / "optima.jsonl").read_text().splitlines() if line.strip()]
    new_store = OptimumStore(tempfile.mkdtemp())
    new_rows, carry_key = {}, {}
    for row in old_rows:
        d = dict(row["description"])
        name = by_old.get(d["target"])
        if name is None:
            report["problems"].append(f"optimum {row['key']}: target digest {d['target']} is none of notebook 12's")
            continue
        d["target"] = tfp[name]
        key = new_store.key(d)
        new_rows[key] = {"key": key, **new_store._full(d), "optimum": row["optimum"], "wall_s": row["wall_s"]}
        report["optima"][row["key"]] = {"key": key, "target": str(name)}
        if isinstance(name, str):
            carry_key[(name, d["nfe"])] = key
    store_tmp = Path(tempfile.mkdtemp())
    (store_tmp / "optima.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new_rows.values()))
    # -- runs
    rows = [json.loads(line) for line in (QUALITY / "results.jsonl").read_text().splitlines() if line.strip()]
    cache = ResultCache(tempfile.mkdtemp())
    models, metrics, out = {}, {}, []
    work = Path(tempfile.mkdtemp())
    for i, row in enumerate(rows):
        name, old_key = row["name"], row["key"]
        if name in SOURCES:
            recipe, exp, pad = SOURCES[name]
            src = {"set": recipe, "pad": pad, "experiment": exp}
            if old_set_sha(image_set(recipe).images, pad) != row["model"]["weights"]:
                report["problems"].append(f"{old_key}: the rebuilt set {name} is not the one keyed")
        elif name.startswith("exact:fashion-mnist-train-"):
            src = {"set": {"set": "fashion-mnist", "split": "train"}, "twin_of": TWINS[row["model"]["kind"]]}
            if old_set_sha(image_set(src["set"]).images, row["model"]["pad"]) != row["model"]["weights"]:
                report["problems"].append(f"{old_key}: the rebuilt set {name} is not the one keyed")
        else:
            src = None
        ref = row.get("reference")
        if name.startswith("exact:") and ref != TEST_SET:
            msrc = {"landing": src["set"], "sigma_min": float(experiment(src["experiment"]).sigma_min)}
        else:
            msrc = {"classifier_fd": "fashion-mnist/test"}
        fsrc = None
        if row["method"]["filter"] == "file":
            label = row["label"]
            if "lfw-faces-25-filters.npz" in label:
                fsrc = {"estimate": FACES, "variant": "released"}
            else:
                which = label.split(" from ")[1].split("-pc-")
                key = carry_key[(which[0], int(which[1].split(".npz")[0]))]
                shape = list(carry[which[0]].shape[1:])
                fsrc = {"optimum": key, "shape": shape}
        exp_name = src["experiment"] if src and "experiment" in src else stand_in_for(row["model"]["kind"]).name
        patched = {**row, "model": {**row["model"], "source": src, "experiment": exp_name}, "metric_source": msrc,
                   "filter_source": fsrc}
        model, method, metric = rebuild(patched, work, store_tmp, models, metrics)
        if fsrc is not None and old_file_sha(method.path, row["label"]) != row["method"]["file_sha256"]:
            report["problems"].append(f"{old_key}: the rebuilt filter file is not the one keyed")
        desc = cache.describe(model, method, row["T"], row["n"], row["seed"], row["batch_size"], metric,
                              row["device"])
        old = {k: v for k, v in row["model"].items() if k != "weights"}
        now = {k: v for k, v in desc["model"].items() if k not in ("weights", "experiment", "source")}
        if old != now or {k: v for k, v in row["method"].items() if k != "file_sha256"} != {
                k: v for k, v in desc["method"].items() if k != "file"} or any(
                row[k] != desc[k] for k in ("T", "n", "seed", "batch_size", "device")):
            report["problems"].append(f"{old_key}: settings differ: {old} vs {now}")
        new_key = run_key(desc)
        new_row = {**patched, **desc, "key": new_key}
        new_row["method"] = desc["method"]
        out.append(new_row)
        report["runs"][old_key] = new_key
        print(f"{i + 1}/{len(rows)} {old_key} -> {new_key} {row['label']}", flush=True)
    if report["problems"]:
        print("\n".join(report["problems"]), file=sys.stderr)
        return 1
    if len(set(report["runs"].values())) != len(rows):
        print("two runs got one key", file=sys.stderr)
        return 1
    # write: rename samples, then rows and fingerprints; optima and their fingerprints
    for old_key, new_key in report["runs"].items():
        (QUALITY / f"{old_key}.npz").rename(QUALITY / f"{new_key}.npz.new")
    for new_key in report["runs"].values():
        (QUALITY / f"{new_key}.npz.new").rename(QUALITY / f"{new_key}.npz")
    write_rows(QUALITY, out, cache.table)
    new_store.folder = store_tmp
    new_store._rows = new_rows
    new_store.ship(OPTIMAL.parent / "default.new")
    for f in ("optima.jsonl", FingerprintTable.NAME):
        (OPTIMAL.parent / "default.new" / f).replace(OPTIMAL / f)
    (OPTIMAL.parent / "default.new").rmdir()
    Path(__file__).with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(out)} runs and {len(new_rows)} optima re-keyed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
