"""Exercise ex_content_loss: ``minist.losses.reference.content_loss`` (lesson 04, Eq. 1-2).

The gradient is checked by finite differences of the value, the value against the fused Numba
kernel (a different implementation of the same equation), and both against properties: zero
at ``F = P``, quadratic growth along any direction, 0-d value in ``F``'s dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.losses import kernels_numba
from minist.losses.reference import content_loss

pytestmark = pytest.mark.ex_content_loss

SHAPES = st.sampled_from([(3, 5), (1, 4, 3, 2), (8, 1), (1, 2, 5, 5)])


@settings(max_examples=25, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1))
def test_gradient_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    F, P = rng.standard_normal(shape), rng.standard_normal(shape)
    L, dF = content_loss(F, P)
    assert dF.shape == F.shape and dF.dtype == F.dtype
    numeric = numerical_gradient(lambda v: content_loss(v, P)[0], F, np.float64(1.0))
    assert relative_error(dF, numeric) < 1e-7


@settings(max_examples=25, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["f4", "f8"]))
def test_equals_the_numba_kernel(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    F, P = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    L, dF = content_loss(F, P)
    L_k, dF_k = kernels_numba.content_loss(F, P)
    assert np.ndim(L) == 0 and L.dtype == F.dtype  # a 0-d array of F's dtype
    tol = 1e-5 if dtype == "f4" else 1e-12
    np.testing.assert_allclose(float(L), float(L_k), rtol=tol)
    np.testing.assert_allclose(dF, dF_k, rtol=tol, atol=tol)


def test_zero_at_the_target_and_quadratic_along_a_line():
    rng = np.random.default_rng(7)
    P, D = rng.standard_normal((2, 6, 9))
    L0, dF0 = content_loss(P.copy(), P)
    assert float(L0) == 0.0 and not np.any(dF0)
    L1 = float(content_loss(P + D, P)[0])
    assert L1 > 0
    for t in (0.5, 2.0, -3.0):
        np.testing.assert_allclose(float(content_loss(P + t * D, P)[0]), t * t * L1, rtol=1e-12)


def test_does_not_modify_its_inputs():
    rng = np.random.default_rng(8)
    F, P = rng.standard_normal((2, 4, 4))
    F0, P0 = F.copy(), P.copy()
    content_loss(F, P)
    np.testing.assert_array_equal(F, F0)
    np.testing.assert_array_equal(P, P0)
