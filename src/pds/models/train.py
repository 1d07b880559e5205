"""Denoising score matching for the three families, with EMA and resumable atomic checkpoints in the
official layouts (:mod:`pds.models.checkpoints` writes and reads them, so :func:`pds.models.checkpoints.load_official`
reads what this trains).

* ``"ncsn"`` (NCSN v1, CondRefineNetDilated): a level index c ~ U{0..L−1}, x̃ = x + σ_c z, loss
  ½ E‖σ_c s(x̃, c) + z‖² (the σ² weighting of the paper, summed over pixels, averaged over the batch).
* ``"ncsnv2"``: the same; the network divides by σ_c itself.
* ``"ncsnpp"`` (continuous VE): σ = σ(t) = σ_min (σ_max/σ_min)^t with t ~ U(1e-5, 1) (log-uniform), same loss.

Reproducibility: the network is initialised from ``seed`` (:func:`train_run`), and the randomness of step k
comes from a CPU generator seeded with (seed, k) and is moved to the training device, so the same command
gives the same checkpoint, a resumed run continues exactly as an uninterrupted one would (Adam and EMA
states are saved too), and the draws do not depend on the device.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pds.models.checkpoints import atomic_save
from pds.models.trained import KINDS, build_network, read_training_state, sidecar_path, training_layout, write_sidecar
from pds.schedules import check_positive_int, check_sigma_range, ve_sigma
from pds.storage import append_text, atomic_write

__all__ = ["TrainConfig", "EMA", "dsm_loss", "train", "train_run", "check_same_run", "TrainingInterrupted"]


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
    device: str = "cpu"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("steps", "batch_size", "save_every"):
            check_positive_int(getattr(self, name), name)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not (0.0 <= self.ema_rate < 1.0):
            raise ValueError(f"the EMA rate must lie in [0, 1), got {self.ema_rate} (0.999 is usual)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        check_sigma_range(self.sigma_min, self.sigma_max)
        torch.device(self.device)  # an unknown device string fails here, before anything is written


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM arrived: the run saved a checkpoint at ``step`` and stopped."""

    def __init__(self, step: int, path: Path, signum: int):
        super().__init__(f"interrupted by signal {signum}; checkpoint saved at step {step} in {path}")
        self.step, self.path, self.signum = step, path, signum


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

def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def dsm_loss(net: nn.Module, kind: str, x: torch.Tensor, g: torch.Generator, sigmas: torch.Tensor | None = None,
             sigma_min: float = 0.01, sigma_max: float = 1.0) -> torch.Tensor:
    """½ E‖σ s(x + σz) + z‖² summed over pixels, averaged over the batch (see the module docstring).

    ``g`` is a CPU generator; the draws are made on the CPU and moved to ``x``'s device."""
    n, dev = x.shape[0], x.device
    z = torch.randn(x.shape, generator=g, dtype=x.dtype).to(dev)
    if kind in ("ncsn", "ncsnv2"):
        labels = torch.randint(0, len(sigmas), (n,), generator=g)
        sigma = sigmas.to(x.dtype)[labels].to(dev)
        out = net(x + sigma.view(-1, 1, 1, 1) * z, labels.to(dev))
    else:
        t = torch.rand(n, generator=g, dtype=x.dtype) * (1 - 1e-5) + 1e-5
        sigma = ve_sigma(t, sigma_min, sigma_max).to(dev)
        out = net(x + sigma.view(-1, 1, 1, 1) * z, sigma)
    return 0.5 * ((sigma.view(-1, 1, 1, 1) * out + z) ** 2).flatten(1).sum(1).mean()


def _resume(path: Path, net, kind, optimizer, ema: EMA) -> int:
    state = read_training_state(path, kind)
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path} holds another network than this run builds: {exc}") from exc
    optimizer.load_state_dict(state["optimizer"])
    dev = next(net.parameters()).device
    shadow = state["shadow"] if kind == "ncsnpp" else [state["shadow"][n] for n in ema.names]
    ema.shadow = [s.clone().to(dev) for s in shadow]
    ema.num_updates = state["num_updates"]
    return state["step"]


def _trim_log(log_path: Path, start: int) -> None:
    """Keep only the loss-log lines of steps < ``start`` (steps after the checkpoint are redone)."""
    if not log_path.is_file():
        return
    keep = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["step"] < start:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):  # a line cut by a kill
            continue
    atomic_write(log_path, lambda tmp: tmp.write_text("".join(k + "\n" for k in keep)), "the loss log")


class _Signals:
    """Turn SIGINT / SIGTERM into a flag checked between steps (restored on exit)."""

    def __init__(self):
        self.received = None

    def __enter__(self):
        self.old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handler(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        return False


def train(net: nn.Module, images: torch.Tensor, config: TrainConfig, out, sigmas=None, progress: bool = False,
          log_path=None, meta: dict | None = None) -> nn.Module:
    """Train ``net`` by denoising score matching on ``images`` [N, C, H, W] in [0, 1]; resume from ``out``.

    ``sigmas`` (NCSN / NCSNv2) are the noise levels, largest first. A checkpoint is written every
    ``save_every`` steps, at the end, and when SIGINT / SIGTERM arrives (then :class:`TrainingInterrupted`
    is raised), so a killed run loses at most the steps since the last save. ``log_path``: a JSON-lines loss
    log, one line per step, written at each checkpoint (a resumed run drops the lines after its checkpoint,
    so no step appears twice). ``meta``: the run's sidecar, rewritten with the weights' SHA-256 at each save.
    Returns ``net`` (raw weights; the EMA is in the file).
    """
    out = Path(out)
    cfg = config
    dev = torch.device(cfg.device)
    sig = None if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float32)
    if cfg.kind != "ncsnpp" and sig is None:
        raise ValueError(f"{cfg.kind} training needs the noise levels (sigmas)")
    net.to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    ema = EMA(net, cfg.ema_rate)
    start = _resume(out, net, cfg.kind, optimizer, ema) if out.exists() else 0
    log_path = None if log_path is None else Path(log_path)
    if log_path is not None:
        _trim_log(log_path, start)
    pending: list[str] = []
    wall0 = float((meta or {}).get("wall_time_s") or 0.0) if start else 0.0
    t0 = time.perf_counter()

    def save(step):
        if log_path is not None and pending:
            append_text(log_path, "".join(pending), "the loss log")
            pending.clear()
        atomic_save(training_layout(net, cfg.kind, optimizer.state_dict(), ema, step), out)
        if meta is not None:
            write_sidecar(out, {**meta, "step": step, "wall_time_s": round(wall0 + time.perf_counter() - t0, 1)})

    net.train()
    images = images.to(dev)
    losses: list[tuple[int, torch.Tensor]] = []  # read back in chunks: no device synchronisation per step

    def collect():
        if not losses:
            return
        values = torch.stack([v for _, v in losses]).cpu().tolist()
        for (step, _), value in zip(losses, values, strict=True):
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss at step {step}; lower the learning rate (--lr)")
            pending.append(json.dumps({"step": step, "loss": value}) + "\n")
        bar.set_postfix(loss=f"{values[-1]:.4g}")
        losses.clear()

    bar = tqdm(range(start, cfg.steps), disable=not progress, desc=f"DSM {cfg.kind}", initial=start, total=cfg.steps)
    with _Signals() as signals:
        for step in bar:
            g = _step_generator(cfg.seed, step)
            idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g)
            loss = dsm_loss(net, cfg.kind, images[idx.to(dev)], g, sig, cfg.sigma_min, cfg.sigma_max)
            optimizer.zero_grad()
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            optimizer.step()
            ema.update(net)
            losses.append((step, loss.detach()))
            done = (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps or signals.received is not None
            if done or len(losses) >= 50:
                collect()
            if done:
                save(step + 1)
            if signals.received is not None and step + 1 < cfg.steps:
                bar.close()
                raise TrainingInterrupted(step + 1, out, signals.received)
    return net


def check_same_run(out, spec: dict, sigmas) -> dict | None:
    """The sidecar of the run at ``out`` if it has a checkpoint, after checking that it trains the same network
    and noise levels (else ValueError); None for a fresh run."""
    out = Path(out)
    side = sidecar_path(out)
    if not (out.exists() and side.is_file()):
        return None
    old = json.loads(side.read_text())
    if old.get("net") != spec or old.get("sigmas") != (None if sigmas is None else list(sigmas)):
        raise ValueError(f"{out} was trained with another network or noise levels (see {side}); "
                         "choose another --out")
    return old


def train_run(spec: dict, sigmas, images: torch.Tensor, config: TrainConfig, out, progress: bool = False,
              log_path=None, meta: dict | None = None) -> nn.Module:
    """Build the network of ``spec`` with its weights drawn from ``config.seed`` and train it (see
    :func:`train`). A run that already has a checkpoint at ``out`` must have been started with the same
    network and noise levels (its sidecar says so); otherwise it is refused before anything is written."""
    out = Path(out)
    old = check_same_run(out, spec, sigmas)
    if old is not None and meta is not None:
        meta = {**meta, "wall_time_s": old.get("wall_time_s")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = build_network(spec)
    return train(net, images, config, out, sigmas=sigmas, progress=progress, log_path=log_path, meta=meta)
