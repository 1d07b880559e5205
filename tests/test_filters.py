"""Tests of pds.filters: parametric (r, λ) filter, statistics filters, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pds.filters import (
    centred,
    frequency_filter,
    load_filters,
    parametric_filter,
    save_filters,
    space_filter,
)
from pds.precondition import Preconditioner, is_hermitian_symmetric


@given(st.integers(1, 33), st.integers(1, 33), st.floats(0, 20), st.floats(0.1, 5), st.sampled_from(["paper", "dc"]))
@settings(max_examples=80, deadline=None)
def test_parametric_filter_is_hermitian_and_two_valued(h, w, r, lam, centre):
    """Both readings are Hermitian-symmetric for every size, odd sizes included."""
    f = parametric_filter((h, w), r, lam, centre=centre)
    assert f.shape == (1, h, w) and f.dtype == torch.float64
    assert is_hermitian_symmetric(f)
    assert set(np.unique(f.numpy())) <= {1.0, lam}
    if centre == "dc":
        assert f[0, 0, 0] == 1.0  # DC is the centre of the circle: always inside


def test_parametric_filter_hand_computed_4x4():
    # paper reading: offsets h − 2 ∈ {−2, −1, 0, 1}; inside where (h−2)² + (w−2)² ≤ 2 (r = 1)
    paper = torch.tensor([[2, 2, 2, 2], [2, 1, 1, 1], [2, 1, 1, 1], [2, 1, 1, 1]], dtype=torch.float64)
    # DC reading: signed frequencies {0, 1, −2, −1}; inside where k_h² + k_w² ≤ 2
    dc = torch.tensor([[1, 1, 2, 1], [1, 1, 2, 1], [2, 2, 2, 2], [1, 1, 2, 1]], dtype=torch.float64)
    assert torch.equal(parametric_filter(4, 1.0, 2.0)[0], paper)
    assert torch.equal(parametric_filter(4, 1.0, 2.0, centre="dc")[0], dc)


def test_parametric_filter_hand_computed_28x28_paper_setting():
    """(r, λ) = (0.2H, 1.6): 2r² = 62.72. Paper reading: λ at DC, 1 at the Nyquist corner [14, 14]."""
    f = parametric_filter(28, 0.2 * 28, 1.6)[0]
    assert f[0, 0] == 1.6 and f[14, 14] == 1.0
    assert f[14, 7] == 1.0 and f[14, 6] == 1.6  # (0)² + (−7)² = 49 ≤ 62.72; 64 > 62.72
    assert f[9, 9] == 1.0 and f[8, 8] == 1.6  # offsets −5: 50 ≤ 62.72; offsets −6: 72 > 62.72
    g = parametric_filter(28, 0.2 * 28, 1.6, centre="dc")[0]
    assert g[0, 0] == 1.0 and g[14, 14] == 1.6 and g[0, 7] == 1.0 and g[0, 8] == 1.6
    # for even sizes the literal reading is the DC reading's picture on the centred (fftshifted) spectrum: the
    # formula describes the usual centred plot, but applied to the uncentred array it moves the circle to Nyquist
    assert torch.equal(f, centred(g))


def test_parametric_filter_dc_reading_on_the_centred_spectrum():
    """For even H, W the DC reading is the printed circle on the fftshifted spectrum."""
    H, W, r, lam = 28, 28, 0.2 * 28, 1.6
    f = centred(parametric_filter((H, W), r, lam, centre="dc"))[0].numpy()
    h, w = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    expected = np.where((h - H / 2) ** 2 + (w - W / 2) ** 2 <= 2 * r**2, 1.0, lam)
    np.testing.assert_array_equal(f, expected)


def test_parametric_filter_channels_and_errors():
    assert parametric_filter(8, 2, 1.5, channels=3).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="lam"):
        parametric_filter(8, 2, 0.0)
    with pytest.raises(ValueError, match="r must"):
        parametric_filter(8, -1, 2.0)
    with pytest.raises(ValueError, match="size"):
        parametric_filter((8, 0), 1, 2.0)


def _images(n=10, c=2, h=6, w=5, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_frequency_filter_matches_direct_formula():
    x = _images()
    expected = np.log(np.mean(np.abs(np.fft.fft2(x.numpy().astype(np.float64))) ** 2, axis=0) + 1)
    np.testing.assert_allclose(frequency_filter(x).numpy(), expected, rtol=1e-12)
    assert is_hermitian_symmetric(frequency_filter(x))


def test_streaming_equals_one_batch():
    x = _images(n=23)
    batches = [x[:5], x[5:12], x[12:]]
    torch.testing.assert_close(frequency_filter(batches), frequency_filter(x))
    torch.testing.assert_close(space_filter(iter(batches)), space_filter(x))
    torch.testing.assert_close(frequency_filter(x, batch_size=4), frequency_filter(x, batch_size=100))


def test_space_filter_variants():
    x = _images()
    torch.testing.assert_close(space_filter(x), (x.double() ** 2).mean(0))
    torch.testing.assert_close(space_filter(x, "paper"), torch.log(x.double().mean(0)) + 1)
    with pytest.raises(ValueError, match="variant"):
        space_filter(x, "other")


def test_eq13_is_not_invertible_on_dark_images_but_released_is():
    dark = _images() * 0.3  # mean pixel < 1/e
    paper = space_filter(dark, "paper")
    assert (paper <= 0).all()
    with pytest.raises(ValueError, match="Eq. 13"):
        Preconditioner(space=paper)
    Preconditioner(space=space_filter(dark, "released"))  # works


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(2, 4, 4), r"\[N, C, H, W\]"),
        (torch.rand(2, 1, 4, 4) * 2, r"\[0, 1\]"),
        (torch.full((2, 1, 4, 4), float("nan")), "NaN"),
        (torch.zeros(0, 1, 4, 4), "no images"),
    ],
)
def test_statistics_refuse_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        frequency_filter(bad)


def test_batches_must_share_shape():
    with pytest.raises(ValueError, match="share"):
        frequency_filter([torch.rand(2, 1, 4, 4), torch.rand(2, 1, 5, 5)])


def test_save_load_roundtrip(tmp_path):
    x = _images()
    freq, space = frequency_filter(x), space_filter(x)
    path = save_filters(tmp_path / "f.npz", freq, space, source="unit test", n=10, seed=3,
                        size=[6, 5], variant="released")
    loaded = load_filters(path)
    torch.testing.assert_close(loaded.freq, freq)
    torch.testing.assert_close(loaded.space, space)
    assert loaded.metadata == {"source": "unit test", "n": 10, "seed": 3, "size": [6, 5],
                               "variant": "released"}
    with np.load(path) as data:
        assert data["freq"].shape == (2, 6, 5) and data["space"].shape == (2, 6, 5)
    only = load_filters(save_filters(tmp_path / "g.npz", freq=freq, seed=None))
    assert only.space is None and only.metadata["seed"] is None


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_filters(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_filters(tmp_path / "bad.npz")
    np.savez(tmp_path / "empty.npz", other=np.zeros(3))
    with pytest.raises(ValueError, match="neither"):
        load_filters(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="nothing to save"):
        save_filters(tmp_path / "x.npz")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_power_spectrum_from_the_half_plane_equals_the_full_dft(n, c, h, w, dtype, seed):
    from pds.fourier import power_spectrum

    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    got, want = power_spectrum(x), torch.fft.fft2(x).abs() ** 2
    assert got.shape == want.shape and got.dtype == want.dtype
    eps = torch.finfo(dtype).eps
    assert float((got - want).abs().max()) <= 64 * eps * float(want.abs().max())
    with pytest.raises(TypeError, match="real images"):
        power_spectrum(torch.fft.fft2(x))
