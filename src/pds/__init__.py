"""pds: Preconditioned Diffusion Sampling (Ma, Zhang, Zhu, Feng, ECCV 2022) as a model-agnostic library.

The layout shows the architecture. Each layer imports only from the layers above it in this list (a test,
``tests/test_architecture.py``, checks it):

* **the method** — the top-level modules, about 3k lines, all a user of PDS needs with their own score model:

  * :mod:`pds.precondition` — the operator M of Eq. 10 and the maps M⁻¹ξ, M⁻¹M⁻ᵀd of Eq. 11 / Alg. 1;
  * :mod:`pds.filters` — statistics filters R (Eq. 14) and A (Eq. 13 / released), parametric (r, λ), filter files;
  * :mod:`pds.samplers` — the VE predictor-corrector sampler (Alg. 1), annealed Langevin, the sampler registry;
  * :mod:`pds.modern` — Euler, Heun, DPM-Solver++(2M) and EDM's churn on the probability-flow ODE, with PDS;
  * :mod:`pds.solenoidal` — skew-symmetric operators S for the solenoidal term (Eq. 7);
  * :mod:`pds.scores` — closed-form scores: Gaussians, a stationary Gaussian field; :mod:`pds.empirical` — the exact
    score of a finite image set;
  * :mod:`pds.schedules`, :mod:`pds.fourier` — noise schedules and the FFT layout, each defined once;
  * :mod:`pds.configs` — the paper's experiment settings, one table (data beside the method);
  * :mod:`pds.fingerprint`, :mod:`pds.storage` — two utilities the method's files use: comparing numbers across
    CPUs within measured tolerances, and where files live and how they are written without losing finished work;

* :mod:`pds.models` — the official networks (NCSN, NCSNv2, NCSN++), :mod:`~pds.models.checkpoints` (every fact
  about their files), :mod:`~pds.models.train` (the small models trained here), :mod:`~pds.models.local_score`
  (score machines built from a training set); beside them :mod:`pds.integrations` — PDS where other libraries
  sample: a diffusers scheduler and NCSN++ (diffusers imported only there) and k-diffusion's denoiser /
  noise-sampler conventions;
* :mod:`pds.exact` — what can be computed exactly, pure maths (no file, no network): the samplers' output
  distributions on Gaussian targets (one recursion per sampler family, each registered with its sampler),
  :mod:`~pds.exact.optimal` (the filter that minimises it) and :mod:`~pds.exact.theory` (Theorems 1-2 checked
  numerically);
* :mod:`pds.lab` — the laboratory's API, what the ``pds`` command and every notebook use: data sets, metrics,
  experiments and verdicts, the one store of finished computations (:mod:`~pds.lab.store`: runs, optima, tables)
  and the result cache on it, stored runs recomputed, sharded sampling, random-weight official files;
* :mod:`pds.lessons` — each notebook's own laboratory (the playground, exact claims, the network-like scores, the
  mechanism, timing and the full-profile shape runs);
* :mod:`pds.publish` — the notebooks run in three profiles, the findings they state, the rendered pages, the book;
* :mod:`pds.cli` — the ``pds`` command.

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
