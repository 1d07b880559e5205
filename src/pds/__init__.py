"""pds: Preconditioned Diffusion Sampling (Ma, Zhang, Zhu, Feng, ECCV 2022) as a model-agnostic library.

The package's layers, each importing only from the layers before it (``tests/test_architecture.py`` checks it),
and what each module holds: README.md, "The package".

Glossary: one meaning per short name throughout the package (formulas in docstrings follow the paper).

* ``sigma``: a noise level σ (a Python float); ``sigmas`` / ``sig`` a list of them, largest first
* ``score``: a score model ``score(x, sigma)`` ≈ ∇log p_σ(x); ``grad`` its value at one state
* ``g``: the preconditioned score M⁻¹M⁻ᵀ·grad (Eq. 11), the drift of a sampler step
* ``eta``: the preconditioned noise η = M⁻¹ξ (Alg. 1); ``xi`` / ``z`` white noise
* ``eps``: the Langevin corrector's step ε; ``step_lr`` annealed Langevin's base step
* ``d``: the probability-flow ODE's direction (x − D(x, σ))/σ; ``den`` the denoiser D = x + σ²·score
* ``p``: the drift gain of a frequency filter, the symbol of M⁻¹M⁻ᵀ (1/R̃² in Alg. 1): its noise has variance p
* ``s``: (exact analyses) a Gaussian target's variance per frequency of the unitary DFT, its spectrum
* ``prec``: the precision 1/(s + σ²) of p_σ per frequency
* ``r``, ``lam``: the parametric filter's radius and value (Sec. 4.3: r·H and λ)
* ``R``, ``A``: the frequency and space filters (Eq. 12-14); ``alpha`` the released normalisation strength
* ``skew``: the solenoidal term's operator v ↦ ω·S[v] (Eq. 7, :func:`pds.solenoidal.skew_term`)
* ``gen``: a ``torch.Generator``; ``generator`` the samplers' argument (one, or one per sample)
* ``dim``: the dimension C·H·W of a dense (small-image) analysis
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
