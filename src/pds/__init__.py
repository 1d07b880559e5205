"""pds: Preconditioned Diffusion Sampling (Ma, Zhang, Zhu, Feng, ECCV 2022) as a model-agnostic library.

Modules follow the paper:

* :mod:`pds.precondition` — the operator M of Eq. 10 and the maps M⁻¹ξ, M⁻¹M⁻ᵀd of Eq. 11 / Alg. 1;
* :mod:`pds.filters` — statistics filters R (Eq. 14) and A (Eq. 13 / released), parametric (r, λ);
* :mod:`pds.solenoidal` — skew-symmetric operators S for the solenoidal term;
* :mod:`pds.samplers` — the VE predictor-corrector sampler and annealed Langevin dynamics with PDS (Alg. 1);
* :mod:`pds.theory`, :mod:`pds.exact` — Theorems 1-2 checked numerically; exact sampler outputs on Gaussians;
* :mod:`pds.schedules`, :mod:`pds.fourier` — noise schedules and the FFT layout, each defined once;
* :mod:`pds.models`, :mod:`pds.checkpoints` — the official networks, and every fact about their files;
* :mod:`pds.configs` — the paper's experiment settings, one table;
* :mod:`pds.train`, :mod:`pds.data`, :mod:`pds.metrics`, :mod:`pds.experiments` — models trained here and their
  evaluation; :mod:`pds.notebooks` — running the notebooks in the smoke / default / full profiles.
"""

from pds import modern  # noqa: F401  (registers euler, heun, dpmpp_2m, edm_churn, pc_kept with pds.samplers)
from pds.filters import (
    FilterSet,
    frequency_filter,
    load_filters,
    parametric_filter,
    save_filters,
    space_filter,
)
from pds.precondition import Preconditioner

__version__ = "0.1.0"

__all__ = [
    "Preconditioner",
    "parametric_filter",
    "frequency_filter",
    "space_filter",
    "save_filters",
    "load_filters",
    "FilterSet",
]
