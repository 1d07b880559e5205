"""PDS where other libraries sample: diffusers (:mod:`~pds.integrations.diffusers`, imported only when diffusers is
installed: ``import pds`` never imports it) and k-diffusion (:mod:`~pds.integrations.kdiffusion`)."""
