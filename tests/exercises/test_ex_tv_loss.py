"""Exercise ex_tv_loss: ``minist.losses.reference.tv_loss`` (lesson 06).

The gradient is checked by finite differences in float64, value and gradient against the fused
Numba kernel (``kernels_numba.tv_loss``, a different implementation), and both against
properties: zero for a flat image, unchanged by adding a constant (so the gradient sums to zero
over each channel), a ramp of slope 1 costs one per difference.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.losses import kernels_numba
from minist.losses.reference import tv_loss

pytestmark = pytest.mark.ex_tv_loss

FAST = settings(max_examples=25, deadline=None)
SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))


@FAST
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1))
def test_gradient_matches_finite_differences(shape, seed):
    x = np.random.default_rng(seed).uniform(0, 1, shape)
    L, grad = tv_loss(x)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert np.ndim(L) == 0 and L.dtype == x.dtype
    numeric = numerical_gradient(lambda v: tv_loss(v)[0], x, np.float64(1.0))
    assert relative_error(grad, numeric) < 1e-7


@FAST
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["f4", "f8"]))
def test_equals_the_numba_kernel(shape, seed, dtype):
    x = np.random.default_rng(seed).uniform(0, 1, shape).astype(dtype)
    L, grad = tv_loss(x)
    L_k, grad_k = kernels_numba.tv_loss(x)
    tol = 1e-5 if dtype == "f4" else 1e-12
    np.testing.assert_allclose(float(L), float(L_k), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, grad_k, rtol=tol, atol=tol)


def test_flat_image_costs_nothing_and_constants_do_not_matter():
    rng = np.random.default_rng(14)
    flat = np.full((1, 3, 5, 4), 0.3)
    L, grad = tv_loss(flat)
    assert float(L) == 0.0 and not np.any(grad)
    x = rng.uniform(0, 1, (2, 3, 5, 4))
    L, grad = tv_loss(x)
    np.testing.assert_allclose(float(tv_loss(x + 0.25)[0]), float(L), rtol=1e-12)
    np.testing.assert_allclose(grad.sum(axis=(2, 3)), 0.0, atol=1e-12)


def test_ramp_costs_one_per_horizontal_difference():
    N, C, H, W = 2, 3, 4, 6
    ramp = np.broadcast_to(np.arange(W, dtype=np.float64), (N, C, H, W)).copy()
    L, _ = tv_loss(ramp)  # no vertical change; W - 1 unit steps in each of N*C*H rows
    assert float(L) == N * C * H * (W - 1)
    L_t, _ = tv_loss(np.ascontiguousarray(ramp.transpose(0, 1, 3, 2)))  # the same, vertically
    assert float(L_t) == float(L)
