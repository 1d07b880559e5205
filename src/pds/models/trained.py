"""The checkpoints of the models trained here (``pds train``): the network spec a run records, training checkpoints
in the official layouts plus what resuming needs (NCSN v1 appends the step and the EMA shadow after the two official
entries), the settings *sidecar* ``run.json`` beside ``run.pth`` (the network spec, the noise levels, data, training
settings, provenance and the SHA-256 of the weights file, which :func:`load_trained` checks), loading and export.
The official layouts themselves are :mod:`pds.models.checkpoints`'s; :func:`load_trained` returns ``(score,
config)`` as :func:`~pds.models.checkpoints.load_official` does."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from torch import nn

from pds.models import CondRefineNetDilated, NCSNpp, NCSNppConfig, NCSNv2
from pds.models.checkpoints import (
    apply_ema,
    atomic_save,
    check_finite,
    detect_layout,
    file_sha256,
    load_official,
    read_checkpoint,
    strip_module_prefix,
)
from pds.schedules import check_positive_int, check_sigma_range, geometric_sigmas
from pds.storage import DATA_DIR, atomic_write

__all__ = ["KINDS", "SHIPPED_DIR", "network_spec", "network_kwargs", "build_network", "training_layout",
           "read_training_state", "sidecar_path", "write_sidecar", "read_sidecar",
           "shipped_models", "load_trained", "export_checkpoint"]

KINDS = ("ncsn", "ncsnv2", "ncsnpp")  # what `pds train` trains
SHIPPED_DIR = DATA_DIR / "checkpoints"


# -- network specs (what a sidecar records) --------------------------------------------------
def network_spec(kind: str, width: int, channels: int, image_size: int, levels: int, sigma_min: float,
                 sigma_max: float, ch_mult=(1, 2, 2), blocks: int = 1) -> tuple[dict, list | None]:
    """The network spec of a training run and its noise levels (None for the continuous NCSN++).

    NCSN / NCSNv2: ``levels`` geometric σ from sigma_max to sigma_min; NCSN++: ``levels`` is num_scales of
    the VE SDE, attention at image_size / 4, residual progressive input (the CIFAR-10 layout).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, value in (("width", width), ("channels", channels), ("image_size", image_size), ("levels", levels),
                        ("blocks", blocks)):
        check_positive_int(value, name)
    if kind in ("ncsn", "ncsnv2") and levels < 2:
        raise ValueError(f"{kind} needs at least 2 noise levels, got {levels}")
    check_sigma_range(sigma_min, sigma_max)
    ch_mult = [int(m) for m in ch_mult]
    if not ch_mult or min(ch_mult) < 1:
        raise ValueError(f"ch_mult must be positive integers, got {ch_mult}")
    if kind == "ncsnpp" and image_size % (2 ** (len(ch_mult) - 1)):
        raise ValueError(f"image size {image_size} is not divisible by 2^{len(ch_mult) - 1} "
                         f"(ch_mult {ch_mult} has {len(ch_mult)} resolutions)")
    sigmas = [float(s) for s in geometric_sigmas(sigma_max, sigma_min, levels)]
    if kind == "ncsn":
        return {"arch": "ncsn", "ngf": width, "channels": channels, "num_classes": levels,
                "image_size": image_size}, sigmas
    if kind == "ncsnv2":
        return {"arch": "ncsnv2", "ngf": width, "channels": channels, "sigmas": sigmas,
                "image_size": image_size}, sigmas
    return {"arch": "ncsnpp", "nf": width, "ch_mult": ch_mult, "num_res_blocks": blocks,
            "attn_resolutions": [image_size // 4], "image_size": image_size, "channels": channels,
            "progressive": "none", "progressive_input": "residual", "num_scales": levels, "sigma_min": sigma_min,
            "sigma_max": sigma_max}, None


def network_kwargs(spec: dict) -> dict:
    """The constructor keyword arguments of a network spec (JSON lists back to tuples, ``arch`` dropped)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "arch"}


def build_network(spec: dict) -> nn.Module:
    """The network of a spec (the ``"net"`` entry of a sidecar): ``{"arch": kind, **constructor arguments}``."""
    kw = network_kwargs(spec)
    arch = spec.get("arch")
    if arch == "ncsn":
        return CondRefineNetDilated(**kw)
    if arch == "ncsnv2":
        return NCSNv2(**kw)
    if arch == "ncsnpp":
        return NCSNpp(NCSNppConfig(**kw))
    raise ValueError(f"unknown network spec arch {arch!r}; expected one of {KINDS}")


# -- training checkpoints (official layouts + what resuming needs) -----------------------------
def training_layout(net: nn.Module, kind: str, optimizer_state: dict, ema, step: int, resumable: bool = True):
    """The official file layout of ``kind`` for ``net`` and an EMA (``names``, ``shadow``, ``decay``,
    ``num_updates``). ``resumable=False`` gives the plain official NCSN v1 list (no step, no EMA)."""
    state = {f"module.{k}": v.detach().cpu().clone() for k, v in net.state_dict().items()}
    if kind == "ncsnpp":
        return {"model": state, "ema": {"decay": ema.decay, "num_updates": ema.num_updates,
                                        "shadow_params": [s.detach().cpu().clone() for s in ema.shadow]},
                "optimizer": optimizer_state, "step": step}
    shadow = {n: s.detach().cpu().clone() for n, s in zip(ema.names, ema.shadow, strict=True)}
    if kind == "ncsnv2":
        return [state, optimizer_state, 0, step, shadow]
    if kind == "ncsn":  # ncsn v1 has no EMA in its layout; for resuming, step and shadow ride after the official two
        return [state, optimizer_state, step, shadow] if resumable else [state, optimizer_state]
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def read_training_state(path, kind: str) -> dict:
    """What a run needs to resume from ``path``: ``model`` (state dict without prefix), ``optimizer``,
    ``shadow`` (dict name → tensor for NCSN / NCSNv2, list in parameter order for NCSN++), ``num_updates``
    and ``step``. A truncated or foreign file fails with a message naming it."""
    obj = read_checkpoint(path)
    found = detect_layout(obj)
    if found != kind:
        raise ValueError(f"{path} holds a {found} checkpoint, but this run trains {kind}; choose another --out")
    try:
        if kind == "ncsnpp":
            return {"model": strip_module_prefix(obj["model"]), "optimizer": obj["optimizer"],
                    "shadow": obj["ema"]["shadow_params"], "num_updates": int(obj["ema"]["num_updates"]),
                    "step": int(obj["step"])}
        step = int(obj[3] if kind == "ncsnv2" else obj[2])
        shadow = obj[4] if kind == "ncsnv2" else obj[3]
    except (IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is a {kind} file without the step and EMA a training run needs "
                         f"(an exported or official file cannot be resumed): {exc!r}") from exc
    # these layouts do not store the EMA count: one update per step
    return {"model": strip_module_prefix(obj[0]), "optimizer": obj[1], "shadow": shadow, "num_updates": step,
            "step": step}


# -- sidecars ----------------------------------------------------------------------------------
def sidecar_path(path) -> Path:
    """``run.pth`` → ``run.json``: the settings of a checkpoint (network spec, schedule, data, provenance)."""
    return Path(path).with_suffix(".json")


def write_sidecar(path, meta: dict) -> Path:
    """Write the settings of the checkpoint ``path`` as JSON beside it, atomically, with the SHA-256 of the
    weights file when it exists (``weights_sha256``)."""
    meta = dict(meta)
    if Path(path).is_file():
        meta["weights_sha256"] = file_sha256(path)
    else:
        meta.pop("weights_sha256", None)
    side = sidecar_path(path)
    side.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(side, lambda tmp: tmp.write_text(json.dumps(meta, indent=1) + "\n"), "a checkpoint's sidecar")


def read_sidecar(path) -> dict:
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"{side} is missing: a checkpoint trained here needs its settings file beside it")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{side} is not valid JSON ({exc})") from exc


def shipped_models() -> list[str]:
    """The names of the models trained here and shipped in ``data/checkpoints`` (weights and settings file)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.pth") if sidecar_path(p).is_file())


def load_trained(path, use_ema: bool = True):
    """Load a checkpoint trained here (``pds train`` / ``pds export``): the official-layout file plus its
    sidecar ``.json`` (network spec and noise levels). A bare name such as ``"ncsn_fashion28"`` means
    the shipped ``data/checkpoints/<name>.pth``. Returns ``(score_model, config)`` like
    :func:`load_official`, with the sidecar's entries and the file's SHA-256 (``file_sha256``) in ``config``;
    a file whose SHA-256 differs from the one its sidecar records is refused.
    """
    path = Path(path)
    if path.suffix == "" and not path.exists():
        if not (SHIPPED_DIR / f"{path.name}.pth").is_file():
            raise FileNotFoundError(f"unknown checkpoint {str(path)!r}: not a file, and not a model shipped here "
                                    f"{shipped_models()}")
        path = SHIPPED_DIR / f"{path.name}.pth"
    if path.suffix == ".json":
        weights = path.with_suffix(".pth")
        raise ValueError(f"{path} is the settings sidecar of a checkpoint, not its weights: pass {weights}"
                         + ("" if weights.is_file() else " (which does not exist here)"))
    meta = read_sidecar(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (its settings {sidecar_path(path)} do)")
    sha = file_sha256(path)
    if meta.get("weights_sha256") not in (None, sha):
        raise ValueError(f"{path} has SHA-256 {sha[:12]}… but its sidecar {sidecar_path(path).name} records "
                         f"{meta['weights_sha256'][:12]}…: the weights were changed or replaced; restore the file "
                         "or export it again (pds export)")
    kind = meta.get("kind")
    if kind == "ncsnpp":
        score, config = load_official(path, arch="ncsnpp", use_ema=use_ema, config=network_kwargs(meta["net"]))
    elif kind in ("ncsn", "ncsnv2"):
        score, config = load_official(path, arch=kind, sigmas=meta["sigmas"], use_ema=use_ema,
                                      image_size=int(meta["net"].get("image_size", 28)))
    else:
        raise ValueError(f"{sidecar_path(path)}: unknown kind {kind!r}; expected one of {KINDS}")
    config.update({k: v for k, v in meta.items() if k not in config})
    config["file_sha256"] = sha
    return score, config


def export_checkpoint(src, dst, **provenance) -> Path:
    """Write the EMA weights of the training checkpoint ``src`` as a small file in its official layout.

    NCSN v1: ``[state_dict, {}]`` with the EMA weights as the state dict (the official v1 sampler has
    no EMA); NCSNv2: ``[state_dict, {}, 0, step, ema_shadow]``; NCSN++: ``{'model', 'ema', 'optimizer':
    {}, 'step'}``. Optimizer states are dropped (a third of the size; the run's own checkpoint keeps
    them for resuming). The sidecar of ``src`` is copied next to ``dst`` with ``step``, the
    ``provenance`` entries and the new file's SHA-256. :func:`load_trained` reads the pair.
    """
    src, dst = Path(src), Path(dst)
    meta = read_sidecar(src)
    kind = meta.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{sidecar_path(src)}: unknown kind {kind!r}; expected one of {KINDS}")
    state = read_training_state(src, kind)
    net = build_network(meta["net"])
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"{src} does not match the network its sidecar describes: {exc}") from exc

    names = [n for n, p in net.named_parameters() if p.requires_grad]
    shadow = list(state["shadow"]) if kind == "ncsnpp" else [state["shadow"][n] for n in names]
    ema = SimpleNamespace(names=names, shadow=shadow, decay=float(meta.get("train", {}).get("ema", 0.999)),
                          num_updates=state["num_updates"])
    apply_ema(net, shadow)
    check_finite(net, src)
    atomic_save(training_layout(net, kind, {}, ema, state["step"], resumable=False), dst)
    meta.update(step=state["step"], **provenance)
    write_sidecar(dst, meta)
    return dst
