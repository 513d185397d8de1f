"""Exercise ex_relu: ``minist.layers.relu.relu_forward`` and ``relu_backward`` (lesson 02).

The forward is pinned down by properties: ``relu(x) - relu(-x) = x`` together with
``relu(x) >= 0`` and ``relu(x) * relu(-x) = 0`` leaves exactly one answer, max(x, 0). The
backward is checked by finite differences away from the kink and by the convention at it.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_dtype, expect_gradient, expect_shape
from gradcheck import numerical_gradient
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
    inputs = {"x": x}
    expect_shape(y, x.shape, what="y", inputs=inputs)
    expect_dtype(y, x.dtype, what="y", input_name="x", hint="compare with a Python 0, not 0.0 "
                 "in an array of another dtype")
    expect(np.all(y >= 0), f"y has negative entries, on x {x.shape}: max(x, 0) >= 0")
    expect(np.all(y * _relu(-x) == 0), "relu(x) and relu(-x) are both non-zero somewhere")
    expect_close(y - _relu(-x), x, what="relu(x) - relu(-x)", against="x", inputs=inputs, rtol=0)
    expect_close(_relu(y), y, what="relu(relu(x))", against="relu(x)", inputs=inputs, rtol=0)
    expect_close(_relu(3.0 * x), 3.0 * y, what="relu(3 x)", against="3 relu(x)", inputs=inputs,
                 rtol=1e-7)


@FAST
@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=4), seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where there is no derivative
    dy = rng.standard_normal(shape)
    _, cache = relu_forward(x)
    dx = relu_backward(dy, cache)
    inputs = {"x": x, "dy": dy}
    expect_shape(dx, x.shape, what="dx", inputs=inputs)
    expect_dtype(dx, dy.dtype, what="dx", input_name="dy")
    expect_gradient(dx, numerical_gradient(_relu, x, dy), what="dx", inputs=inputs, tol=1e-8)


def test_backward_is_zero_at_the_kink_and_keeps_float32():
    x = np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    dy = np.array([[5.0, 7.0, 11.0]], dtype=np.float32)
    _, cache = relu_forward(x)
    dx = relu_backward(dy, cache)
    expect_dtype(dx, np.float32, what="dx", input_name="dy", hint="keep dy's dtype (a boolean "
                 "mask times dy does)")
    expect_close(dx, [[0.0, 0.0, 11.0]], what="dx at x = [-1, 0, 2]",
                 against="[0, 0, 11] (no gradient at the kink x = 0)", inputs={"x": x}, rtol=0)


def test_forward_does_not_modify_its_input():
    x = np.array([-2.0, -0.5, 0.5, 2.0])
    before = x.copy()
    relu_forward(x)
    expect(np.array_equal(x, before), "relu_forward modified its input x: make a new array")


def test_backward_accepts_the_relu_output_as_its_mask():
    """``ReluCache`` may hold the ReLU's output ``y`` instead of a boolean mask (the fused
    convolution + ReLU that VGG runs keeps ``y``): ``[y > 0] = [x > 0]`` gives the same ``dx``."""
    rng = np.random.default_rng(17)
    x, dy = rng.standard_normal((2, 3, 4, 5))
    y, cache = relu_forward(x)
    got, want = relu_backward(dy, ReluCache(y)), relu_backward(dy, ReluCache(x > 0))
    expect(np.array_equal(got, want),
           "relu_backward(dy, ReluCache(y)) with y = relu(x) differs from relu_backward(dy, "
           f"ReluCache(x > 0)) (max absolute error {np.abs(got - want).max():.3g}): VGG's fused "
           "convolution + ReLU hands the backward a cache holding the output y, not a boolean "
           "mask; read the mask as cache.mask > 0 (true exactly where x > 0), not as its values")
    expect_close(relu_backward(dy, cache), want, what="dx from your cache",
                 against="dx from ReluCache(x > 0)", inputs={"x": x}, rtol=0)
