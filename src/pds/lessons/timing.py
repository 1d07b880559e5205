"""Wall-clock timing for the benchmarks and the timing notebook (Table 2): warm-up, synchronised on CUDA,
median of repeats; one PC iteration with and without PDS; the cost of the FFT-based preconditioner.

Timing does not depend on the weights or the filter values (only on shapes), so everything here runs on
random-weight networks in the official configurations and on synthetic filters of the right shape.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pds.filters import synthetic_filters
from pds.models import OFFICIAL_CONFIGS, NCSNpp, NCSNppConfig
from pds.precondition import Preconditioner
from pds.samplers import pc_sampler
from pds.schedules import ve_schedule

__all__ = ["median_time", "device_name", "IterationTiming", "time_pc_iteration",
           "time_preconditioner", "fit_nlogn", "extrapolate", "build_ncsnpp"]


def median_time(fn, repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu") -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_name(device) -> str:
    """The card or the CPU, with the torch version and thread count: what a timing result must name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA), torch {torch.__version__}"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def build_ncsnpp(config: str, nf: int | None = None, device="cpu", seed: int = 0) -> NCSNpp:
    """A random-weight NCSN++ in an official configuration (``nf`` overrides the width), in eval mode."""
    if config not in OFFICIAL_CONFIGS:
        raise ValueError(f"unknown NCSN++ configuration {config!r}; known: {sorted(OFFICIAL_CONFIGS)}")
    cfg = OFFICIAL_CONFIGS[config]
    if nf is not None:
        cfg = NCSNppConfig(**{**cfg.__dict__, "nf": int(nf)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = NCSNpp(cfg)
    return net.to(device).eval()


@dataclass
class IterationTiming:
    config: str
    nf: int
    batch: int
    size: int
    device: str
    compiled: bool
    forward_ms: float
    iteration_vanilla_ms: float
    iteration_pds_ms: float
    preconditioner_ms: float  # the PDS operations of one iteration: 2 × drift + 2 × noise

    @property
    def preconditioner_share(self) -> float:
        """Share of one PDS iteration spent in the preconditioner (measured directly, not as a difference)."""
        return self.preconditioner_ms / self.iteration_pds_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "preconditioner_share": self.preconditioner_share}


def time_preconditioner(pre: Preconditioner, x: torch.Tensor, repeats: int = 5, warmup: int = 1) -> float:
    """Seconds of the PDS work of one PC iteration: two ``drift`` and two ``noise`` calls on a batch like ``x``."""
    def run():
        pre.drift(x), pre.noise(x), pre.drift(x), pre.noise(x)

    return median_time(run, repeats, warmup, x.device)


@torch.no_grad()
def time_pc_iteration(config: str, batch: int, nf: int | None = None, device="cpu", repeats: int = 5,
                      warmup: int = 1, compile: bool = False, space: bool | None = None,
                      reference_ops: bool = False) -> IterationTiming:
    """Time one forward and one PC iteration (2 forwards) of NCSN++ ``config``, vanilla and with PDS (frequency
    filter, plus a space filter for FFHQ as in Fig. 1 unless ``space`` says otherwise), on ``device``."""
    cfg = OFFICIAL_CONFIGS[config]
    net = build_ncsnpp(config, nf, device)
    if reference_ops:
        net.use_reference_ops()
    if compile:
        net.compile()
    c, s = cfg.channels, cfg.image_size
    space = config.startswith("ffhq") if space is None else space
    freq, a = synthetic_filters(c, s, space)
    pre = Preconditioner(freq=freq, space=a, shape=(c, s, s))
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, c, s, s, generator=gen, device=device) * 10.0
    sigma = cfg.sigma_max / 100.0
    forward = median_time(lambda: net(x, sigma), repeats, warmup, device)

    def iteration(p):
        return lambda: pc_sampler(net, x, ve_schedule(cfg.sigma_min, cfg.sigma_max, cfg.num_scales, iterations=1),
                                  snr=0.1, preconditioner=p, generator=gen, device=device)

    vanilla = median_time(iteration(None), repeats, warmup, device)
    pds = median_time(iteration(pre), repeats, warmup, device)
    ops = time_preconditioner(pre, x, repeats, warmup)
    return IterationTiming(config, net.config.nf, batch, s, device_name(device), compile, 1e3 * forward,
                           1e3 * vanilla, 1e3 * pds, 1e3 * ops)


def fit_nlogn(sizes, seconds) -> tuple[float, float]:
    """Least-squares fit t ≈ a·N·log₂N + b with N = size² (the FFT's cost law); returns (a, b)."""
    n = np.asarray(sizes, dtype=np.float64) ** 2
    design = np.stack([n * np.log2(n), np.ones_like(n)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.asarray(seconds, dtype=np.float64), rcond=None)
    return float(a), float(b)


def extrapolate(seconds_per_iteration: float, iterations: int) -> float:
    """Total seconds of a run of ``iterations`` PC iterations at this per-iteration cost (sampling loop only)."""
    if iterations < 1 or not math.isfinite(seconds_per_iteration):
        raise ValueError(f"need iterations >= 1 and a finite time, got {iterations}, {seconds_per_iteration}")
    return seconds_per_iteration * iterations
