"""Exercise ex_conv_forward: ``minist.layers.conv.conv2d_forward_loops`` (lesson 01).

The loops are checked against the fast im2col + GEMM path (``conv2d_forward``, not an exercise),
and against properties that hold for any correct convolution: a centred delta kernel copies
the input, the output is linear in ``x`` and affine in ``b``, and a 1x1 kernel mixes channels
only.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect_close, expect_dtype, expect_shape
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_threads import one_numba_thread  # noqa: F401 (autouse fixture)
from rounding import two_orders

from minist.layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_loops

pytestmark = pytest.mark.ex_conv_forward


@st.composite
def problems(draw):
    """(x, w, b, stride, pad) in float64 with an output of at least 1x1."""
    K = draw(st.integers(1, 3))
    stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, K - 2 * pad), 6))
    W = draw(st.integers(max(1, K - 2 * pad), 6))
    N, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, K, K))
    b = rng.standard_normal(F)
    return x, w, b, stride, pad


@settings(max_examples=30, deadline=None)
@given(problem=problems())
def test_loops_equal_the_fast_im2col_version(problem):
    x, w, b, stride, pad = problem
    y, cache = conv2d_forward_loops(x, w, b, stride, pad)
    y_fast, _ = conv2d_forward(x, w, b, stride, pad)
    inputs = {"x": x, "w": w, "stride": stride, "pad": pad}
    expect_shape(y, y_fast.shape, what="y", inputs=inputs)
    expect_dtype(y, x.dtype, what="y", input_name="x")
    expect_close(y, y_fast, what="y", against="the fast im2col convolution", inputs=inputs,
                 rtol=0, atol=1e-10)
    # the cache is the layer's contract: the fast backward must be able to use it
    dy = np.random.default_rng(0).standard_normal(y.shape)
    _, cache_fast = conv2d_forward(x, w, b, stride, pad)
    for name, got, want in zip(("dx", "dw", "db"), conv2d_backward(dy, cache, weight_grads=True),
                               conv2d_backward(dy, cache_fast, weight_grads=True), strict=True):
        expect_close(got, want, what=f"{name} from your cache",
                     against="the same from the fast forward's cache (return Conv2dCache(x, w, "
                     "stride, pad))", inputs=inputs, rtol=0, atol=1e-10)


def test_centred_delta_kernel_copies_the_input():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 4))
    w = np.zeros((3, 3, 3, 3))
    for c in range(3):
        w[c, c, 1, 1] = 1.0  # output channel c = input channel c, unshifted
    y, _ = conv2d_forward_loops(x, w, np.zeros(3), stride=1, pad=1)
    # one non-zero term in each output's sum of C * 3 * 3 products and a bias: any order of
    # the sum gives x to within rounding (in fact exactly)
    expect_close(y, x, what="y", against="x (a centred delta kernel, pad 1, copies the input)",
                 inputs={"x": x}, rtol=0, atol=two_orders(3 * 3 * 3 + 1, x))


def test_linear_in_x_and_bias_adds_per_filter():
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((2, 1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    zero = np.zeros(3)
    y1, _ = conv2d_forward_loops(x1, w, zero, 2, 1)
    y2, _ = conv2d_forward_loops(x2, w, zero, 2, 1)
    y12, _ = conv2d_forward_loops(2.0 * x1 - 3.0 * x2, w, zero, 2, 1)
    inputs = {"x": x1, "w": w, "stride": 2, "pad": 1}
    expect_close(y12, 2.0 * y1 - 3.0 * y2, what="y(2 x1 - 3 x2)", against="2 y(x1) - 3 y(x2)",
                 inputs=inputs, rtol=1e-12, atol=1e-12)
    yb, _ = conv2d_forward_loops(x1, w, b, 2, 1)
    expect_close(yb - y1, np.broadcast_to(b[None, :, None, None], y1.shape),
                 what="y with bias - y without", against="b, once per filter", inputs=inputs,
                 rtol=1e-12, atol=1e-12)


def test_one_by_one_kernel_mixes_channels_at_each_pixel():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 4, 6))
    w = rng.standard_normal((2, 3, 1, 1))
    y, _ = conv2d_forward_loops(x, w, np.zeros(2), stride=1, pad=0)
    mixed = np.tensordot(w[:, :, 0, 0], x[0], axes=(1, 0))[None]  # (F, C) . (C, H, W)
    expect_close(y, mixed, what="y of a 1x1 kernel", against="w mixing the channels per pixel",
                 inputs={"x": x, "w": w}, rtol=1e-12, atol=1e-12)


def test_float32_stays_float32():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    y, _ = conv2d_forward_loops(x, w, np.zeros(2, np.float32), 1, 1)
    y_fast, _ = conv2d_forward(x, w, np.zeros(2, np.float32), 1, 1)
    expect_dtype(y, np.float32, what="y", input_name="x", hint="compute in x's dtype")
    expect_close(y, y_fast, what="y", against="the fast convolution", inputs={"x": x},
                 rtol=1e-5, atol=1e-5)
