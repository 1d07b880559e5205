"""Tests of pds.precondition against independent dense computations and algebraic properties."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pds.filters import parametric_filter
from pds.precondition import Preconditioner, is_hermitian_symmetric, normalise_filter, operator_matrix

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def symmetrise(f: np.ndarray) -> np.ndarray:
    """Make f[..., k] == f[..., -k] (the Hermitian symmetry of a real filter)."""
    mirrored = np.roll(np.flip(f, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))
    return 0.5 * (f + mirrored)


@st.composite
def filter_setups(draw, symmetric=True, with_space=None):
    c = draw(st.sampled_from([1, 2, 3]))
    h = draw(st.integers(1, 7))
    w = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.2, 3.0, size=(c, h, w))
    if symmetric:
        freq = symmetrise(freq)
    use_space = draw(st.booleans()) if with_space is None else with_space
    space = rng.uniform(0.3, 2.0, size=(c, h, w)) if use_space else None
    alpha = draw(st.sampled_from([None, 2.0, 5.0, 10.0]))
    return (c, h, w), freq, space, alpha, seed


def dense_M(freq: np.ndarray, space: np.ndarray | None, shape) -> np.ndarray:
    """M = diag(A) · (I_C ⊗ F⁻¹ diag(R_c) F) built from explicit DFT matrices (numpy, complex128)."""
    c, h, w = shape
    fh = np.exp(-2j * np.pi * np.outer(np.arange(h), np.arange(h)) / h)
    fw = np.exp(-2j * np.pi * np.outer(np.arange(w), np.arange(w)) / w)
    F = np.kron(fh, fw)
    F_inv = np.linalg.inv(F)
    blocks = [F_inv @ np.diag(np.broadcast_to(freq, shape)[ch].ravel()) @ F for ch in range(c)]
    circ = np.zeros((c * h * w, c * h * w), complex)
    n = h * w
    for ch, b in enumerate(blocks):
        circ[ch * n : (ch + 1) * n, ch * n : (ch + 1) * n] = b
    a = np.ones(c * h * w) if space is None else np.broadcast_to(space, shape).ravel()
    return np.diag(a) @ circ


@given(filter_setups())
@SETTINGS
def test_operators_match_dense_matrices(setup):
    shape, freq, space, alpha, _ = setup
    pc = Preconditioner(freq=freq, space=space, alpha=alpha)
    assert pc.use_rfft
    R = normalise_filter(torch.tensor(freq), alpha).numpy()
    A = None if space is None else normalise_filter(torch.tensor(space), alpha).numpy()
    Md = dense_M(R, A, shape)
    assert np.abs(Md.imag).max() < 1e-10  # symmetric R: M is a real operator
    Md = Md.real
    Minv = np.linalg.inv(Md)
    np.testing.assert_allclose(operator_matrix(pc.M, shape), Md, atol=1e-10)
    np.testing.assert_allclose(operator_matrix(pc.M_inv, shape), Minv, atol=1e-10)
    np.testing.assert_allclose(operator_matrix(pc.noise, shape), Minv, atol=1e-10)
    np.testing.assert_allclose(operator_matrix(pc.drift, shape), Minv @ Minv.T, atol=1e-10)


@given(filter_setups())
@SETTINGS
def test_drift_is_noise_covariance_and_spd(setup):
    shape, freq, space, alpha, _ = setup
    pc = Preconditioner(freq=freq, space=space, alpha=alpha)
    N = operator_matrix(pc.noise, shape)
    D = operator_matrix(pc.drift, shape)
    np.testing.assert_allclose(D, N @ N.T, atol=1e-10)
    np.testing.assert_allclose(D, D.T, atol=1e-10)
    assert np.linalg.eigvalsh(D).min() > 0


@given(filter_setups(), st.sampled_from([torch.float32, torch.float64]), st.integers(1, 3))
@SETTINGS
def test_invertibility_dtype_and_realness(setup, dtype, n):
    shape, freq, space, alpha, seed = setup
    pc = Preconditioner(freq=freq, space=space, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g, dtype=dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for op in (pc.M, pc.M_inv, pc.noise, pc.drift):
        y = op(x)
        assert y.dtype == dtype and y.shape == x.shape and not y.is_complex()
    torch.testing.assert_close(pc.M_inv(pc.M(x)), x, atol=tol, rtol=tol)
    torch.testing.assert_close(pc.M(pc.M_inv(x)), x, atol=tol, rtol=tol)


@given(filter_setups(), st.sampled_from([torch.float32, torch.float64]))
@SETTINGS
def test_real_and_complex_paths_agree(setup, dtype):
    shape, freq, space, alpha, seed = setup
    real = Preconditioner(freq=freq, space=space, alpha=alpha, fft="real")
    cplx = Preconditioner(freq=freq, space=space, alpha=alpha, fft="complex")
    assert real.use_rfft and not cplx.use_rfft
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    for name in ("M", "M_inv", "noise", "drift"):
        a, b = getattr(real, name)(x), getattr(cplx, name)(x)
        torch.testing.assert_close(a, b, atol=tol * float(b.abs().max()), rtol=tol)


@given(filter_setups(symmetric=False, with_space=True))
@SETTINGS
def test_nonsymmetric_filter_follows_released_formula(setup):
    """Complex path, real part once at the end: Re F⁻¹[D_f F[D_s² F⁻¹[D_f F[d]]]] (released code)."""
    shape, freq, space, alpha, seed = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = Preconditioner(freq=freq, space=space, alpha=alpha)
    d = torch.randn((2, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    Df = 1.0 / normalise_filter(torch.tensor(freq), alpha)
    Ds = 1.0 / normalise_filter(torch.tensor(space), alpha)
    fft, ifft = torch.fft.fft2, torch.fft.ifft2
    expected = ifft(Df * fft(Ds**2 * ifft(Df * fft(d)))).real
    torch.testing.assert_close(pc.drift(d), expected, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(pc.noise(d), ifft(Df * fft(Ds * d)).real, atol=1e-12, rtol=1e-10)


def test_nonsymmetric_filter_warns_and_refuses_real_path():
    freq = np.random.default_rng(0).uniform(0.5, 2.0, (1, 4, 4))
    assert not is_hermitian_symmetric(torch.tensor(freq))
    with pytest.warns(UserWarning, match="Hermitian"):
        pc = Preconditioner(freq=freq)
    assert not pc.use_rfft
    with pytest.raises(ValueError, match="Hermitian"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Preconditioner(freq=freq, fft="real")


@pytest.mark.parametrize("alpha", [1.5, 2.0, 5.0, 10.0])
def test_released_normalisation_range(alpha):
    rng = np.random.default_rng(1)
    raw = symmetrise(rng.uniform(0.0, 7.0, (3, 6, 6)))
    raw[0, 0, 0] = 0.0  # zeros are fine with a number alpha: the multiplier is then α/(α−1)
    pc = Preconditioner(freq=raw, space=rng.uniform(0.0, 1.0, (3, 6, 6)), alpha=alpha)
    expected = alpha / (raw / raw.max() + alpha - 1.0)  # D = 1 / X̃, computed independently
    np.testing.assert_allclose(pc.freq_gain.numpy(), expected, rtol=1e-12)
    for gain in (pc.freq_gain, pc.space_gain):
        assert float(gain.min()) >= 1.0 - 1e-12
        assert float(gain.max()) <= alpha / (alpha - 1.0) + 1e-12
    assert float(pc.freq_gain[0, 0, 0]) == pytest.approx(alpha / (alpha - 1.0))


def test_identity_filters_are_identity():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    ones = torch.ones(3, 5, 6)
    for pc in (Preconditioner(), Preconditioner(freq=ones, space=ones, alpha=None),
               Preconditioner(freq=ones, space=ones, alpha=5.0)):
        assert pc.freq is None and pc.space is None
        for op in (pc.M, pc.M_inv, pc.noise, pc.drift):
            assert torch.equal(op(x), x)


def test_broadcast_filters():
    """A [H, W] frequency filter and a [C, 1, 1] space filter broadcast over channels and pixels."""
    freq = parametric_filter(6, r=1.0, lam=2.0)[0]  # [H, W]
    space = torch.tensor([1.0, 2.0, 4.0]).reshape(3, 1, 1)
    pc = Preconditioner(freq=freq, space=space, alpha=None)
    full = Preconditioner(freq=freq.expand(3, 6, 6), space=space.expand(3, 6, 6), alpha=None)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(pc.drift(x), full.drift(x))
    torch.testing.assert_close(pc.noise(x), full.noise(x))


@pytest.mark.parametrize("device", DEVICES)
def test_device_is_kept(device):
    pc = Preconditioner(freq=parametric_filter(8, 2.0, 1.6), space=torch.rand(1, 8, 8) + 0.1)
    x = torch.randn(2, 1, 8, 8, device=device)
    for op in (pc.M, pc.M_inv, pc.noise, pc.drift):
        assert op(x).device == x.device


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"freq": np.full((1, 4, 4), np.nan)}, ValueError, "non-finite"),
        ({"space": np.full((1, 4, 4), np.inf)}, ValueError, "non-finite"),
        ({"freq": np.zeros((1, 4, 4)), "alpha": None}, ValueError, "zero or negative"),
        ({"freq": -np.ones((1, 4, 4)), "alpha": None}, ValueError, "zero or negative"),
        ({"freq": -np.ones((1, 4, 4))}, ValueError, "negative"),
        ({"space": np.zeros((1, 4, 4))}, ValueError, "all zeros"),
        ({"freq": np.ones((1, 4, 4)) * (1 + 1j)}, TypeError, "complex"),
        ({"freq": torch.ones(1, 4, 4, dtype=torch.complex64)}, TypeError, "complex"),
        ({"freq": np.ones((2, 1, 4, 4))}, ValueError, "shape"),
        ({"freq": np.eye(4)[None] * 0 + np.pad([[1.0]], ((0, 3), (0, 3)))[None], "alpha": 0.5},
         ValueError, "alpha must be a number > 1"),
        ({"freq": np.ones((1, 4, 4)) + np.eye(4)[None], "alpha": 1}, ValueError, "unbounded at α = 1"),
        ({"freq": np.ones((1, 4, 4)), "alpha": -1}, ValueError, "alpha"),
        ({"freq": np.ones((1, 4, 4)), "fft": "fast"}, ValueError, "fft"),
        ({"freq": np.array([["a"]])}, TypeError, "numeric"),
    ],
)
def test_bad_filters_are_refused(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Preconditioner(**kwargs)


def test_eq13_space_filter_is_refused_with_explanation():
    mean = np.full((1, 4, 4), 0.2)  # mean pixel 0.2 < 1/e: log(0.2) + 1 < 0
    with pytest.raises(ValueError, match="Eq. 13"):
        Preconditioner(space=np.log(mean) + 1.0)


def test_bad_inputs_are_refused():
    pc = Preconditioner(freq=parametric_filter(4, 1.0, 2.0))
    with pytest.raises(ValueError, match="does not fit"):
        pc.drift(torch.randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        pc.noise(torch.randn(1, 4, 4))
    with pytest.raises(TypeError, match="real floating"):
        pc.M(torch.ones(1, 1, 4, 4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="real floating"):
        pc.M(torch.ones(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        pc.M(np.ones((1, 1, 4, 4)))
