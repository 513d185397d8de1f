"""Exercise ex_guided_gram: ``minist.losses.reference.guided_gram_matrix`` and
``guided_style_layer_loss`` (lesson 11, spatial control, Gatys et al. 2017 §4).

The gradient is checked by finite differences of the value in float64, with guides that are 0
at some positions; both functions against the Numba kernels applied to :math:`F \\circ T` (a
different implementation: the guided Gram of :math:`F` is the plain Gram of :math:`F \\circ T`,
and the chain rule multiplies the plain gradient by :math:`T` once more); and against
properties: a guide of ones changes nothing, a normalised 0/1 guide gives the Gram of the
region's positions alone, positions where :math:`T = 0` get no gradient, and an activation
``(1, N, H, W)`` with an ``(H, W)`` guide gets a gradient of its own shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.losses import kernels_numba
from minist.losses.reference import guided_gram_matrix, guided_style_layer_loss

pytestmark = pytest.mark.ex_guided_gram

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


def _problem(N, M, rng, zeros=0.3):
    """Features F, a style Gram A (symmetric PSD) and a guide T >= 0, about ``zeros`` of it 0."""
    F = rng.standard_normal((N, M))
    S = rng.standard_normal((N, 2 * N + 1))
    T = rng.uniform(0.2, 1.5, M) * (rng.uniform(size=M) >= zeros)
    return F, S @ S.T / S.shape[1], T


@FAST
@given(N=st.integers(1, 5), M=st.integers(1, 12), seed=SEEDS)
def test_gradient_matches_finite_differences(N, M, seed):
    F, A, T = _problem(N, M, np.random.default_rng(seed))
    E, dF = guided_style_layer_loss(F, A, T)
    assert dF.shape == F.shape and dF.dtype == F.dtype
    assert np.ndim(E) == 0 and E.dtype == F.dtype and float(E) >= 0
    numeric = numerical_gradient(lambda v: guided_style_layer_loss(v, A, T)[0], F, np.float64(1.0))
    assert relative_error(dF, numeric) < 1e-6


@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 40), seed=SEEDS)
def test_equals_the_numba_kernels_applied_to_the_guided_features(N, M, seed):
    F, A, T = _problem(N, M, np.random.default_rng(seed))
    FT = F * T  # F o T: column k times T_k
    G = guided_gram_matrix(F, T)
    assert G.shape == (N, N) and G.dtype == F.dtype
    np.testing.assert_allclose(G, kernels_numba.gram_matrix_numba(FT), rtol=1e-12, atol=1e-13)
    E, dF = guided_style_layer_loss(F, A, T)
    E_k, dFT_k = kernels_numba.style_layer_loss(FT, A)  # the unguided loss of F o T
    np.testing.assert_allclose(float(E), float(E_k), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(dF, dFT_k * T, rtol=1e-10, atol=1e-14)  # chain rule: times T


@FAST
@given(N=st.integers(1, 6), M=st.integers(2, 25), seed=SEEDS)
def test_a_normalised_region_gives_the_regions_own_gram_and_ones_change_nothing(N, M, seed):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, M))
    region = rng.uniform(size=M) < 0.5
    region[0] = True
    T = region * np.sqrt(M / region.sum())  # T / sqrt(mean T^2) for a 0/1 guide
    np.testing.assert_allclose(guided_gram_matrix(F, T),
                               F[:, region] @ F[:, region].T / region.sum(), rtol=1e-10,
                               atol=1e-13)
    np.testing.assert_allclose(guided_gram_matrix(F, np.ones(M)), F @ F.T / M, rtol=1e-12,
                               atol=1e-13)


@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 25), seed=SEEDS)
def test_zero_loss_at_the_own_guided_gram_and_no_gradient_outside_the_region(N, M, seed):
    F, A, T = _problem(N, M, np.random.default_rng(seed), zeros=0.5)
    E0, dF0 = guided_style_layer_loss(F, guided_gram_matrix(F, T), T)
    assert abs(float(E0)) < 1e-24
    np.testing.assert_allclose(dF0, 0.0, atol=1e-14)
    _, dF = guided_style_layer_loss(F, A, T)
    assert not dF[:, T == 0].any()


def test_activation_and_spatial_guide_in_gradient_shape_out():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 3, 4, 5))
    _, A, _ = _problem(3, 20, rng)
    T = rng.uniform(size=(4, 5))
    E, dx = guided_style_layer_loss(x, A, T)
    assert dx.shape == x.shape
    E_m, dF = guided_style_layer_loss(x.reshape(3, 20), A, T.reshape(20))
    np.testing.assert_allclose(float(E), float(E_m), rtol=1e-12)
    np.testing.assert_allclose(dx.reshape(3, 20), dF, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(guided_gram_matrix(x, T),
                               guided_gram_matrix(x.reshape(3, 20), T.reshape(20)), rtol=1e-12)
    E32, dx32 = guided_style_layer_loss(x.astype(np.float32), A, T)
    assert E32.dtype == np.float32 and dx32.dtype == np.float32
