"""Exercise ex_style_loss: ``minist.losses.reference.style_layer_loss`` (lesson 05, Eq. 4, 6).

The gradient is checked by finite differences of the value in float64, the value and gradient
against the Numba kernels' version (``kernels_numba.style_layer_loss``, a different
implementation), and both against properties: ``E_l = 0`` and no gradient when ``A`` is the
features' own Gram, ``E_l`` unchanged when the positions are repeated (the normalisation), and
an activation ``(1, N, H, W)`` gets a gradient of its own shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.losses import kernels_numba
from minist.losses.reference import style_layer_loss

pytestmark = pytest.mark.ex_style_loss

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


def _target(N, rng):
    """A style Gram A: symmetric positive semi-definite, built from random features."""
    S = rng.standard_normal((N, 2 * N + 1))
    return S @ S.T / S.shape[1]


@FAST
@given(N=st.integers(1, 5), M=st.integers(1, 12), seed=SEEDS)
def test_gradient_matches_finite_differences(N, M, seed):
    rng = np.random.default_rng(seed)
    F, A = rng.standard_normal((N, M)), _target(N, rng)
    E, dF = style_layer_loss(F, A)
    assert dF.shape == F.shape and dF.dtype == F.dtype
    assert np.ndim(E) == 0 and E.dtype == F.dtype and float(E) >= 0
    numeric = numerical_gradient(lambda v: style_layer_loss(v, A)[0], F, np.float64(1.0))
    assert relative_error(dF, numeric) < 1e-6


@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 40), seed=SEEDS)
def test_equals_the_numba_kernel_version(N, M, seed):
    rng = np.random.default_rng(seed)
    F, A = rng.standard_normal((N, M)), _target(N, rng)
    E, dF = style_layer_loss(F, A)
    E_k, dF_k = kernels_numba.style_layer_loss(F, A)
    np.testing.assert_allclose(float(E), float(E_k), rtol=1e-10)
    np.testing.assert_allclose(dF, dF_k, rtol=1e-10, atol=1e-14)


def test_zero_when_the_target_is_the_features_own_gram():
    F = np.random.default_rng(11).standard_normal((6, 20))
    own = F @ F.T / F.shape[1]  # Eq. 3, normalised by M as minist does
    E, dF = style_layer_loss(F, own)
    assert abs(float(E)) < 1e-24
    np.testing.assert_allclose(dF, 0.0, atol=1e-14)


def test_repeating_the_positions_changes_nothing_but_spreads_the_gradient():
    rng = np.random.default_rng(12)
    F, A = rng.standard_normal((4, 7)), _target(4, rng)
    E, dF = style_layer_loss(F, A)
    E2, dF2 = style_layer_loss(np.tile(F, (1, 3)), A)
    np.testing.assert_allclose(float(E2), float(E), rtol=1e-12)
    # three copies of each position share its gradient: each gets a third
    np.testing.assert_allclose(dF2, np.tile(dF, (1, 3)) / 3, rtol=1e-10, atol=1e-14)


def test_activation_shape_in_gradient_shape_out():
    rng = np.random.default_rng(13)
    x, A = rng.standard_normal((1, 3, 4, 5)), _target(3, rng)
    E, dx = style_layer_loss(x, A)
    assert dx.shape == x.shape
    E_m, dF = style_layer_loss(x.reshape(3, 20), A)
    np.testing.assert_allclose(float(E), float(E_m), rtol=1e-12)
    np.testing.assert_allclose(dx.reshape(3, 20), dF, rtol=1e-12, atol=1e-15)
    E32, _ = style_layer_loss(x.astype(np.float32), A)
    assert E32.dtype == np.float32
