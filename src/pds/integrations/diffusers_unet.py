"""A diffusers NCSN++ (a ``UNet2DModel`` with Fourier embedding of σ, the hub's google/ncsnpp-* layout) as a score
model: :class:`DiffusersScore` and :func:`load_diffusers_folder`, which :func:`pds.models.checkpoints.load_official`
calls for a diffusers folder. diffusers itself is imported only when such a folder is loaded (the scheduler is
:mod:`pds.integrations.diffusers`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pds.schedules import sigma_per_sample

__all__ = ["DiffusersScore", "load_diffusers_folder"]


class DiffusersScore(nn.Module):
    """``score(x, sigma)`` for a diffusers ``UNet2DModel`` with Fourier embedding (google/ncsnpp-*).

    Called as diffusers' ScoreSdeVePipeline calls it: ``unet(x, sigma).sample``, σ as a float tensor
    (a Python number would be cast to an integer time step); the model divides by σ itself.
    """

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return self.unet(x, sigma_per_sample(x, sigma)).sample


def load_diffusers_folder(path: Path):
    """(score, info) of a diffusers model folder (a pipeline with ``unet/``, or the UNet's own folder): its σ range,
    scales and snr from the pipeline's scheduler config when there is one."""
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:
        raise ImportError(f"{path} is a diffusers model directory; loading it needs `pip install diffusers`") from exc
    pipeline = (path / "model_index.json").is_file()
    unet_dir = path / "unet" if pipeline else path
    if not (unet_dir / "config.json").is_file():
        raise FileNotFoundError(f"{path}: a diffusers pipeline folder without unet/config.json")
    unet = UNet2DModel.from_pretrained(str(unet_dir), low_cpu_mem_usage=False)  # no `accelerate` needed, no warning
    cfg = dict(unet.config)
    if cfg.get("time_embedding_type") != "fourier":
        raise ValueError(
            f"{path}: a diffusers UNet2DModel with time_embedding_type={cfg.get('time_embedding_type')!r}; "
            "only NCSN++ models (Fourier embedding of σ, as google/ncsnpp-*) are score models"
        )
    info = {"arch": "ncsnpp-diffusers", "ema": None, "image_size": cfg.get("sample_size"),
            "channels": cfg.get("in_channels")}
    scheduler = (path if pipeline else path.parent) / "scheduler" / "scheduler_config.json"
    if scheduler.is_file():
        sc = json.loads(scheduler.read_text())
        info.update(sigma_min=float(sc["sigma_min"]), sigma_max=float(sc["sigma_max"]),
                    num_scales=int(sc["num_train_timesteps"]), snr=float(sc["snr"]))
    return DiffusersScore(unet).eval(), info
