"""PDS inside diffusers: :class:`PDSScoreSdeVeScheduler`, a ``ScoreSdeVeScheduler`` whose corrector and predictor
precondition the score and the noise (Eq. 11, Alg. 1), for ``ScoreSdeVePipeline(unet, scheduler)`` unchanged::

    pipe = ScoreSdeVePipeline.from_pretrained("google/ncsnpp-celebahq-256")
    pipe.scheduler = PDSScoreSdeVeScheduler.from_config(pipe.scheduler.config, filters="celebahq_filters.npz")
    image = pipe(num_inference_steps=166).images[0]

Per corrector step, with g = M⁻¹M⁻ᵀ s and η = M⁻¹ξ: ε = 2·(snr·mean‖η‖ / mean‖g‖)², x̄ = x + ε g, x = x̄ + √(2ε) η;
per predictor step, with G = √(σ_j² − σ_{j−1}²): x̄ = x + M⁻¹M⁻ᵀ(G² s), x = x̄ + G·M⁻¹ξ — diffusers' arithmetic, its
random draws in its order, and ``pds.precondition``'s operators (released normalisation, real FFTs for a symmetric R,
the space filter A). Without a preconditioner (or with all-ones filters) every step is diffusers' own, bit for bit.

Where this differs from :func:`pds.samplers.pc_sampler` (the released code's rules, score_sde's), all of it diffusers':

* the prior: the pipeline draws σ_max·ξ, white; the released code draws σ_max·M⁻¹ξ (:meth:`PDSScoreSdeVeScheduler.prior`
  gives it to a loop of one's own);
* the time grid's end: diffusers' ``sampling_eps`` (1e-5) at any number of steps; the released code uses
  1e-5·(num_scales / T) when it shortens to T steps (pass ``sampling_eps`` to match it);
* σ(t_i) is computed element by element (by ``pc_sampler`` as one vector: with vectorised kernels a few of 2000
  differ in their last bit);
* the output: the pipeline returns x̄ of the last step clamped to [0, 1] (``pc_sampler`` returns it unclamped).

The filters: a :class:`pds.precondition.Preconditioner` (``preconditioner=``), a filters file of ``pds filters
estimate`` with ``alpha`` and ``space`` (``filters=``), or the parametric filter (``parametric_r`` in units of H,
``parametric_lam``, ``parametric_centre``, built for the images' size at the first step). ``save_pretrained`` writes
the filters beside ``scheduler_config.json`` (``pds_filters.npz``; a given preconditioner's normalised filters, with
``alpha`` "none") and ``from_pretrained`` of a local folder reads them back.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import ScoreSdeVeScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_sde_ve import SdeVeOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput  # noqa: F401  (see below)
from diffusers.utils.torch_utils import randn_tensor

from pds.filters import file_preconditioner, load_filters, parametric_preconditioner, save_filters
from pds.precondition import Preconditioner

__all__ = ["PDSScoreSdeVeScheduler", "FILTERS_NAME", "last_mean"]

# SchedulerMixin is a name of this module on purpose: a saved pipeline names this module in its model_index.json, and
# diffusers' loader looks there for the component's base class to know how to load it (``from_pretrained``). diffusers
# loads it only once this module is imported.

FILTERS_NAME = "pds_filters.npz"  # the filters beside scheduler_config.json


def _mean_norm(v: torch.Tensor) -> torch.Tensor:
    return torch.norm(v.reshape(v.shape[0], -1), dim=-1).mean()


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A value per sample, shaped to broadcast over ``like`` ([B] → [B, 1, 1, 1])."""
    return v.flatten().reshape(-1, *[1] * (like.ndim - 1))


class PDSScoreSdeVeScheduler(ScoreSdeVeScheduler):
    """diffusers' VE SDE scheduler with PDS's preconditioning (see the module docstring).

    The first six arguments are ``ScoreSdeVeScheduler``'s. ``filters``: a filters file (``pds filters estimate``),
    with ``space`` (also its space filter A, Fig. 1); ``parametric_r`` / ``parametric_lam`` / ``parametric_centre``:
    the parametric filter instead (r in units of H); ``alpha``: the released normalisation's strength, as ``pds
    sample --alpha`` takes it (None: 5 for a filters file, the parametric filter as given; "none": as given; a
    number > 1); ``preconditioner``: a ready :class:`~pds.precondition.Preconditioner` instead (not a config entry:
    ``save_pretrained`` stores its normalised filters). None of them: vanilla, diffusers' own steps."""

    ignore_for_config = ["preconditioner"]

    @register_to_config
    def __init__(self, num_train_timesteps: int = 2000, snr: float = 0.15, sigma_min: float = 0.01,
                 sigma_max: float = 1348.0, sampling_eps: float = 1e-5, correct_steps: int = 1,
                 filters: str | None = None, alpha: float | str | None = None, space: bool = False,
                 parametric_r: float | None = None, parametric_lam: float | None = None,
                 parametric_centre: str = "paper", preconditioner: Preconditioner | None = None):
        super().__init__(num_train_timesteps=num_train_timesteps, snr=snr, sigma_min=sigma_min, sigma_max=sigma_max,
                         sampling_eps=sampling_eps, correct_steps=correct_steps)
        if (parametric_r is None) != (parametric_lam is None):
            raise ValueError("the parametric filter needs both parametric_r (in units of H) and parametric_lam")
        if filters is not None and parametric_r is not None:
            raise ValueError("give filters or parametric_r / parametric_lam, not both")
        if filters is not None and not Path(filters).is_file():
            raise FileNotFoundError(f"filters={filters!r} does not exist: make one with `pds filters estimate` (or "
                                    "pass the folder to from_pretrained, which finds pds_filters.npz there)")
        self._alpha(None)  # a wrong alpha is refused here, not at the first step
        self.preconditioner = None if filters is None else file_preconditioner(filters, self._alpha(5.0), space)
        self._parametric: dict[tuple, Preconditioner] = {}
        if preconditioner is not None:
            self.use(preconditioner)

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs: bool = False, **kwargs):
        """diffusers' ``from_config`` (e.g. of a pipeline's ``ScoreSdeVeScheduler`` config), also taking
        ``preconditioner=`` (which diffusers would drop, as it is not a config entry).

        Args:
            config: a scheduler config (a dict or ``FrozenDict``).
            return_unused_kwargs: as diffusers'.
            **kwargs: config entries to override, and ``preconditioner=``.

        Returns:
            The scheduler (and the unused keyword arguments with ``return_unused_kwargs``).
        """
        pre = kwargs.pop("preconditioner", None)
        out = super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)
        if pre is not None:
            (out[0] if return_unused_kwargs else out).use(pre)
        return out

    def _alpha(self, usual: float | None) -> float | None:
        """The config's ``alpha``: None → ``usual`` (5 for a filters file, none for the parametric filter, as ``pds
        sample``), "none" → the filter as given, else the number."""
        a = self.config.alpha
        if isinstance(a, str):
            if a.strip().lower() != "none":
                raise ValueError(f"alpha must be a number > 1, 'none' or None, got {a!r}")
            return None
        return usual if a is None else float(a)

    def use(self, preconditioner: Preconditioner) -> None:
        """Sample with ``preconditioner`` (refused when the config already names filters or the parametric filter).

        Args:
            preconditioner: a :class:`pds.precondition.Preconditioner` for the images this scheduler will sample.
        """
        if not isinstance(preconditioner, Preconditioner):
            raise TypeError(f"preconditioner must be a pds.Preconditioner, got {type(preconditioner).__name__}")
        if self.config.filters is not None or self.config.parametric_r is not None:
            raise ValueError("give one of filters, parametric_r / parametric_lam or preconditioner, not several")
        self.preconditioner = preconditioner

    # -- the preconditioner -------------------------------------------------------------------
    def preconditioner_for(self, shape) -> Preconditioner | None:
        """The preconditioner for images of ``shape`` (the parametric filter is built per size).

        Args:
            shape: the images' shape [C, H, W].

        Returns:
            The :class:`pds.precondition.Preconditioner` used for them, or None (vanilla: diffusers' own steps).
        """
        shape = tuple(int(s) for s in shape)
        if self.config.parametric_r is not None:
            if shape not in self._parametric:
                self._parametric[shape] = parametric_preconditioner(
                    shape, self.config.parametric_r, self.config.parametric_lam, self.config.parametric_centre,
                    self._alpha(None))
            return self._parametric[shape]
        if self.preconditioner is not None:
            self.preconditioner.check_shape(shape)
        return self.preconditioner

    def _operators(self, sample: torch.Tensor):
        pre = self.preconditioner_for(sample.shape[1:])
        if pre is None:
            return (lambda v: v), (lambda v: v)
        return pre.drift, pre.noise

    def prior(self, shape, generator: torch.Generator | None = None, device=None,
              dtype=torch.float32) -> torch.Tensor:
        """x_T = σ_max·M⁻¹ξ, the released code's preconditioned prior, drawn as the pipeline draws its white one.

        Args:
            shape: the batch's shape [B, C, H, W].
            generator: the ``torch.Generator`` of the draw (as the pipeline's).
            device: where the prior goes (drawn on the CPU, as ``randn_tensor`` draws for a CPU generator).
            dtype: its dtype.

        Returns:
            The initial sample, a tensor of ``shape``.
        """
        xi = randn_tensor(tuple(shape), generator=generator, dtype=dtype).to(device or "cpu")
        return self._operators(xi)[1](xi) * self.init_noise_sigma

    # -- the steps: diffusers' update rules with M⁻¹M⁻ᵀ on the score and M⁻¹ on the noise ------------------
    def _check_timesteps(self) -> None:
        if self.timesteps is None:
            raise ValueError("`self.timesteps` is not set: call set_timesteps(num_inference_steps) (and set_sigmas) "
                             "after creating the scheduler, as for diffusers' ScoreSdeVeScheduler")

    def step_pred(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
                  generator: torch.Generator | None = None, return_dict: bool = True):
        """Reverse diffusion from level j to j − 1: x̄ = x + M⁻¹M⁻ᵀ(G² s), x = x̄ + G·M⁻¹ξ, G² = σ_j² − σ_{j−1}² (the
        released predictor; j = int(t·(N − 1)) as diffusers and score_sde compute it).

        Args:
            model_output: the score s(x, σ_j) of ``sample`` (what ``UNet2DModel`` returns for this scheduler).
            timestep: t of this step, one of ``self.timesteps``.
            sample: the current x, [B, C, H, W].
            generator: the ``torch.Generator`` of the noise ξ.
            return_dict: return an ``SdeVeOutput`` (else a tuple).

        Returns:
            ``SdeVeOutput(prev_sample=x, prev_sample_mean=x̄)``, or ``(x, x̄)``.

        Raises:
            ValueError: before ``set_timesteps`` (there are no levels yet), as diffusers' own scheduler does.
        """
        self._check_timesteps()
        drift, noise = self._operators(sample)
        t = timestep * torch.ones(sample.shape[0], device=sample.device)
        levels = (t * (len(self.timesteps) - 1)).long().to(self.discrete_sigmas.device)
        sigma = self.discrete_sigmas[levels].to(sample.device)
        sigma_prev = self.get_adjacent_sigma(levels, t).to(sample.device)
        g = _per_sample((sigma**2 - sigma_prev**2) ** 0.5, sample)
        mean = sample + drift(g**2 * model_output)
        xi = randn_tensor(sample.shape, layout=sample.layout, generator=generator, device=sample.device,
                          dtype=sample.dtype)
        prev = mean + g * noise(xi)
        return SdeVeOutput(prev_sample=prev, prev_sample_mean=mean) if return_dict else (prev, mean)

    def step_correct(self, model_output: torch.Tensor, sample: torch.Tensor,
                     generator: torch.Generator | None = None, return_dict: bool = True):
        """One preconditioned Langevin step (Alg. 1): g = M⁻¹M⁻ᵀ s, η = M⁻¹ξ, ε = 2(snr·mean‖η‖/mean‖g‖)² (norms
        per sample, averaged over the batch), x̄ = x + ε g, x = x̄ + √(2ε) η.

        Args:
            model_output: the score s(x, σ) of ``sample``.
            sample: the current x, [B, C, H, W].
            generator: the ``torch.Generator`` of the noise ξ.
            return_dict: return a ``SchedulerOutput`` (else a tuple).

        Returns:
            ``SchedulerOutput(prev_sample=x)``, or ``(x,)``.

        Raises:
            ValueError: before ``set_timesteps``, as diffusers' own scheduler does.
        """
        self._check_timesteps()
        drift, noise = self._operators(sample)
        eta = noise(randn_tensor(sample.shape, layout=sample.layout, generator=generator).to(sample.device))
        g = drift(model_output)
        eps = (self.config.snr * _mean_norm(eta) / _mean_norm(g)) ** 2 * 2
        eps = _per_sample(eps * torch.ones(sample.shape[0]).to(sample.device), sample)
        prev = sample + eps * g + ((eps * 2) ** 0.5) * eta
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    # -- saving and loading with the filters ------------------------------------------------------------
    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> None:
        """``scheduler_config.json`` and, with filters, ``pds_filters.npz`` beside it, which the saved config's
        ``filters`` names (this scheduler's own config is left as it is).

        Args:
            save_directory: the folder to write (made if absent).
            push_to_hub: as diffusers' (the filters file is written to the folder first).
            **kwargs: passed to diffusers' ``save_pretrained``.
        """
        pre = self.preconditioner
        if pre is None:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        os.makedirs(save_directory, exist_ok=True)
        path, kept = Path(save_directory) / FILTERS_NAME, dict(self.config)
        if self.config.filters is not None:  # the file as given; its α and space choice stay in the config
            f = load_filters(self.config.filters)
            save_filters(path, f.freq, f.space, **f.metadata)
            saved = {"filters": FILTERS_NAME}
        else:  # a Preconditioner: its normalised filters, to be used as given
            save_filters(path, pre.freq, pre.space, source="the normalised filters of a pds.Preconditioner")
            saved = {"filters": FILTERS_NAME, "alpha": "none", "space": pre.space is not None}
        self.register_to_config(**saved)
        try:
            super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            self.register_to_config(**{k: kept[k] for k in saved})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, subfolder: str | None = None,
                        return_unused_kwargs: bool = False, **kwargs):
        """diffusers' ``from_pretrained``, with the filters file of a local folder found beside its config.

        Args:
            pretrained_model_name_or_path: a local folder (or a hub id whose config names no filters file).
            subfolder: the scheduler's subfolder (e.g. "scheduler" of a saved pipeline).
            return_unused_kwargs: as diffusers'.
            **kwargs: config entries to override (``filters=`` a path overrides the saved file).

        Returns:
            The scheduler (and the unused keyword arguments with ``return_unused_kwargs``).

        Raises:
            FileNotFoundError: the config names a filters file but the source is not a local folder.
        """
        config = cls.load_config(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        name = config.get("filters")
        if name is not None and "filters" not in kwargs and not Path(name).is_absolute():
            folder = Path(pretrained_model_name_or_path) / (subfolder or "")
            if not folder.is_dir():
                raise FileNotFoundError(f"{pretrained_model_name_or_path}: its scheduler names the filters file "
                                        f"{name!r}, read from a local folder only: download the folder first "
                                        "(huggingface_hub.snapshot_download) and pass its path")
            kwargs["filters"] = str(folder / name)
        return super().from_pretrained(pretrained_model_name_or_path, subfolder=subfolder,
                                       return_unused_kwargs=return_unused_kwargs, **kwargs)


def last_mean(pipe, **call) -> torch.Tensor:
    """Run ``pipe`` (a ``ScoreSdeVePipeline``, with this scheduler or diffusers' own) with the keyword arguments
    ``call`` and return the x̄ of its last predictor step — what ``pc_sampler`` returns, before the pipeline clamps it
    to [0, 1] (which hides every difference outside that range).

    Args:
        pipe: the pipeline.
        **call: its call's keyword arguments (``num_inference_steps``, ``generator``, ``batch_size``...).

    Returns:
        x̄ of the last predictor step, a tensor [N, C, H, W].
    """
    scheduler, last = pipe.scheduler, {}
    step_pred = scheduler.step_pred

    def keep(*args, **kwargs):
        out = step_pred(*args, **kwargs)
        last["mean"] = out.prev_sample_mean if isinstance(out, SdeVeOutput) else out[1]
        return out

    scheduler.step_pred = keep
    try:
        pipe(**call)
    finally:
        del scheduler.step_pred  # the class's method again
    return last["mean"]
