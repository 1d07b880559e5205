"""Every fact about the official checkpoint files: layouts, reading, paths (the files ``pds train`` writes are
:mod:`pds.models.trained`'s).

Official layouts (read as published, written by ``pds train`` so that the same loader reads both):

* NCSN v1 (ermongroup/ncsn): a list ``[state_dict, optimizer]``; state-dict keys carry DataParallel's
  ``module.`` prefix; no EMA, no noise levels (the official MNIST ladder is geometric 1 → 0.01).
* NCSNv2 (ermongroup/ncsnv2): ``[state_dict, optimizer, epoch, step, ema_shadow]``, the shadow a dict
  name → tensor without the prefix.
* NCSN++ (score_sde): ``{'model', 'ema': {'decay', 'num_updates', 'shadow_params'}, 'optimizer', 'step'}``,
  the shadow a list in ``parameters()`` order (trainable parameters only).
* a diffusers NCSN++ in the hub's google/ncsnpp-* layout: the pipeline folder (``model_index.json``, ``unet/``,
  ``scheduler/``) or its ``unet/`` folder (``config.json`` + weights); the σ range, the number of scales and the snr
  come from ``scheduler/scheduler_config.json`` when it is there.

:func:`load_official` returns ``(score, config)`` with ``score(x, sigma)`` the library's score-model interface
(:mod:`pds.scores`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from pds.integrations.diffusers_unet import load_diffusers_folder
from pds.models import (
    OFFICIAL_CONFIGS,
    CondRefineNetDilated,
    LevelScore,
    NCSNpp,
    NCSNppConfig,
    NCSNv2,
    NCSNv2Deeper,
)
from pds.schedules import geometric_sigmas
from pds.storage import DATA_DIR, atomic_write

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_DIR",
    "find_checkpoint",
    "strip_module_prefix",
    "read_checkpoint",
    "detect_layout",
    "load_official",
    "file_sha256",
    "atomic_save",
    "check_finite",
    "apply_ema",
]

ARCHITECTURES = ("ncsn", "ncsnv2", "ncsnv2deeper", "ncsnpp")
CHECKPOINT_DIR = DATA_DIR / "checkpoints" / "official"


# -- paths -------------------------------------------------------------------------------------
def find_checkpoint(name: str, root=None) -> Path:
    """The newest ``*.pth`` under ``<root>/<name>/`` (root: $PDS_CHECKPOINTS or data/checkpoints/official).

    ``name`` is e.g. "ncsn_mnist", "ncsnv2_church", "ncsnpp_ffhq_1024". Missing files fail with a
    message saying where to put them (see the README's "Official checkpoints").
    """
    base = Path(root or os.environ.get("PDS_CHECKPOINTS", CHECKPOINT_DIR)) / name
    files = sorted(base.glob("*.pth"), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no official checkpoint for {name!r} in {base}: download it from the upstream README's link "
            "(ermongroup/ncsn, ermongroup/ncsnv2 or yang-song/score_sde_pytorch) and put the .pth file there"
        )
    return files[-1]


def strip_module_prefix(state: dict) -> dict:
    """A state dict without DataParallel's 'module.' prefix."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_save(obj, path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never leaves half a file, and a full
    disk removes the temporary file and raises :class:`pds.storage.DiskFull` (the previous checkpoint is kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), "a checkpoint",
                        done="the previous checkpoint and the steps it holds" if path.exists() else "")


# -- reading -----------------------------------------------------------------------------------
def read_checkpoint(path) -> object:
    """``torch.load`` (weights only, on the CPU) with errors that name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; the official checkpoints are linked from the READMEs of "
            "ermongroup/ncsn, ermongroup/ncsnv2 and yang-song/score_sde_pytorch (see README: checkpoints)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickle with forbidden objects...
        with open(path, "rb") as f:
            head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip format, or a pickle
            raise ValueError(f"{path} is not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle: "
                             f"it starts with {head!r}); check the file, or download it again") from None
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"{path} is not a readable PyTorch checkpoint, truncated or corrupt "
                         f"({type(exc).__name__}: {first})") from exc


def detect_layout(obj) -> str:
    """The architecture a loaded checkpoint object holds: one of ``ARCHITECTURES`` or "ncsnv2deepest"."""
    if isinstance(obj, dict) and "model" in obj and "ema" in obj:
        return "ncsnpp"
    if isinstance(obj, list | tuple) and obj and isinstance(obj[0], dict):
        keys = strip_module_prefix(obj[0])
        if "normalizer.embed.weight" in keys:
            return "ncsn"
        if any(k.startswith("res31.") for k in keys):
            return "ncsnv2deepest"
        if any(k.startswith("res5.") for k in keys):
            return "ncsnv2deeper"
        if "normalizer.alpha" in keys:
            return "ncsnv2"
    raise ValueError(
        "unknown checkpoint layout: expected a score_sde dict {'model', 'ema', ...} (NCSN++), an ncsnv2 list "
        "[state_dict, optimizer, epoch, step, ema_shadow], or an ncsn list [state_dict, optimizer]; got "
        f"{type(obj).__name__}" + (f" with keys {sorted(obj)[:6]}" if isinstance(obj, dict) else "")
    )


def _load_strict(net: nn.Module, state: dict, arch: str) -> None:
    expected, given = set(net.state_dict()), set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the {arch} architecture inferred from it: missing {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}"
        )
    for k, v in net.state_dict().items():
        if v.shape != state[k].shape:
            raise ValueError(f"{k}: checkpoint shape {tuple(state[k].shape)} != model shape {tuple(v.shape)}")
    net.load_state_dict(state, strict=True)


def check_finite(net: nn.Module, where) -> None:
    for name, t in net.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{where}: {name} holds {bad} NaN/inf values; the run that wrote it diverged "
                             "(use an earlier checkpoint or retrain with a lower learning rate)")


def _ncsnpp_config(state: dict, config) -> NCSNppConfig:
    """The NCSN++ configuration: given (a name of OFFICIAL_CONFIGS, an NCSNppConfig or a dict), or
    inferred by matching the state dict's keys and shapes against the official configurations
    (built on the 'meta' device, so nothing is allocated)."""
    base = {"nf": int(state["all_modules.0.W"].shape[0]), "channels": int(state["all_modules.3.weight"].shape[1]),
            "num_scales": int(state["sigmas"].shape[0]), "sigma_max": float(state["sigmas"][0]),
            "sigma_min": float(state["sigmas"][-1])}
    if isinstance(config, NCSNppConfig):
        return config
    if isinstance(config, dict):
        return NCSNppConfig(**{**base, **config})
    if isinstance(config, str):
        if config not in OFFICIAL_CONFIGS:
            raise ValueError(f"unknown NCSN++ configuration {config!r}; known: {sorted(OFFICIAL_CONFIGS)}")
        return NCSNppConfig(**{**OFFICIAL_CONFIGS[config].__dict__, **base})
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for name, cfg in OFFICIAL_CONFIGS.items():
        candidate = NCSNppConfig(**{**cfg.__dict__, **base})
        try:
            with torch.device("meta"):
                net = NCSNpp(candidate)
        except (ValueError, RuntimeError):  # e.g. channel counts that GroupNorm cannot split
            continue
        if {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes:
            candidate.extra = {"matched": name}
            return candidate
    raise ValueError(
        "this NCSN++ state dict matches none of the official configurations "
        f"{sorted(OFFICIAL_CONFIGS)}; pass config= (an NCSNppConfig or a dict of its fields)"
    )


def apply_ema(net: nn.Module, shadow) -> None:
    """Copy an EMA shadow into ``net``'s parameters: a dict name → tensor (NCSNv2) or a list in the order of the
    trainable parameters (NCSN++'s ``shadow_params``)."""
    params = dict(net.named_parameters())
    if not isinstance(shadow, dict):
        names = [n for n, p in params.items() if p.requires_grad]
        if shadow is None or len(shadow) != len(names):
            raise ValueError(f"EMA state must hold 'shadow_params' with one tensor per trainable parameter "
                             f"({len(names)}), got {None if shadow is None else len(shadow)}")
        shadow = dict(zip(names, shadow, strict=True))
    unknown = sorted(set(shadow) - set(params))
    if unknown:
        raise ValueError(f"EMA shadow holds names the model does not have: {unknown[:5]}")
    with torch.no_grad():
        for name, value in shadow.items():
            if params[name].shape != value.shape:
                raise ValueError(f"EMA {name}: shape {tuple(value.shape)} != {tuple(params[name].shape)}")
            params[name].copy_(value)


def _load_ncsnpp(obj: dict, config, use_ema: bool):
    state = strip_module_prefix(obj["model"])
    cfg = _ncsnpp_config(state, config)
    net = NCSNpp(cfg)
    _load_strict(net, state, "ncsnpp")
    if use_ema:
        apply_ema(net, obj["ema"].get("shadow_params") if isinstance(obj["ema"], dict) else None)
    net.eval()
    config_out = {"arch": "ncsnpp", "ema": use_ema, **{k: v for k, v in cfg.__dict__.items() if k != "extra"},
                  **cfg.extra}
    return net, config_out


def _inference(net: nn.Module) -> nn.Module:
    """A loaded score model in inference mode: eval() and no parameter requiring a gradient, so that calling it
    outside ``torch.no_grad()`` builds no autograd graph through the network (training builds its own networks)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_official(path, arch: str | None = None, sigmas=None, use_ema: bool = True, config=None,
                  image_size: int | None = None):
    """Load an official checkpoint; return ``(score_model, config)``.

    ``arch`` ("ncsn", "ncsnv2", "ncsnv2deeper", "ncsnpp") is inferred from the file when None and
    checked when given. The 'module.' prefix of DataParallel is stripped; the EMA weights are applied
    where the official samplers apply them (NCSNv2: the shadow dict; NCSN++: ``shadow_params`` in
    parameter order), unless ``use_ema=False``. NCSN v1 checkpoints do not store their noise
    levels: ``sigmas`` defaults to the official MNIST ladder (geometric 1 → 0.01, as many levels as
    the embedding has rows). For NCSN++, ``config`` (a name of ``OFFICIAL_CONFIGS``, an
    ``NCSNppConfig`` or a dict) is inferred from the state dict when it matches an official one.
    The score model takes σ per sample: NCSN++ uses it directly, NCSN / NCSNv2 map it to a level.
    ``image_size`` (NCSN v1 default 28, NCSNv2 32) matters only at 28², where one block pads differently.
    Weights holding NaN or inf are refused. The model comes back in inference mode (eval, no parameter requiring a
    gradient).
    """
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if Path(path).is_dir() and any((Path(path) / f).is_file() for f in ("config.json", "model_index.json")):
        if arch not in (None, "ncsnpp"):
            raise ValueError(f"{path} is a diffusers NCSN++ directory, not {arch}")
        score, info = load_diffusers_folder(Path(path))
        return _inference(score), info
    obj = read_checkpoint(path)
    found = detect_layout(obj)
    if arch is not None and arch != found:
        raise ValueError(f"{path} holds a {found} checkpoint, not {arch}")
    if found == "ncsnpp":
        net, info = _load_ncsnpp(obj, config, use_ema)
        check_finite(net, path)
        return _inference(net), info
    if found == "ncsnv2deepest":
        raise NotImplementedError(f"{path} is an NCSNv2Deepest (FFHQ) checkpoint, which pds does not implement")
    state = strip_module_prefix(obj[0])
    w = state["begin_conv.weight"]
    ngf, channels = int(w.shape[0]), int(w.shape[1])
    if found == "ncsn":
        num_classes = int(state["normalizer.embed.weight"].shape[0])
        net = CondRefineNetDilated(ngf=ngf, channels=channels, num_classes=num_classes,
                                   image_size=image_size or 28)
        _load_strict(net, state, found)
        levels = torch.as_tensor(geometric_sigmas(1.0, 0.01, num_classes) if sigmas is None else sigmas,
                                 dtype=torch.float64)
        if len(levels) != num_classes:
            raise ValueError(f"{len(levels)} sigmas given for a network with {num_classes} levels")
        info = {"arch": found, "ngf": ngf, "channels": channels, "num_classes": num_classes, "ema": False}
    else:
        cls = NCSNv2Deeper if found == "ncsnv2deeper" else NCSNv2
        size = {} if image_size is None or cls is NCSNv2Deeper else {"image_size": image_size}
        net = cls(ngf=ngf, channels=channels, sigmas=state["sigmas"], **size)
        _load_strict(net, state, found)
        ema = obj[-1] if len(obj) >= 5 and isinstance(obj[-1], dict) else None
        applied = bool(use_ema and ema)
        if applied:
            apply_ema(net, ema)
        levels = state["sigmas"].double()
        info = {"arch": found, "ngf": ngf, "channels": channels, "num_classes": len(levels), "ema": applied}
    check_finite(net, path)
    info["sigmas"] = levels.tolist()
    return _inference(LevelScore(net, levels)), info
