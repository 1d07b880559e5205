"""Skew-symmetry of every solenoidal operator, checked on its dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pds.precondition import operator_matrix
from pds.solenoidal import FourierSkew, MatrixSkew, PaperSolenoidal, central_difference, dft_matrix


@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 5, 3), (1, 6, 7)])
def test_paper_operator_is_zero(shape):
    """S = Re[F − Fᵀ] (Sec. 5): the DFT matrix is symmetric, so S is the zero operator."""
    c, h, w = shape
    F = np.kron(dft_matrix(h).numpy(), dft_matrix(w).numpy())
    assert np.array_equal(F, F.T)  # symmetric to the bit
    np.testing.assert_allclose(F, np.fft.fft2(np.eye(h * w).reshape(h * w, h, w)).reshape(h * w, -1).T,
                               atol=1e-12)
    S = operator_matrix(PaperSolenoidal(), shape)
    assert np.abs(S).max() < 1e-11 * h * w
    # for contrast: the same construction with a non-symmetric matrix (F·P, P a shift) is not zero
    P = np.roll(np.eye(h * w), 1, axis=1)
    assert np.abs((F @ P - (F @ P).T).real).max() > 0.1


@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from(["H", "W"]))
@settings(max_examples=30, deadline=None)
def test_central_difference_is_skew_and_matches_roll(h, w, axis):
    S_op = central_difference((h, w), axis)
    S = operator_matrix(S_op, (2, h, w))
    np.testing.assert_allclose(S, -S.T, atol=1e-12)
    x = torch.randn(3, 2, h, w, dtype=torch.float64)
    dim = 2 if axis == "H" else 3
    expected = (torch.roll(x, -1, dims=dim) - torch.roll(x, 1, dims=dim)) / 2
    torch.testing.assert_close(S_op(x), expected, atol=1e-12, rtol=0)


def test_fourier_skew_checks_symbol():
    with pytest.raises(ValueError, match="odd"):
        FourierSkew(torch.ones(4, 4))
    with pytest.raises(ValueError, match="imaginary"):
        FourierSkew(torch.ones(4, 4, dtype=torch.complex128))
    sym = torch.randn(5, 6, dtype=torch.float64)
    odd = sym - torch.roll(torch.flip(sym, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
    S = operator_matrix(FourierSkew(odd), (1, 5, 6))
    np.testing.assert_allclose(S, -S.T, atol=1e-12)
    assert np.abs(S).max() > 0.1


def test_matrix_skew():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((12, 12))
    op = MatrixSkew(B)
    S = operator_matrix(op, (3, 2, 2))
    np.testing.assert_allclose(S, B - B.T, atol=1e-14)
    np.testing.assert_array_equal(S, -S.T)
    with pytest.raises(ValueError, match="C·H·W"):
        op(torch.randn(1, 1, 2, 2))
    with pytest.raises(ValueError, match="square"):
        MatrixSkew(np.ones((3, 4)))


def test_float32_and_device():
    x = torch.randn(2, 1, 6, 6)
    for op in (PaperSolenoidal(), central_difference(6, "W"), MatrixSkew(np.eye(36))):
        y = op(x)
        assert y.dtype == torch.float32 and y.shape == x.shape and not y.is_complex()


def test_paper_operator_computes_the_dft_literally():
    """F[x] of the dense construction equals the FFT (so the zero is not a trivially vanishing expression)."""
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    h, w = 5, 6
    fx = torch.einsum("kh,nchw,wl->nckl", dft_matrix(h), x.to(torch.complex128), dft_matrix(w).transpose(0, 1))
    torch.testing.assert_close(fx, torch.fft.fft2(x.to(torch.complex128)), rtol=1e-12, atol=1e-10)
    assert torch.equal(PaperSolenoidal()(x), torch.zeros_like(x))
