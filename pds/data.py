"""Image data as float tensors [N, C, H, W] in [0, 1].

Stand-ins available offline (they are *not* the paper's data sets, and notebooks say so):

* :func:`natural_image_crops` — random square crops of the colour photographs bundled with
  scikit-image, a stand-in for scene data (LSUN-like 1/f² statistics).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["NATURAL_PHOTOS", "natural_photographs", "natural_image_crops"]

# colour photographs of natural scenes and objects shipped with scikit-image (skimage.data)
NATURAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def natural_photographs() -> list[np.ndarray]:
    """The bundled colour photographs as float arrays [3, H, W] in [0, 1]."""
    from skimage import data as skdata

    return [np.moveaxis(getattr(skdata, name)()[..., :3], -1, 0).astype(np.float64) / 255.0 for name in NATURAL_PHOTOS]


def natural_image_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size``×``size`` RGB crops (seeded) of the bundled photographs, [n, 3, size, size].

    Photos are chosen uniformly, positions uniformly inside the photo; a crop larger than a photo's
    shorter side is refused (the smallest photo is 300 pixels high).
    """
    photos = natural_photographs()
    if n < 1 or size < 1:
        raise ValueError(f"n and size must be >= 1, got n={n}, size={size}")
    usable = [p for p in photos if min(p.shape[1:]) >= size]
    if not usable:
        largest = max(min(p.shape[1:]) for p in photos)
        raise ValueError(f"no bundled photograph is at least {size}×{size} (the largest fits {largest}×{largest})")
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size))
    for i in range(n):
        p = usable[rng.integers(len(usable))]
        top = rng.integers(0, p.shape[1] - size + 1)
        left = rng.integers(0, p.shape[2] - size + 1)
        out[i] = p[:, top : top + size, left : left + size]
    return torch.from_numpy(out).float()
