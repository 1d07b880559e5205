"""Score networks of the official checkpoints, and a loader for their file layouts.

Implemented here (state-dict compatible, checked against outputs of the original code on
random-weight checkpoints, see ``tests/test_models.py``):

* NCSN v1 ``CondRefineNetDilated`` (ermongroup/ncsn: a list ``[state_dict, optimizer]``);
* NCSNv2 / NCSNv2Deeper (ermongroup/ncsnv2: ``[state_dict, optimizer, epoch, step, ema_shadow]``);
* NCSN++ continuous VE (score_sde: ``{'model', 'ema', 'optimizer', 'step'}``);
* a diffusers model directory (the hub's google/ncsnpp-* layout: ``config.json`` + weights), through
  diffusers' ``UNet2DModel`` when diffusers is installed.

:func:`load_official` returns a score model with the library's interface ``score(x, sigma)``
(σ per sample); for the level-indexed NCSN / NCSNv2 networks σ is mapped to its level index.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pds.models.ncsnpp import OFFICIAL_CONFIGS, NCSNpp, NCSNppConfig
from pds.models.refinenet import CondRefineNetDilated, NCSNv2, NCSNv2Deeper

__all__ = [
    "LevelScore",
    "load_official",
    "CondRefineNetDilated",
    "NCSNv2",
    "NCSNv2Deeper",
    "NCSNpp",
    "NCSNppConfig",
    "OFFICIAL_CONFIGS",
    "ARCHITECTURES",
    "CHECKPOINT_DIR",
    "find_checkpoint",
    "DiffusersScore",
    "strip_module_prefix",
    "load_trained",
    "SHIPPED_DIR",
]

CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "official"


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "checkpoints"


def find_checkpoint(name: str, root=None) -> Path:
    """The newest ``*.pth`` under ``<root>/<name>/`` (root: $PDS_CHECKPOINTS or data/checkpoints/official).

    ``name`` is e.g. "ncsn_mnist", "ncsnv2_church", "ncsnpp_ffhq_1024". Missing files fail with a
    message saying where to put them (see the README's "Official checkpoints").
    """
    import os

    base = Path(root or os.environ.get("PDS_CHECKPOINTS", CHECKPOINT_DIR)) / name
    files = sorted(base.glob("*.pth"), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no official checkpoint for {name!r} in {base}: download it from the upstream README's link "
            "(ermongroup/ncsn, ermongroup/ncsnv2 or yang-song/score_sde_pytorch) and put the .pth file there"
        )
    return files[-1]

ARCHITECTURES = ("ncsn", "ncsnv2", "ncsnv2deeper", "ncsnpp")


class LevelScore(nn.Module):
    """``score(x, sigma)`` for a network trained on discrete levels: σ → the index of its level.

    Each σ must match one of ``sigmas`` to a relative 1e-4 (these networks know only their levels).
    """

    def __init__(self, net: nn.Module, sigmas):
        super().__init__()
        self.net = net
        self.register_buffer("levels", torch.as_tensor(sigmas, dtype=torch.float64))

    def level_index(self, sigma: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64, device=self.levels.device).reshape(-1)
        rel = (s[:, None] - self.levels[None, :]).abs() / self.levels[None, :]
        best = rel.argmin(dim=1)
        worst = float(rel.gather(1, best[:, None]).max())
        if worst > 1e-4:
            raise ValueError(
                f"sigma {s.tolist()} is not one of the network's {len(self.levels)} noise levels "
                f"[{float(self.levels.max()):.4g} … {float(self.levels.min()):.4g}] (relative mismatch {worst:.3g})"
            )
        return best

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        labels = self.level_index(sigma).to(x.device)
        if labels.numel() == 1 and x.shape[0] > 1:
            labels = labels.expand(x.shape[0])
        return self.net(x, labels)


class DiffusersScore(nn.Module):
    """``score(x, sigma)`` for a diffusers ``UNet2DModel`` with Fourier embedding (google/ncsnpp-*).

    Called as diffusers' ScoreSdeVePipeline calls it: ``unet(x, sigma).sample``, σ as a float tensor
    (a Python number would be cast to an integer time step); the model divides by σ itself.
    """

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if s.numel() == 1 and x.shape[0] > 1:
            s = s.expand(x.shape[0])
        return self.unet(x, s).sample


def _load_diffusers(path: Path):
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:
        raise ImportError(f"{path} is a diffusers model directory; loading it needs `pip install diffusers`") from exc
    unet = UNet2DModel.from_pretrained(str(path))
    cfg = dict(unet.config)
    if cfg.get("time_embedding_type") != "fourier":
        raise ValueError(
            f"{path}: a diffusers UNet2DModel with time_embedding_type={cfg.get('time_embedding_type')!r}; "
            "only NCSN++ models (Fourier embedding of σ, as google/ncsnpp-*) are score models"
        )
    return DiffusersScore(unet).eval(), {"arch": "ncsnpp-diffusers", "ema": None,
                                         "image_size": cfg.get("sample_size"), "channels": cfg.get("in_channels")}


def strip_module_prefix(state: dict) -> dict:
    """A state dict without DataParallel's 'module.' prefix."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


_strip = strip_module_prefix


def _read(path) -> object:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; the official checkpoints are linked from the READMEs of "
            "ermongroup/ncsn, ermongroup/ncsnv2 and yang-song/score_sde_pytorch (see README: checkpoints)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickle with forbidden objects...
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _detect(obj) -> str:
    if isinstance(obj, dict) and "model" in obj and "ema" in obj:
        return "ncsnpp"
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], dict):
        keys = _strip(obj[0])
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


def _load_ncsnpp(obj: dict, config, use_ema: bool):
    state = _strip(obj["model"])
    cfg = _ncsnpp_config(state, config)
    net = NCSNpp(cfg)
    _load_strict(net, state, "ncsnpp")
    applied = False
    if use_ema:
        ema = obj["ema"]
        shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
        trainable = [p for p in net.parameters() if p.requires_grad]
        if shadow is None or len(shadow) != len(trainable):
            raise ValueError(
                f"EMA state must hold 'shadow_params' with one tensor per trainable parameter ({len(trainable)}), "
                f"got {None if shadow is None else len(shadow)}"
            )
        with torch.no_grad():
            for i, (p, s) in enumerate(zip(trainable, shadow, strict=True)):
                if p.shape != s.shape:
                    raise ValueError(f"EMA shadow {i}: shape {tuple(s.shape)} != parameter shape {tuple(p.shape)}")
                p.copy_(s)
        applied = True
    net.eval()
    config_out = {"arch": "ncsnpp", "ema": applied, **{k: v for k, v in cfg.__dict__.items() if k != "extra"},
                  **cfg.extra}
    return net, config_out


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
    """
    if Path(path).is_dir() and (Path(path) / "config.json").is_file():
        if arch not in (None, "ncsnpp"):
            raise ValueError(f"{path} is a diffusers NCSN++ directory, not {arch}")
        return _load_diffusers(Path(path))
    obj = _read(path)
    found = _detect(obj)
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
        if arch != found:
            raise ValueError(f"{path} holds a {found} checkpoint, not {arch}")
    if found == "ncsnpp":
        return _load_ncsnpp(obj, config, use_ema)
    if found == "ncsnv2deepest":
        raise NotImplementedError(f"{path} is an NCSNv2Deepest (FFHQ) checkpoint, which pds does not implement")
    state = _strip(obj[0])
    w = state["begin_conv.weight"]
    ngf, channels = int(w.shape[0]), int(w.shape[1])
    if found == "ncsn":
        num_classes = int(state["normalizer.embed.weight"].shape[0])
        net = CondRefineNetDilated(ngf=ngf, channels=channels, num_classes=num_classes,
                                   image_size=image_size or 28)
        _load_strict(net, state, found)
        levels = torch.exp(torch.linspace(0.0, float(torch.log(torch.tensor(0.01))), num_classes)) if sigmas is None \
            else torch.as_tensor(sigmas)
        if len(levels) != num_classes:
            raise ValueError(f"{len(levels)} sigmas given for a network with {num_classes} levels")
        config = {"arch": found, "ngf": ngf, "channels": channels, "num_classes": num_classes, "ema": False}
    else:
        cls = NCSNv2Deeper if found == "ncsnv2deeper" else NCSNv2
        size = {} if image_size is None or cls is NCSNv2Deeper else {"image_size": image_size}
        net = cls(ngf=ngf, channels=channels, sigmas=state["sigmas"], **size)
        _load_strict(net, state, found)
        ema = obj[-1] if len(obj) >= 5 and isinstance(obj[-1], dict) else None
        applied = False
        if use_ema and ema:
            params = dict(net.named_parameters())
            unknown = sorted(set(ema) - set(params))
            if unknown:
                raise ValueError(f"EMA shadow holds names the model does not have: {unknown[:5]}")
            with torch.no_grad():
                for name, value in ema.items():
                    if params[name].shape != value.shape:
                        raise ValueError(f"EMA {name}: shape {tuple(value.shape)} != {tuple(params[name].shape)}")
                    params[name].copy_(value)
            applied = True
        levels = state["sigmas"].double()
        config = {"arch": found, "ngf": ngf, "channels": channels, "num_classes": len(levels), "ema": applied}
    config["sigmas"] = levels.tolist()
    net.eval()
    return LevelScore(net, levels), config


def load_trained(path, use_ema: bool = True):
    """Load a checkpoint trained here (``pds train`` / ``pds export``): the official-layout file plus its
    sidecar ``.json`` (network spec and noise levels). A bare name such as ``"ncsn_fashion28"`` means
    the shipped ``data/checkpoints/<name>.pth``. Returns ``(score_model, config)`` like
    :func:`load_official`, with the sidecar's entries and the file's SHA-1 (``file_sha1``) added to ``config``.
    """
    import hashlib
    import json

    from pds.train import network_kwargs, sidecar_path

    path = Path(path)
    if path.suffix == "" and not path.exists():
        path = SHIPPED_DIR / f"{path.name}.pth"
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"{side} is missing: a checkpoint trained here needs its settings file beside it")
    meta = json.loads(side.read_text())
    kind = meta["kind"]
    if kind == "ncsnpp":
        score, config = load_official(path, arch="ncsnpp", use_ema=use_ema, config=network_kwargs(meta["net"]))
    else:
        score, config = load_official(path, arch=kind, sigmas=meta["sigmas"], use_ema=use_ema,
                                      image_size=int(meta["net"].get("image_size", 28)))
    config.update({k: v for k, v in meta.items() if k not in config})
    config["file_sha1"] = hashlib.sha1(path.read_bytes()).hexdigest()
    return score, config
