from __future__ import annotations

import pytest
import torch

from pds.data import natural_image_crops


def test_natural_image_crops_are_seeded_and_in_range():
    a = natural_image_crops(5, 32, seed=1)
    b = natural_image_crops(5, 32, seed=1)
    c = natural_image_crops(5, 32, seed=2)
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_natural_image_crops_errors():
    with pytest.raises(ValueError, match="at least"):
        natural_image_crops(1, 5000)
    with pytest.raises(ValueError, match=">= 1"):
        natural_image_crops(0, 8)
