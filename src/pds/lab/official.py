"""The paper's experiments on the published checkpoints: what is available here, and stand-in files of the same
layouts so that every step runs without them.

* :func:`inventory` — for each experiment of :mod:`pds.configs`: is its checkpoint under ``$PDS_CHECKPOINTS``
  (:func:`pds.models.checkpoints.find_checkpoint`), are its statistics filters under ``data/filters/``; and, when not,
  how to get them. The official-models notebook skips what is missing and says so.
* :func:`write_random_official` — a **random-weight** checkpoint in an experiment's official file layout (score_sde
  dict for NCSN++, the ncsn / ncsnv2 lists) with a tiny network, and :func:`write_synthetic_filters` — filters of
  the right shape. The smoke and default profiles run the official-models code path on these; what they produce
  is labelled and claims nothing about the paper.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pds.configs import EXPERIMENTS, Experiment
from pds.filters import save_filters, synthetic_filters
from pds.models import OFFICIAL_CONFIGS, CondRefineNetDilated, NCSNpp, NCSNppConfig, NCSNv2Deeper
from pds.models.checkpoints import CHECKPOINT_DIR, atomic_save, find_checkpoint
from pds.schedules import geometric_sigmas
from pds.storage import DATA_DIR

__all__ = ["FILTERS_DIR", "FULL_WIDTH", "inventory", "write_random_official", "write_synthetic_filters",
           "tiny_ncsnpp_config"]

FILTERS_DIR = DATA_DIR / "filters"


def _filters_hint(exp: Experiment) -> str:
    folder = "/path/to/" + exp.dataset.lower().replace(" ", "_") + "_png"
    return (f"estimate them from {exp.dataset} images: `pds filters estimate --data {folder} --size {exp.size} "
            f"--n 200 --out data/filters/{exp.filters_file}` (data/filters/README.md)")


def inventory(checkpoints=None, filters_dir=None) -> list[dict]:
    """One row per paper experiment: checkpoint and filters found (paths) or missing (with how to get them)."""
    root = Path(checkpoints or os.environ.get("PDS_CHECKPOINTS", CHECKPOINT_DIR))
    filters_dir = Path(filters_dir or FILTERS_DIR)
    rows = []
    for exp in EXPERIMENTS.values():
        row = {"experiment": exp.name, "figure": exp.figure, "model": exp.model, "data": exp.dataset}
        try:
            row["checkpoint"] = str(find_checkpoint(exp.checkpoint, root))
        except FileNotFoundError:
            row["checkpoint"] = None
            row["missing"] = (f"checkpoint: download it from {exp.upstream} and put the .pth file in "
                              f"{root / exp.checkpoint}/")
        if exp.filters_file is None:
            row["filters"] = f"parametric (r, λ) = ({exp.r or 0.2}H, {exp.lam or 1.6})"
        elif (filters_dir / exp.filters_file).is_file():
            row["filters"] = str(filters_dir / exp.filters_file)
        else:
            row["filters"] = None
            row["missing"] = "; ".join(filter(None, [row.get("missing"), "filters: " + _filters_hint(exp)]))
        rows.append(row)
    return rows


def tiny_ncsnpp_config(exp: Experiment, size: int = 16) -> NCSNppConfig:
    """A tiny NCSN++ with the experiment's progressive layout and noise range (random-weight stand-ins only)."""
    official = OFFICIAL_CONFIGS[exp.ncsnpp_config]
    return NCSNppConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(size // 2,), image_size=size,
                        channels=3, progressive=official.progressive, progressive_input=official.progressive_input,
                        num_scales=exp.levels, sigma_min=exp.sigma_min, sigma_max=exp.sigma_max)


FULL_WIDTH = {"ncsn": 64, "ncsnv2deeper": 128}  # ngf of the official NCSN (MNIST) and NCSNv2Deeper (LSUN)


def write_random_official(exp: Experiment, root, seed: int = 0, size: int = 16,
                          full: bool = False) -> tuple[Path, dict | None]:
    """A random-weight checkpoint in ``exp``'s official layout at ``root/<exp.checkpoint>/checkpoint.pth``; returns
    (path, the NCSN++ network config to load it with, or None for NCSN / NCSNv2 whose shapes say everything).
    ``full``: the official network at the official configuration and image size (NCSN++: ``OFFICIAL_CONFIGS``, loaded
    by inference, config None; NCSN: ngf 64; NCSNv2Deeper: ngf 128) instead of a tiny one of ``size``."""
    path = Path(root) / exp.checkpoint / "checkpoint.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if exp.model == "ncsnpp":
            cfg = OFFICIAL_CONFIGS[exp.ncsnpp_config] if full else tiny_ncsnpp_config(exp, size)
            net = NCSNpp(cfg)
            for p in net.parameters():  # score_sde initialises some layers at zero: make the stand-in non-trivial
                p.data.add_(0.02 * torch.randn_like(p))
            state = {f"module.{k}": v for k, v in net.state_dict().items()}
            shadow = [p.detach().clone() for p in net.parameters() if p.requires_grad]
            obj = {"model": state, "ema": {"decay": 0.999, "num_updates": 1, "shadow_params": shadow},
                   "optimizer": {}, "step": 1}
            config = None if full else {k: v for k, v in cfg.__dict__.items() if k != "extra"}
        elif exp.model == "ncsn":
            net = CondRefineNetDilated(ngf=FULL_WIDTH["ncsn"] if full else 4, channels=1, num_classes=exp.levels,
                                       image_size=exp.size)
            obj, config = [{f"module.{k}": v for k, v in net.state_dict().items()}, {}], None
        else:
            sigmas = torch.tensor(geometric_sigmas(exp.sigma_max, exp.sigma_min, exp.levels))
            net = NCSNv2Deeper(ngf=FULL_WIDTH["ncsnv2deeper"] if full else 4, channels=3, sigmas=sigmas)
            state = {f"module.{k}": v for k, v in net.state_dict().items()}
            obj, config = [state, {}, 0, 1, {n: p.detach().clone() for n, p in net.named_parameters()}], None
    atomic_save(obj, path)
    return path, config


def write_synthetic_filters(exp: Experiment, folder, size: int) -> Path | None:
    """Filters of the experiment's kind (frequency, plus space for FFHQ) shaped for ``size``² images (stand-ins)."""
    if exp.filters_file is None:
        return None
    freq, space = synthetic_filters(3, size, space=True)
    return save_filters(Path(folder) / exp.filters_file, freq, space, source="synthetic (random-weight stand-in)")
