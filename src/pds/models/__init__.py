"""Score networks of the official checkpoints — NCSN v1 ``CondRefineNetDilated`` (ermongroup/ncsn), NCSNv2 /
NCSNv2Deeper (ermongroup/ncsnv2), NCSN++ continuous VE (score_sde) — state-dict compatible and checked against the
original code's outputs (``tests/test_models.py``), and :class:`LevelScore`, their adapter to ``score(x, sigma)``. They
import nothing from ``pds`` but the leaf :mod:`pds.schedules`; the modules around them: the README's ``pds.models``."""

from __future__ import annotations

import torch
from torch import nn

from pds.models.ncsnpp import OFFICIAL_CONFIGS, NCSNpp, NCSNppConfig
from pds.models.refinenet import CondRefineNetDilated, NCSNv2, NCSNv2Deeper

__all__ = [
    "LevelScore",
    "CondRefineNetDilated",
    "NCSNv2",
    "NCSNv2Deeper",
    "NCSNpp",
    "NCSNppConfig",
    "OFFICIAL_CONFIGS",
]

class LevelScore(nn.Module):
    """``score(x, sigma)`` for a network trained on discrete levels: σ → the index of its level.

    Each σ must match one of ``sigmas`` to a relative 1e-4 (these networks know only their levels). σ may be
    a number (one level for the whole batch: looked up on the host, no device synchronisation) or a tensor
    of one σ per sample.
    """

    def __init__(self, net: nn.Module, sigmas):
        super().__init__()
        self.net = net
        self.register_buffer("levels", torch.as_tensor(sigmas, dtype=torch.float64))
        self._host_levels = [float(s) for s in self.levels]

    def _mismatch(self, s: list[float], worst: float) -> ValueError:
        lv = self._host_levels
        return ValueError(f"sigma {s[:4]}{' …' if len(s) > 4 else ''} is not one of the network's {len(lv)} noise "
                          f"levels [{max(lv):.4g} … {min(lv):.4g}] (relative mismatch {worst:.3g})")

    def level_index(self, sigma) -> torch.Tensor:
        if isinstance(sigma, int | float):
            rel = [abs(float(sigma) - v) / v for v in self._host_levels]
            best = min(range(len(rel)), key=rel.__getitem__)
            if rel[best] > 1e-4:
                raise self._mismatch([float(sigma)], rel[best])
            return torch.tensor([best])
        s = torch.as_tensor(sigma, dtype=torch.float64, device=self.levels.device).reshape(-1)
        rel = (s[:, None] - self.levels[None, :]).abs() / self.levels[None, :]
        best = rel.argmin(dim=1)
        worst = float(rel.gather(1, best[:, None]).max())
        if worst > 1e-4:
            raise self._mismatch(s.tolist(), worst)
        return best

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        labels = self.level_index(sigma)
        if labels.numel() == 1:
            labels = torch.full((x.shape[0],), int(labels[0]), dtype=torch.long, device=x.device)
        return self.net(x, labels.to(x.device))
