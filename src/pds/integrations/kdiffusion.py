"""k-diffusion's conventions for PDS (written here; k-diffusion is not a dependency).

k-diffusion samplers call a *denoiser* ``model(x, sigma, **extra_args)`` with σ a tensor of one level per sample and
expect D(x, σ) ≈ E[x₀ | x]; this library's samplers call a *score* ``score(x, σ)`` with σ a float. Tweedie's formula
joins them: D(x, σ) = x + σ² s(x, σ), s(x, σ) = (D(x, σ) − x)/σ² (:func:`pds.modern.denoiser` is the same map for
float σ). k-diffusion has no hook for a drift; its stochastic samplers (Euler ancestral, DPM-Solver++ SDE, …) take a
``noise_sampler(sigma, sigma_next)`` for their fresh noise, and :func:`noise_sampler` gives them PDS's M⁻¹ξ (Eq. 11),
whose covariance is M⁻¹M⁻ᵀ instead of I.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pds.modern import denoiser
from pds.precondition import Preconditioner
from pds.samplers import randn

__all__ = ["KDenoiser", "score_of_denoiser", "noise_sampler"]


class KDenoiser(torch.nn.Module):
    """``model(x, sigma) -> D(x, σ) = x + σ² s(x, σ)`` (Tweedie) for a score ``score(x, σ)`` (σ a float), called as
    k-diffusion calls a denoiser: σ a number, a 0-d tensor or one value per sample. The score is evaluated once per
    distinct σ in the batch (k-diffusion passes one level for all samples: one call). A score that is a
    ``torch.nn.Module`` is held as a submodule (``self.score``), so that ``.to()``, ``.eval()``, ``.parameters()`` and
    ``state_dict()`` reach it, as k-diffusion's own wrappers hold their inner model."""

    def __init__(self, score: Callable):
        super().__init__()
        if not callable(score):
            raise TypeError(f"the score must be callable as score(x, sigma), got {type(score).__name__}")
        self.score = score

    def forward(self, x: torch.Tensor, sigma, **extra_args) -> torch.Tensor:
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).cpu()
        if sig.numel() not in (1, x.shape[0]):
            raise ValueError(f"sigma has {sig.numel()} values for a batch of {x.shape[0]}: give one, or one per sample")
        bad = sig[~(torch.isfinite(sig) & (sig > 0))]
        if len(bad):
            raise ValueError(f"sigma must be finite and > 0 (a noise level), got {float(bad[0]):g}")
        if sig.numel() == 1 or bool((sig == sig[0]).all()):
            return denoiser(self.score)(x, float(sig[0]))  # Tweedie's map, one home: pds.modern
        out = torch.empty_like(x)
        for s in torch.unique(sig).tolist():
            idx = torch.nonzero(sig == s).reshape(-1).to(x.device)
            out[idx] = denoiser(self.score)(x[idx], s)
        return out


def score_of_denoiser(model: Callable) -> Callable:
    """``score(x, σ) = (model(x, σ·1) − x)/σ²`` for a k-diffusion denoiser ``model(x, sigma_tensor)`` (σ a float, as
    this library's samplers call it), so that :mod:`pds.samplers` and :mod:`pds.modern` sample k-diffusion models."""
    if not callable(model):
        raise TypeError(f"the denoiser must be callable as model(x, sigma), got {type(model).__name__}")

    def score(x: torch.Tensor, sigma: float) -> torch.Tensor:
        s = x.new_full((x.shape[0],), float(sigma))
        return (model(x, s) - x) / float(sigma) ** 2

    return score


def noise_sampler(x: torch.Tensor, preconditioner: Preconditioner | None = None,
                  generator: torch.Generator | None = None) -> Callable:
    """A k-diffusion ``noise_sampler(sigma, sigma_next)`` for states like ``x``: each call draws ξ ~ N(0, I) (from
    ``generator``: one, or one per sample) and returns M⁻¹ξ (Eq. 11; ξ itself without a preconditioner, like
    k-diffusion's default). σ is ignored: PDS's noise transform does not depend on the level."""
    shape, dtype, device = tuple(x.shape), x.dtype, x.device
    if preconditioner is not None:
        if not isinstance(preconditioner, Preconditioner):
            raise TypeError(f"preconditioner must be a pds.Preconditioner or None, got {type(preconditioner).__name__}")
        preconditioner.check_shape(shape[1:])

    def sample(sigma=None, sigma_next=None) -> torch.Tensor:
        xi = randn(shape, generator, dtype, device)
        return xi if preconditioner is None else preconditioner.noise(xi)

    return sample
