"""Sample-quality experiments on the small models trained here (Fashion-MNIST stand-ins for the paper's
NCSN on MNIST, Fig. 3, and NCSN++ on CIFAR-10, Table 1): vanilla versus PDS at given iteration
counts, scored by the classifier-feature FD of :mod:`pds.lab.metrics`.

A run is described by a :class:`Method` (vanilla, or PDS with a parametric or statistics filter), an
iteration count T, a number of samples and a seed. :class:`pds.lab.cache.ResultCache` keeps every finished run (numbers
as JSON lines, samples as ``.npz``) keyed by its normalised description and behaviour fingerprints of the code it
runs, so an interrupted sweep loses nothing it finished, and a rerun with the same settings reads instead of
recomputing.

Iteration counts follow the paper: for NCSN, T is the number of Langevin steps (full: 10 levels ×
100 steps; shorter schedules by :meth:`pds.schedules.LangevinLadder.shorten`, with the step size expanded
proportionally); for NCSN++, T is the number of predictor-corrector iterations (full: 1000; NFE = 2T).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pds.configs import EXPERIMENTS, STAND_INS, Experiment
from pds.configs import experiment as experiment_named
from pds.filters import (
    file_preconditioner,
    frequency_filter,
    parametric_filter,
    parametric_preconditioner,
)
from pds.lab.data import load_idx_images
from pds.lab.verdicts import Verdict, beats, matches, spread, summary  # noqa: F401  (the notebooks' names)
from pds.models.checkpoints import file_sha256, load_official
from pds.models.trained import load_trained
from pds.precondition import Preconditioner
from pds.samplers import Settings, sampler
from pds.solenoidal import FourierSkew, PaperSolenoidal, central_difference, skew_term

__all__ = ["Method", "SmallModel", "sample", "draw", "crop_and_clip", "statistics_filter", "flat_equivalent",
           "Verdict", "spread", "matches", "beats", "run_seeds", "values", "floor_values"]


FILTERS = (None, "parametric", "flat", "constant", "statistics", "file")
STEPS = ("expand", "keep")
SKEW_OPERATORS = (None, "paper", "central_h", "central_w", "central_hw")


@dataclass(frozen=True)
class Method:
    """How to sample.

    ``filter``: None (vanilla); "parametric" (R of Sec. 4.3: radius ``r``·H, value ``lam``, ``centre`` "paper" —
    the literal reading — or "dc", see :func:`pds.filters.parametric_filter`); "flat" (the **scalar control** of that
    parametric filter: a constant R = c with the same overall step change, 1/c² = the mean over frequencies of the
    drift gain 1/R², so that only the frequency *shape* differs); "constant" (R ≡ ``lam`` at every frequency, no
    normalisation: the drift gain 1/λ² everywhere, the scalar control of any filter, e.g. of R's mean gain);
    "statistics" (R of Eq. 14 from ``stats_n``
    training images); "file" (R and, with ``space``, A from a :func:`pds.filters.save_filters` file at ``path``, as
    ``pds filters estimate`` writes them). ``alpha`` is the released normalisation strength (None: the filter as it
    is). ``sampler``: "released" (the VE PC sampler for NCSN++, annealed Langevin for NCSN / NCSNv2) or a sampler
    registered in :data:`pds.samplers.SAMPLERS` (:mod:`pds.modern`'s euler, heun, dpmpp_2m, edm_churn, pc_kept).
    ``solenoidal`` and ``omega``: the term ω·S∇log p of Eq. 7 / Sec. 5 with S "paper" (the
    printed Re[F − Fᵀ], identically zero), "central_h" / "central_w" (circular central differences) or
    "central_hw" (their sum), all skew-symmetric (:mod:`pds.solenoidal`).
    ``step`` (annealed Langevin with fewer steps than the full schedule): "expand" — the paper's "reduce T and
    proportionally expand the step size" (all levels, fewer steps each, step_lr scaled so that Σ n_c α_c is kept) —
    or "keep" (all levels, fewer steps each, the official step_lr).
    """

    filter: str | None = None
    r: float | None = None
    lam: float | None = None
    alpha: float | None = None
    stats_n: int = 200
    centre: str = "paper"
    step: str = "expand"
    path: str | None = None
    space: bool = False
    sampler: str = "released"
    solenoidal: str | None = None
    omega: float = 0.0

    def __post_init__(self):
        # normalised: numbers as floats (``alpha=5`` and ``alpha=5.0`` are one method, with one cache key)
        for name in ("r", "lam", "alpha", "omega"):
            value = getattr(self, name)
            if value is None and name != "omega":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise TypeError(f"{name} must be a number{'' if name == 'omega' else ' or None'}, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.stats_n, bool) or int(self.stats_n) != self.stats_n or self.stats_n < 1:
            raise ValueError(f"stats_n must be a positive integer, got {self.stats_n!r}")
        object.__setattr__(self, "stats_n", int(self.stats_n))
        object.__setattr__(self, "space", bool(self.space))
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {self.filter!r}")
        if (self.filter == "file") != (self.path is not None):
            raise ValueError("a filter file needs filter='file' and path= (and only then)")
        if self.solenoidal not in SKEW_OPERATORS:
            raise ValueError(f"solenoidal must be one of {SKEW_OPERATORS}, got {self.solenoidal!r}")
        if not math.isfinite(self.omega):
            raise ValueError(f"omega must be finite, got {self.omega}")
        if self.filter in ("parametric", "flat") and (self.r is None or self.lam is None):
            raise ValueError(f"a {self.filter} filter needs r (in units of H) and lam")
        if self.filter == "constant" and (self.lam is None or not self.lam > 0 or self.alpha is not None
                                          or self.r is not None):
            raise ValueError(f"a constant filter needs lam > 0 (R ≡ lam: drift gain 1/lam²) and neither r nor alpha "
                             f"(normalising a constant gives 1), got lam={self.lam}, r={self.r}, alpha={self.alpha}")
        if self.step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, got {self.step!r}")

    @property
    def label(self) -> str:
        a = "" if self.alpha is None else f", α={self.alpha:g}"
        step = "" if self.step == "expand" else ", step kept"
        if self.solenoidal is not None and self.omega != 0:
            step += f", ω={self.omega:g}·S[{self.solenoidal}]"
        if self.sampler != "released":
            step += f", sampler {self.sampler}"
        if self.filter is None:
            return "vanilla" + step
        if self.filter == "parametric":
            return f"PDS parametric ({self.centre}, r={self.r:g}H, λ={self.lam:g}{a}){step}"
        if self.filter == "flat":
            return f"scalar control of ({self.centre}, r={self.r:g}H, λ={self.lam:g}{a}){step}"
        if self.filter == "constant":
            return f"scalar drift gain {self.lam ** -2:.4g}{step}"
        if self.filter == "file":
            return f"PDS R{' + A' if self.space else ''} from {Path(self.path).name}{a}{step}"
        return f"PDS statistics R{a}{step}"


def flat_equivalent(filt: torch.Tensor, alpha: float | None) -> float:
    """The constant filter c with the same mean drift gain as ``filt``: 1/c² = mean(1/R̃²) (R̃ after the
    normalisation ``alpha``), i.e. the same overall change of the step size."""
    gain = Preconditioner(freq=filt, alpha=alpha).freq_gain
    return 1.0 if gain is None else float(gain.pow(2).mean().rsqrt())


def statistics_filter(images: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """R = log(E|F[x]|² + 1) (Eq. 14) from ``n`` images chosen with ``seed`` (the paper uses 200)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:n]
    return frequency_filter(images[idx].double())


def _experiment_of(arch: str, info: dict) -> Experiment:
    """The paper experiment an official checkpoint belongs to (see :meth:`SmallModel.official`)."""
    if arch == "ncsnpp":
        hits = [e for e in EXPERIMENTS.values() if e.ncsnpp_config == info.get("matched")]
    elif arch == "ncsn":
        hits = [EXPERIMENTS["mnist_ncsn"]]
    else:
        hits = [e for e in EXPERIMENTS.values() if e.model == "ncsnv2deeper" and e.levels == len(info["sigmas"])]
    if not hits:
        raise ValueError(f"no paper experiment matches this {arch} checkpoint ({info.get('matched') or ''}"
                         f"{len(info.get('sigmas') or [])} levels); name one of {sorted(EXPERIMENTS)}")
    return hits[0]


class SmallModel:
    """A score model trained here, with its sampler: :func:`pds.models.trained.load_trained` plus the data
    the statistics filter is estimated from (the training images, padded like the model's input)."""

    def __init__(self, name: str, score=None, config=None, train_images: torch.Tensor | None = None,
                 experiment: Experiment | None = None):
        """``score`` and ``config`` default to :func:`pds.models.trained.load_trained` of ``name``; a config needs
        ``kind``, ``net`` (``image_size``, ``channels``), the noise levels and optionally ``data.pad``. The
        sampler settings are those of ``experiment``, by default the paper experiment the model stands in for
        (:mod:`pds.configs`); a sidecar's ``sampler`` entry overrides the Langevin step."""
        if score is None:
            score, config = load_trained(name)
        self.name, self.score, self.config = name, score, config
        self.kind = config["kind"]
        if self.kind not in ("ncsn", "ncsnv2", "ncsnpp"):
            raise ValueError(f"unknown model kind {self.kind!r}")
        size = config["net"]["image_size"]
        self.shape = (config["net"]["channels"], size, size)
        self.pad = int(config.get("data", {}).get("pad") or 0)
        self.experiment: Experiment = experiment or EXPERIMENTS[STAND_INS[self.kind]]
        self._train = train_images

    @classmethod
    def official(cls, path, experiment: Experiment | str | None = None, config=None,
                 image_size: int | None = None) -> SmallModel:
        """An official checkpoint (:func:`pds.models.checkpoints.load_official`) with the sampler settings of its paper
        experiment: given (a :class:`pds.configs.Experiment` or its name), or found from the file (the NCSN++
        configuration it matches; NCSN v1: MNIST; NCSNv2: the experiment with as many noise levels). ``config``:
        an NCSN++ network configuration that is not an official one; ``image_size``: the size to sample at (default:
        NCSN++'s own, else the experiment's)."""
        score, info = load_official(path, config=config)
        arch = info["arch"]
        if isinstance(experiment, str):
            experiment = experiment_named(experiment)
        if arch == "ncsnpp-diffusers":
            return cls._diffusers(path, score, info, experiment)
        if experiment is None:
            experiment = _experiment_of(arch, info)
        size = image_size or info.get("image_size") or experiment.size
        config = {"kind": "ncsnpp" if arch == "ncsnpp" else ("ncsn" if arch == "ncsn" else "ncsnv2"),
                  "net": {"image_size": int(size), "channels": int(info["channels"])}, **info,
                  "file_sha256": file_sha256(path)}
        return cls(f"{Path(path).parent.name}/{Path(path).stem}", score, config, experiment=experiment)

    @classmethod
    def _diffusers(cls, path, score, info: dict, experiment: Experiment | None) -> SmallModel:
        """A diffusers NCSN++ with the sampler settings of its own scheduler config (σ range, scales, snr; final
        denoising as score_sde's); the paper experiment of its size (else CIFAR-10's) for the rest."""
        if "sigma_max" not in info:
            raise ValueError(f"{path}: a diffusers UNet without its scheduler: give the pipeline folder "
                             "(model_index.json, unet/, scheduler/ as on the hub), whose scheduler says the σ range "
                             "and the number of scales")
        if experiment is None:
            same = [e for e in EXPERIMENTS.values() if e.model == "ncsnpp" and e.size == info["image_size"]]
            experiment = same[0] if same else EXPERIMENTS["cifar10_ncsnpp"]
        experiment = dataclasses.replace(experiment, name=f"diffusers {Path(path).name}", sigma_min=info["sigma_min"],
                                         sigma_max=info["sigma_max"], levels=info["num_scales"],
                                         vanilla_T=info["num_scales"], snr=info["snr"], denoise=True,
                                         size=int(info["image_size"]))
        config = {"kind": "ncsnpp", "net": {"image_size": int(info["image_size"]), "channels": int(info["channels"])},
                  **info}
        return cls(f"diffusers/{Path(path).name}", score, config, experiment=experiment)

    @property
    def sigma_range(self) -> tuple[float, float]:
        """(σ_max, σ_min) of the model's own noise levels (NCSN++: its continuous range; NCSN / NCSNv2: its ladder)."""
        cfg = self.config
        if self.kind == "ncsnpp":
            return float(cfg["sigma_max"]), float(cfg["sigma_min"])
        return float(cfg["sigmas"][0]), float(cfg["sigmas"][-1])

    @property
    def released(self) -> str:
        """The registered sampler the model's paper experiment runs: "pc" for NCSN++, "annealed_langevin" else."""
        return "pc" if self.kind == "ncsnpp" else "annealed_langevin"

    @property
    def settings(self) -> Settings:
        """The registered samplers' settings of this model: its σ range and ladder, the experiment's snr, init and
        denoise, the Langevin steps per level and step size (:class:`pds.samplers.Settings`)."""
        cfg, exp = self.config, self.experiment
        if self.kind == "ncsnpp":
            return Settings(float(cfg["sigma_min"]), float(cfg["sigma_max"]), int(cfg["num_scales"]), snr=exp.snr,
                            init=exp.init, denoise=exp.denoise)
        sig = tuple(float(v) for v in cfg["sigmas"])
        return Settings(sig[-1], sig[0], len(sig), sigmas=sig, n_steps_each=self.n_steps_each,
                        step_lr=self.step_lr, init=exp.init, denoise=exp.denoise)

    @property
    def full_T(self) -> int:
        if self.kind == "ncsnpp":
            return int(self.config["num_scales"])
        return len(self.config["sigmas"]) * self.n_steps_each

    @property
    def n_steps_each(self) -> int | None:
        """Langevin steps per level at full length (NCSN / NCSNv2): the sidecar's ``sampler`` entry (a model trained
        here with its own ladder, e.g. by NCSNv2's techniques) or the paper experiment's. None for NCSN++, whose PC
        sampler takes one corrector step per iteration (its length is ``num_scales``)."""
        if self.kind == "ncsnpp":
            return None
        steps = self.config.get("sampler", {}).get("n_steps_each") or self.experiment.n_steps_each
        if steps is None:
            raise ValueError(f"{self.name}: no Langevin steps per level, neither in its sidecar's 'sampler' entry nor "
                             f"in the paper experiment {self.experiment.name!r}")
        return int(steps)

    @property
    def step_lr(self) -> float:
        return float(self.config.get("sampler", {}).get("step_lr") or self.experiment.step_lr)

    def train_images(self) -> torch.Tensor:
        if self._train is None:
            x = load_idx_images(self.config.get("data", {}).get("name", "fashion-mnist"), "train")
            self._train = torch.nn.functional.pad(x, (self.pad,) * 4) if self.pad else x
        return self._train

    def solenoidal(self, method: Method):
        """The skew-symmetric operator S of ``method`` for this model's images (None without one)."""
        if method.solenoidal is None or method.omega == 0:
            return None
        h, w = self.shape[1:]
        if method.solenoidal == "paper":
            return PaperSolenoidal()
        if method.solenoidal in ("central_h", "central_w"):
            return central_difference((h, w), method.solenoidal[-1].upper())
        both = central_difference((h, w), "H").imag + central_difference((h, w), "W").imag
        return FourierSkew(both)

    def preconditioner(self, method: Method) -> Preconditioner | None:
        if method.filter is None:
            return None
        if method.filter == "parametric":
            return parametric_preconditioner(self.shape, method.r, method.lam, method.centre, method.alpha)
        if method.filter == "flat":
            c, h, w = self.shape
            filt = parametric_filter((h, w), method.r * h, method.lam, channels=c, centre=method.centre)
            return Preconditioner(freq=torch.full((c, h, w), flat_equivalent(filt, method.alpha)), alpha=None,
                                  shape=self.shape)
        if method.filter == "constant":
            return Preconditioner(freq=torch.full(self.shape, method.lam), alpha=None, shape=self.shape)
        if method.filter == "file":
            return file_preconditioner(method.path, method.alpha, method.space, shape=self.shape)
        return Preconditioner(freq=statistics_filter(self.train_images(), method.stats_n), alpha=method.alpha,
                              shape=self.shape)


def crop_and_clip(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Samples in [0, 1] at the data's size: the training padding cropped off, values clipped."""
    if pad:
        x = x[..., pad:-pad, pad:-pad]
    return x.clamp(0, 1)


@torch.no_grad()
def draw(model: SmallModel, pre: Preconditioner | None, method: Method, T: int, shape, generator, device,
         corrector: str = "batch", progress: bool = False, dtype=torch.float32) -> tuple[torch.Tensor, int]:
    """One batch of ``shape`` = [B, C, H, W] with ``method`` in T iterations, on ``device``; returns (raw samples,
    NFE per sample). ``generator``: one for the batch, or one per sample. The sampler is the registered
    ``method.sampler`` (:data:`pds.samplers.SAMPLERS`; "released": the model's own, :attr:`SmallModel.released`), its
    schedule and options from :attr:`SmallModel.settings` (:meth:`pds.samplers.Sampler.schedule`): NCSN++'s PC
    sampler in T predictor-corrector iterations (NFE = 2T, the corrector's step rule ``corrector``), NCSN / NCSNv2's
    annealed Langevin in T steps (the full ladder when T is its length, else shortened with the step expanded or
    kept, ``method.step``), the "ode" family on EDM's T noise levels over the model's σ range."""
    name = model.released if method.sampler == "released" else method.sampler
    spec = sampler(name)
    if spec.family not in ("ode", sampler(model.released).family):
        raise ValueError(f"the sampler {name!r} does not apply to the {model.kind} model {model.name}: use 'released'")
    skew, kw = skew_term(model.solenoidal(method), method.omega), spec.options(model.settings)
    if skew is not None:
        if spec.family == "ode":
            raise ValueError(f"{name} takes no solenoidal term (omega = {method.omega}): use 'released'")
        kw["skew"] = skew
    kw.update({"pc": {"corrector": corrector}, "langevin": {"progress": progress}}.get(spec.family, {}))
    schedule = spec.schedule(model.settings, T, dtype=dtype, expand=method.step == "expand")
    return spec.fn(model.score, shape, schedule, preconditioner=pre, generator=generator, device=device, dtype=dtype,
                   **kw)


@torch.no_grad()
def sample(model: SmallModel, method: Method, T: int, n: int, seed: int, batch_size: int = 500,
           progress: bool = False, device=None, dtype=torch.float32) -> tuple[torch.Tensor, int]:
    """``n`` samples of ``model`` with ``method`` in T iterations (see :func:`draw`); returns (samples cropped to
    the data's size and clipped to [0, 1], on the CPU; NFE per sample). Batches draw from one generator seeded with
    ``seed`` on ``device`` (default: the CPU), so a result depends on (n, batch_size, seed, device)."""
    if int(T) != T or T < 1 or int(n) != n or n < 1 or batch_size < 1:
        raise ValueError(f"T, n and batch_size must be positive integers, got T={T}, n={n}, batch_size={batch_size}")
    pre = model.preconditioner(method)
    dev = torch.device(device or "cpu")
    if isinstance(model.score, torch.nn.Module):
        model.score.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    out, nfe = [], 0
    for start in range(0, n, batch_size):
        x, nfe = draw(model, pre, method, T, (min(batch_size, n - start), *model.shape), gen, dev, progress=progress,
                      dtype=dtype)
        out.append(crop_and_clip(x, model.pad).cpu())
    return torch.cat(out), nfe


def run_seeds(cache, model: SmallModel, method: Method, T: int, n: int, seeds, score_fn,
              batch_size: int = 500, device=None) -> list[dict]:
    """The rows of one setting over several seeds (each read from ``cache``, a :class:`pds.lab.cache.ResultCache`, or
    computed and stored there)."""
    return [cache.run(model, method, T, n, s, score_fn, batch_size=batch_size, device=device) for s in seeds]


def values(rows) -> list[float]:
    return [float(r["value"]) for r in rows]


def floor_values(score_fn, images: torch.Tensor, n: int, seeds) -> list[float]:
    """The metric of ``n`` real images chosen with each seed: the floor no sampler can be expected to beat at
    this n (the classifier-feature FD is biased upward at small n)."""
    out = []
    for s in seeds:
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(s)))[:n]
        out.append(float(score_fn(images[idx], nfe=0, seed=s).value))
    return out
