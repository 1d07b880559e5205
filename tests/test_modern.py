"""The modern samplers (pds.modern): update rules against closed forms, exact per-frequency moments against Monte
Carlo at 16², and the p_σ-keeping PDS predictor."""

from __future__ import annotations

import math

import pytest
import torch

from pds.filters import parametric_filter
from pds.modern import dpmpp_2m, edm_churn, euler, heun, kept_noise_gain
from pds.precondition import Preconditioner
from pds.schedules import edm_sigmas

FNS = {"euler": euler, "heun": heun, "dpmpp_2m": dpmpp_2m, "edm_churn": edm_churn}


def test_edm_sigmas_follow_the_published_formula():
    s = edm_sigmas(0.002, 80.0, 18)
    assert len(s) == 19 and s[-1] == 0.0 and s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002)
    i = 7
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="decrease strictly"):
        euler(lambda x, s: -x, (1, 1, 2, 2), [1.0, 2.0, 0.0])


def test_one_euler_step_from_the_point_mass_lands_on_it():
    """Data at a single point m: D(x, σ) = m for every x, so one Euler step from σ to 0 gives m exactly."""
    m = torch.full((1, 1, 4, 4), 0.3, dtype=torch.float64)
    score = lambda x, s: (m - x) / s**2  # noqa: E731
    x, nfe = euler(score, (3, 1, 4, 4), [7.0, 0.0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert nfe == 1 and torch.allclose(x, m.expand(3, 1, 4, 4))
    x, nfe = dpmpp_2m(score, (3, 1, 4, 4), edm_sigmas(0.1, 7.0, 5), generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    assert nfe == 5 and torch.allclose(x, m.expand(3, 1, 4, 4))


def test_kept_noise_gain_is_sqrt_of_2p_minus_1_and_refuses_small_gains():
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6), alpha=5.0)
    kept = kept_noise_gain(pre)
    torch.testing.assert_close(kept.freq_gain, torch.sqrt(2 * pre.freq_gain**2 - 1))
    with pytest.raises(ValueError, match="below 1/2"):
        kept_noise_gain(Preconditioner(freq=parametric_filter(8, 2.0, 2.0), alpha=None))
    with pytest.raises(NotImplementedError, match="space filter"):
        kept_noise_gain(Preconditioner(space=torch.rand(1, 8, 8) + 0.5))
    assert math.isfinite(float(kept.freq_gain.max()))

