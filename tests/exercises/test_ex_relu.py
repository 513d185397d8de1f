"""Exercise ex_relu: ``minist.layers.relu.relu_forward`` and ``relu_backward`` (lesson 02).

The forward is pinned down by properties: ``relu(x) - relu(-x) = x`` together with
``relu(x) >= 0`` and ``relu(x) * relu(-x) = 0`` leaves exactly one answer, max(x, 0). The
backward is checked by finite differences away from the kink and by the convention at it.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from minist.layers.relu import ReluCache, relu_backward, relu_forward

pytestmark = pytest.mark.ex_relu

FAST = settings(max_examples=30, deadline=None)


def _relu(x):
    return relu_forward(x)[0]


@FAST
@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=5), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_properties(shape, seed, dtype):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0  # include the kink
    y = _relu(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.all(y >= 0)
    assert np.all(y * _relu(-x) == 0)  # at most one of relu(x), relu(-x) is non-zero
    np.testing.assert_array_equal(y - _relu(-x), x)  # ... and their difference is x
    np.testing.assert_array_equal(_relu(y), y)  # idempotent
    np.testing.assert_allclose(_relu(3.0 * x), 3.0 * y)  # positively homogeneous


@FAST
@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=4), seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where there is no derivative
    dy = rng.standard_normal(shape)
    _, cache = relu_forward(x)
    dx = relu_backward(dy, cache)
    assert dx.shape == x.shape and dx.dtype == dy.dtype
    assert relative_error(dx, numerical_gradient(_relu, x, dy)) < 1e-8


def test_backward_is_zero_at_the_kink_and_keeps_float32():
    x = np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    dy = np.array([[5.0, 7.0, 11.0]], dtype=np.float32)
    _, cache = relu_forward(x)
    dx = relu_backward(dy, cache)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 11.0]])


def test_forward_does_not_modify_its_input():
    x = np.array([-2.0, -0.5, 0.5, 2.0])
    before = x.copy()
    relu_forward(x)
    np.testing.assert_array_equal(x, before)


def test_backward_accepts_the_relu_output_as_its_mask():
    """``ReluCache`` may hold the ReLU's output ``y`` instead of a boolean mask (the fused
    convolution + ReLU that VGG runs keeps ``y``): ``[y > 0] = [x > 0]`` gives the same ``dx``."""
    rng = np.random.default_rng(17)
    x, dy = rng.standard_normal((2, 3, 4, 5))
    y, cache = relu_forward(x)
    np.testing.assert_array_equal(relu_backward(dy, ReluCache(y)), relu_backward(dy, cache))
