"""Draw notebook 14's sampling runs (R's scalar controls on the trained NCSN++ and on the exact score of its training
set, T = 50, default profile) into the result cache, one model and some seeds per process, so that two processes of
one thread each share the work; the notebook then reads them (and `make ship` ships them).

    OMP_NUM_THREADS=1 python benchmarks/draw_mechanism_runs.py exact 0 1 &
    OMP_NUM_THREADS=1 python benchmarks/draw_mechanism_runs.py trained 0 1 2 && ... exact 2
"""

from __future__ import annotations

import sys
import time

import torch

from pds.exact import mechanism as mech
from pds.lab.cache import ResultCache
from pds.lab.experiments import Method, SmallModel
from pds.lab.image_sets import exact_twin, image_set
from pds.lab.metrics import fashion_test_fd
from pds.lessons import mechanism as lab
from pds.lessons.exact_claims import TWIN_KINDS, TWINS
from pds.lessons.exact_results import ExactResults
from pds.lessons.optimised import own_settings
from pds.scores import StationaryGaussianScore
from pds.storage import DATA_DIR, RUNS_DIR


def main(which: str, seeds: list[int]) -> None:
    profile, T, images = "default", 50, 5000
    net = SmallModel("ncsnpp_fashion32")
    own, TW = own_settings(net), TWINS[profile]
    exact_store = ExactResults(RUNS_DIR / "exact" / profile, shipped=DATA_DIR / "results" / "exact" / profile)
    gauss = StationaryGaussianScore.from_images(net.train_images()[:images].double())
    scalars = {"R's scalar control": float(lab.drift_gain(net.preconditioner(TWIN_KINDS["ncsnpp"][1]),
                                                          net.shape).mean()),
               "best scalar": exact_store.best_scalar(gauss, own, T)[0],
               "freezing gain p*": mech.freezing_gain(mech.step_ratio(own.sigma_min, own.sigma_max, T), closest=True)}
    print(scalars, flush=True)
    model = net if which == "trained" else exact_twin(net, image_set({"set": "fashion-mnist", "split": "train"}))
    cache = ResultCache(RUNS_DIR / "quality" / profile, shipped=DATA_DIR / "results" / "quality" / profile)
    fd = fashion_test_fd()
    for name, p in scalars.items():
        for seed in seeds:
            t0 = time.perf_counter()
            row = cache.run(model, Method("constant", lam=p ** -0.5), T, TW["n"], seed, fd)
            print(f"{which} {name} seed {seed}: FD {row['value']:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], [int(s) for s in sys.argv[2:]])
