"""Fused layers == their unfused composition: ReLU backward fused into max pooling; the
Numba max-pool kernels == the slices version."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.layers import (
    max_pool_backward,
    max_pool_forward,
    relu_backward,
    relu_forward,
)
from minist.layers import pool as pool_module
from minist.layers.pool import relu_max_pool_backward


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    hw=st.tuples(st.integers(3, 8), st.integers(3, 8)),
    numba=st.booleans(),
)
def test_relu_max_pool_backward_equals_composition(seed, kernel, stride, hw, numba):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, 3, *hw))
    x, relu_cache = relu_forward(z)
    with mock.patch.dict(pool_module.USE_NUMBA, {"cpu": numba}):
        y, cache = max_pool_forward(x, kernel, stride)
        dy = rng.standard_normal(y.shape)
        got = relu_max_pool_backward(dy, cache, x)
        ref = relu_backward(max_pool_backward(dy, cache), relu_cache)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    hw=st.tuples(st.integers(3, 8), st.integers(3, 8)),
    ties=st.booleans(),
)
def test_numba_max_pool_equals_slices(seed, kernel, stride, hw, ties):
    x = np.random.default_rng(seed).standard_normal((2, 3, *hw)).astype(np.float32)
    if ties:
        x = np.round(x)
    y, cache = max_pool_forward(x, kernel, stride)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    dx = max_pool_backward(dy, cache)
    with mock.patch.dict(pool_module.USE_NUMBA, {"cpu": False}):
        y_ref, cache_ref = max_pool_forward(x, kernel, stride)
        dx_ref = max_pool_backward(dy, cache_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(cache.argmax, cache_ref.argmax)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-6)
    assert y.dtype == dx.dtype == np.float32
