"""ReLU: finite differences, the kink at 0, the cache, dtypes, CuPy."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.backend import cupy_or_none, gpu_available
from minist.layers import relu_backward, relu_forward

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def separated_values(shape, seed):
    """Distinct values 0.1 apart, none of them 0, so that x +- h never crosses the kink."""
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    return ((rng.permutation(size) - size // 2 + 0.5) * 0.1).reshape(shape)  # k + 1/2, k in Z


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_gradient_matches_finite_differences(shape, seed):
    x = separated_values(shape, seed)
    y, cache = relu_forward(x)
    dy = np.random.default_rng(seed).standard_normal(shape)
    dx = relu_backward(dy, cache)
    assert relative_error(dx, numerical_gradient(lambda v: relu_forward(v)[0], x, dy)) < 1e-6


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_forward_is_max_with_zero(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    y, _ = relu_forward(x)
    assert y.shape == x.shape
    assert np.all(y >= 0)
    assert np.array_equal(y[x > 0], x[x > 0])
    assert np.all(y[x <= 0] == 0)


def test_gradient_at_exactly_zero_is_zero():
    x = np.array([-1.0, 0.0, 2.0, -0.0])
    _, cache = relu_forward(x)
    dx = relu_backward(np.array([5.0, 6.0, 7.0, 8.0]), cache)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 7.0, 0.0])


def test_cache_is_the_output_not_a_copy_of_x():
    """The cache shares the output's memory (which the next layer keeps anyway)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, cache = relu_forward(x)
    assert cache.mask is y and not np.shares_memory(cache.mask, x)
    np.testing.assert_array_equal(cache.mask > 0, x > 0)


def test_float32_in_float32_out():
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    y, cache = relu_forward(x)
    assert y.dtype == np.float32
    assert relu_backward(np.ones_like(y), cache).dtype == np.float32


@pytest.mark.gpu
@needs_gpu
def test_cupy_matches_numpy():
    cp = cupy_or_none()
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
        x[0, 0, 0, :2] = 0.0
        dy = rng.standard_normal(x.shape).astype(dtype)
        y, cache = relu_forward(x)
        y_gpu, cache_gpu = relu_forward(cp.asarray(x))
        dx_gpu = relu_backward(cp.asarray(dy), cache_gpu)
        assert isinstance(y_gpu, cp.ndarray) and y_gpu.dtype == dtype == dx_gpu.dtype
        np.testing.assert_array_equal(y_gpu.get(), y)
        np.testing.assert_array_equal(dx_gpu.get(), relu_backward(dy, cache))
