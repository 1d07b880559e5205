"""PDS where other libraries sample.

* :mod:`pds.integrations.diffusers` — :class:`~pds.integrations.diffusers.PDSScoreSdeVeScheduler`, diffusers'
  ``ScoreSdeVeScheduler`` with a preconditioner, for the ``ScoreSdeVePipeline`` that runs the hub's google/ncsnpp-*
  models (imported only when diffusers is installed: ``import pds`` never imports it);
* :mod:`pds.integrations.kdiffusion` — k-diffusion's conventions: a denoiser ``model(x, sigma) -> D(x)`` around a
  score ``score(x, σ)`` and back, and a ``noise_sampler`` that draws PDS's coloured noise M⁻¹ξ.
"""
