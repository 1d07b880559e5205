"""pds: Preconditioned Diffusion Sampling (Ma, Zhang, Zhu, Feng, ECCV 2022) as a model-agnostic library.

Modules follow the paper:

* :mod:`pds.precondition` — the operator M of Eq. 10 and the maps M⁻¹ξ, M⁻¹M⁻ᵀd of Eq. 11 / Alg. 1;
* :mod:`pds.filters` — statistics filters R (Eq. 14) and A (Eq. 13 / released), parametric (r, λ);
* :mod:`pds.solenoidal` — skew-symmetric operators S for the solenoidal term;
* :mod:`pds.theory` — numerical checks of Theorems 1 and 2 on toy targets;
* :mod:`pds.notebooks` — running the notebooks in the smoke / default / full profiles.
"""

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
