"""Denoising score matching for the three families, with EMA, resumable atomic checkpoints in the
official layouts (so :func:`pds.models.load_official` reads them).

* ``"ncsn"`` (NCSN v1, CondRefineNetDilated): a level index c ~ U{0..L−1}, x̃ = x + σ_c z, loss
  ½ E‖σ_c s(x̃, c) + z‖² (the σ² weighting of the paper, summed over pixels, averaged over the batch).
* ``"ncsnv2"``: the same; the network divides by σ_c itself.
* ``"ncsnpp"`` (continuous VE): σ = σ_min (σ_max/σ_min)^t with t ~ U(1e-5, 1) (log-uniform), same loss.

Randomness of step k comes from a generator seeded with (seed, k), so a run resumed from its last
checkpoint continues exactly as an uninterrupted one would (Adam and EMA states are saved too).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["TrainConfig", "EMA", "dsm_loss", "train", "save_checkpoint", "build_network", "network_kwargs",
           "export_checkpoint", "sidecar_path", "write_sidecar"]

KINDS = ("ncsn", "ncsnv2", "ncsnpp")


@dataclass
class TrainConfig:
    kind: str
    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    ema_rate: float = 0.999
    seed: int = 0
    save_every: int = 500
    sigma_min: float = 0.01
    sigma_max: float = 1.0
    grad_clip: float | None = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.steps < 0 or self.batch_size < 1 or self.save_every < 1:
            raise ValueError("steps >= 0, batch_size >= 1 and save_every >= 1 are required")


class EMA:
    """Exponential moving average of the trainable parameters (in ``parameters()`` order).

    As score_sde's ``ExponentialMovingAverage(use_num_updates=True)``, the rate of update n (1, 2, …)
    is min(decay, (1 + n) / (10 + n)): without this warm-up the average of a short run keeps a share
    decay^n of the random initial weights (37 % after 1000 steps at 0.999), which ruins small models
    trained for a few thousand steps.
    """

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.names = [n for n, p in net.named_parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in net.parameters() if p.requires_grad]

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.num_updates += 1
        rate = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, (p for p in net.parameters() if p.requires_grad), strict=True):
            s.mul_(rate).add_(p.detach(), alpha=1.0 - rate)

    def copy_to(self, net: nn.Module) -> None:
        with torch.no_grad():
            for s, p in zip(self.shadow, (p for p in net.parameters() if p.requires_grad), strict=True):
                p.copy_(s)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def dsm_loss(net: nn.Module, kind: str, x: torch.Tensor, g: torch.Generator, sigmas: torch.Tensor | None = None,
             sigma_min: float = 0.01, sigma_max: float = 1.0) -> torch.Tensor:
    """½ E‖σ s(x + σz) + z‖² summed over pixels, averaged over the batch (see the module docstring)."""
    n = x.shape[0]
    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
    if kind in ("ncsn", "ncsnv2"):
        labels = torch.randint(0, len(sigmas), (n,), generator=g)
        sigma = sigmas.to(x.dtype)[labels]
        out = net(x + sigma.view(-1, 1, 1, 1) * z, labels)
    else:
        t = torch.rand(n, generator=g, dtype=x.dtype) * (1 - 1e-5) + 1e-5
        sigma = sigma_min * (sigma_max / sigma_min) ** t
        out = net(x + sigma.view(-1, 1, 1, 1) * z, sigma)
    return 0.5 * ((sigma.view(-1, 1, 1, 1) * out + z) ** 2).flatten(1).sum(1).mean()


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _layout(net: nn.Module, kind: str, optimizer_state: dict, ema: EMA, step: int, v1_shadow: bool = True):
    """The official file layout of ``kind`` (see :func:`save_checkpoint`)."""
    state = {f"module.{k}": v.detach().clone() for k, v in net.state_dict().items()}
    if kind == "ncsnpp":
        return {"model": state, "ema": {"decay": ema.decay, "num_updates": ema.num_updates,
                                        "shadow_params": [s.clone() for s in ema.shadow]},
                "optimizer": optimizer_state, "step": step}
    shadow = {n: s.clone() for n, s in zip(ema.names, ema.shadow, strict=True)}
    if kind == "ncsnv2":
        return [state, optimizer_state, 0, step, shadow]
    # ncsn v1 has no EMA in its layout; for resuming, the step and shadow ride after the official two entries
    return [state, optimizer_state, step, shadow] if v1_shadow else [state, optimizer_state]


def save_checkpoint(path, net: nn.Module, kind: str, optimizer, ema: EMA, step: int) -> None:
    """Write the official layout of ``kind`` atomically (temporary file, then rename)."""
    _atomic_save(_layout(net, kind, optimizer.state_dict(), ema, step), Path(path))


def _resume(path: Path, net, kind, optimizer, ema: EMA) -> int:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    from pds.models import strip_module_prefix as strip
    if kind == "ncsnpp":
        net.load_state_dict(strip(obj["model"]))
        optimizer.load_state_dict(obj["optimizer"])
        ema.shadow = [s.clone() for s in obj["ema"]["shadow_params"]]
        ema.num_updates = obj["ema"]["num_updates"]
        return int(obj["step"])
    net.load_state_dict(strip(obj[0]))
    optimizer.load_state_dict(obj[1])
    shadow = obj[4] if kind == "ncsnv2" else obj[3]
    ema.shadow = [shadow[n].clone() for n in ema.names]
    step = int(obj[3] if kind == "ncsnv2" else obj[2])
    ema.num_updates = step  # one update per step (these layouts do not store the count)
    return step


def train(net: nn.Module, images: torch.Tensor, config: TrainConfig, out, sigmas=None, progress: bool = False,
          log=None) -> nn.Module:
    """Train ``net`` by denoising score matching on ``images`` [N, C, H, W] in [0, 1]; resume from ``out``.

    ``sigmas`` (NCSN / NCSNv2) are the noise levels, largest first. A checkpoint is written every
    ``save_every`` steps and at the end, so a killed run loses at most the steps since the last save.
    ``log(step, loss)`` is called every step if given. Returns ``net`` (raw weights; the EMA is in the file).
    """
    out = Path(out)
    cfg = config
    torch.manual_seed(cfg.seed)
    sig = None if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float32)
    if cfg.kind != "ncsnpp" and sig is None:
        raise ValueError(f"{cfg.kind} training needs the noise levels (sigmas)")
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    ema = EMA(net, cfg.ema_rate)
    start = _resume(out, net, cfg.kind, optimizer, ema) if out.exists() else 0
    net.train()
    bar = tqdm(range(start, cfg.steps), disable=not progress, desc=f"DSM {cfg.kind}", initial=start, total=cfg.steps)
    for step in bar:
        g = _step_generator(cfg.seed, step)
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g)
        loss = dsm_loss(net, cfg.kind, images[idx], g, sig, cfg.sigma_min, cfg.sigma_max)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss at step {step}; lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optimizer.step()
        ema.update(net)
        bar.set_postfix(loss=f"{value:.4g}")
        if log is not None:
            log(step, value)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(out, net, cfg.kind, optimizer, ema, step + 1)
    return net


def build_network(spec: dict) -> nn.Module:
    """The network of a training run from its spec (the ``"net"`` entry of the run's sidecar JSON):
    ``{"arch": "ncsn" | "ncsnv2" | "ncsnpp", **constructor keyword arguments}``."""
    from pds.models import CondRefineNetDilated, NCSNpp, NCSNppConfig, NCSNv2

    kw = network_kwargs(spec)
    arch = spec.get("arch")
    if arch == "ncsn":
        return CondRefineNetDilated(**kw)
    if arch == "ncsnv2":
        return NCSNv2(**kw)
    if arch == "ncsnpp":
        return NCSNpp(NCSNppConfig(**kw))
    raise ValueError(f"unknown network spec arch {arch!r}; expected one of {KINDS}")


def network_kwargs(spec: dict) -> dict:
    """The constructor keyword arguments of a network spec (JSON lists back to tuples, ``arch`` dropped)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "arch"}


def sidecar_path(path) -> Path:
    """``run.pth`` → ``run.json``: the settings of a run (network spec, schedule, data, provenance)."""
    return Path(path).with_suffix(".json")


def write_sidecar(path, meta: dict) -> Path:
    """Write the settings of the checkpoint ``path`` as JSON beside it, atomically."""
    import json

    side = sidecar_path(path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, side)
    return side


def export_checkpoint(src, dst, **provenance) -> Path:
    """Write the EMA weights of the training checkpoint ``src`` as a small file in its official layout.

    NCSN v1: ``[state_dict, {}]`` with the EMA weights as the state dict (the official v1 sampler has
    no EMA); NCSNv2: ``[state_dict, {}, 0, step, ema_shadow]``; NCSN++: ``{'model', 'ema', 'optimizer':
    {}, 'step'}``. Optimizer states are dropped (a third of the size; the run's own checkpoint keeps
    them for resuming). The sidecar JSON of ``src`` is copied next to ``dst`` with ``step`` and the
    ``provenance`` entries added. :func:`pds.models.load_trained` reads the pair.
    """
    import json

    src, dst = Path(src), Path(dst)
    side = sidecar_path(src)
    if not side.is_file():
        raise FileNotFoundError(f"{side} is missing: it records the network of {src} (written by `pds train`)")
    meta = json.loads(side.read_text())
    kind = meta["kind"]
    net = build_network(meta["net"])
    ema = EMA(net, float(meta.get("train", {}).get("ema", 0.999)))
    step = _resume(src, net, kind, torch.optim.Adam(net.parameters()), ema)
    ema.copy_to(net)
    _atomic_save(_layout(net, kind, {}, ema, step, v1_shadow=False), dst)
    meta.update(step=step, **provenance)
    write_sidecar(dst, meta)
    return dst
