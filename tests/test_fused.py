"""Fused steps == the layers they fuse: conv + ReLU (forward and backward, Winograd and im2col),
and the ReLU mask taken from a max pooling's output; finite differences for both."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.execution import default_config
from minist.layers import (
    ReluCache,
    ReluMaxPoolCache,
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
    max_pool_backward,
    max_pool_forward,
    relu_backward,
    relu_forward,
    relu_max_pool_backward,
)
from minist.layers import winograd as wg


def _layer(C, F, H, W, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, C, H, W)).astype(dtype)
    w = (rng.standard_normal((F, C, 3, 3)) / np.sqrt(9 * C)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) * 0.1
    return x, w, b


# C = 3 goes through im2col, C = 16 through Winograd (winograd_min_channels); stride 2 too
CASES = [(3, 5, 9, 7, 1), (16, 6, 11, 10, 1), (16, 4, 9, 9, 2)]


@pytest.mark.parametrize("C, F, H, W, stride", CASES)
def test_conv_relu_equals_conv_then_relu(C, F, H, W, stride):
    x, w, b = _layer(C, F, H, W)
    with mock.patch.object(wg, "winograd_conv3x3", wraps=wg.winograd_conv3x3) as spy:
        y, cache = conv2d_relu_forward(x, w, b, stride, 1)
    assert spy.called == (default_config().uses_winograd(C) and stride == 1)
    z, conv_cache = conv2d_forward(x, w, b, stride, 1)
    y_ref, relu_cache = relu_forward(z)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)

    dy = np.random.default_rng(5).standard_normal(y.shape)
    dx_ref, dw_ref, db_ref = conv2d_backward(relu_backward(dy, relu_cache), conv_cache, True)
    dx, none_w, none_b = conv2d_relu_backward(dy, cache)
    assert none_w is None and none_b is None
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)
    dx2, dw, db = conv2d_relu_backward(dy, cache, weight_grads=True)
    np.testing.assert_allclose(dx2, dx_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=0, atol=1e-12)

    # relu=None: dy is already the gradient of the convolution's output
    dx_none, _, _ = conv2d_relu_backward(dy, cache._replace(relu=None))
    np.testing.assert_allclose(dx_none, conv2d_backward(dy, conv_cache)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("C, F, H, W, stride", CASES)
def test_conv_relu_gradient_matches_finite_differences(C, F, H, W, stride):
    x, w, b = _layer(C, F, H, W, seed=1)
    x = x[:1, :, : min(H, 6), : min(W, 6)].copy()
    dy = np.random.default_rng(2).standard_normal(conv2d_relu_forward(x, w, b, stride, 1)[0].shape)

    dx, _, _ = conv2d_relu_backward(dy, conv2d_relu_forward(x, w, b, stride, 1)[1])
    numeric = numerical_gradient(lambda v: conv2d_relu_forward(v, w, b, stride, 1)[0], x, dy)
    assert relative_error(dx, numeric) < 1e-6


def test_conv_relu_float32_keeps_float32():
    x, w, b = _layer(16, 4, 8, 8, dtype=np.float32)
    y, cache = conv2d_relu_forward(x, w, b)
    assert y.dtype == np.float32 and (y >= 0).all()
    assert conv2d_relu_backward(np.ones_like(y), cache)[0].dtype == np.float32


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), H=st.integers(2, 9), W=st.integers(2, 9),
       ties=st.booleans(), negative=st.booleans())
def test_relu_max_pool_backward_is_exactly_relu_then_pool_backward(seed, H, W, ties, negative):
    """dz of maxpool(relu(z)) from the pool's output alone == relu_backward(maxpool_backward)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, 3, H, W))
    if ties:
        z = np.round(z)  # many equal values, zeros included
    if negative:
        z[:, 0] = -np.abs(z[:, 0])  # whole windows <= 0: the pooled ReLU output is 0 there
    r, relu_cache = relu_forward(z)
    y, pool_cache = max_pool_forward(r, 2, 2)
    dy = rng.standard_normal(y.shape)
    expected = relu_backward(max_pool_backward(dy, pool_cache), relu_cache)
    got = relu_max_pool_backward(dy, ReluMaxPoolCache(pool_cache, y))
    np.testing.assert_array_equal(got, expected)


def test_relu_max_pool_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, 2, 6, 7))
    y, pool_cache = max_pool_forward(relu_forward(z)[0], 2, 2)
    dy = rng.standard_normal(y.shape)

    dz = relu_max_pool_backward(dy, ReluMaxPoolCache(pool_cache, y))
    numeric = numerical_gradient(lambda v: max_pool_forward(relu_forward(v)[0], 2, 2)[0], z, dy)
    assert relative_error(dz, numeric) < 1e-6


def test_relu_cache_is_the_output_not_a_copy():
    x, w, b = _layer(16, 4, 8, 8)
    y, cache = conv2d_relu_forward(x, w, b)
    assert isinstance(cache.relu, ReluCache) and cache.relu.mask is y
