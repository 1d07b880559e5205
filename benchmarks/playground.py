"""Seconds per change of the playground of notebook 00 (pds.lab.playground): one redraw of the figure (multiplier,
noise draw, samples from the exact score of 500 Fashion-MNIST images, nearest distances) per state, on this CPU with
its default threads, median of 3. Issue 29's target: ≤ 1 s per change on a CPU, up to the slider's T = 100.

    .venv/bin/python benchmarks/playground.py
"""

import statistics
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from pds.lab.image_sets import image_set  # noqa: E402
from pds.lab.playground import Playground, State  # noqa: E402

STATES = [State(), State(filter="parametric"), State(filter="none"), State(sampler="edm_churn"),
          State(sampler="heun", filter="none"), State(sampler="pc_kept"), State(T=50), State(T=100)]


def main():
    t0 = time.perf_counter()
    playground = Playground(image_set({"set": "fashion-mnist", "split": "train", "first": 500}))
    print(f"set-up (500 images, the exact score, the statistics filter): {time.perf_counter() - t0:.2f} s")
    worst = 0.0
    for state in STATES:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            plt.close(playground.figure(state))
            times.append(time.perf_counter() - t)
        worst = max(worst, statistics.median(times))
        print(f"{state.method().label:40s} T = {state.T:3d}: {statistics.median(times):.2f} s per change")
    print(f"slowest change {worst:.2f} s (target ≤ 1 s)")


if __name__ == "__main__":
    main()
