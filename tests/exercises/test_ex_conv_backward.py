"""Exercise ex_conv_backward: ``minist.layers.conv.conv2d_backward_loops`` (lesson 01).

``dx``, ``dw`` and ``db`` are checked by central finite differences of the (fast) forward pass
in float64, and against the fast col2im backward (``conv2d_backward``, not an exercise).
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_gradient, expect_shape
from gradcheck import numerical_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_threads import one_numba_thread  # noqa: F401 (autouse fixture)

from minist.layers.conv import conv2d_backward, conv2d_backward_loops, conv2d_forward

pytestmark = pytest.mark.ex_conv_backward


@pytest.mark.parametrize(("stride", "pad", "kernel"), [(1, 1, 3), (2, 1, 3), (2, 0, 2), (1, 2, 3)])
def test_gradients_match_finite_differences(stride, pad, kernel):
    rng = np.random.default_rng(stride * 10 + pad)
    x = rng.standard_normal((2, 2, 5, 5))
    w = rng.standard_normal((3, 2, kernel, kernel))
    b = rng.standard_normal(3)
    y, cache = conv2d_forward(x, w, b, stride, pad)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward_loops(dy, cache, weight_grads=True)
    inputs = {"x": x, "w": w, "stride": stride, "pad": pad}
    for name, got, like in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
        expect_shape(got, like.shape, what=name, inputs=inputs)

    dx_num = numerical_gradient(lambda v: conv2d_forward(v, w, b, stride, pad)[0], x, dy)
    dw_num = numerical_gradient(lambda v: conv2d_forward(x, v, b, stride, pad)[0], w, dy)
    db_num = numerical_gradient(lambda v: conv2d_forward(x, w, v, stride, pad)[0], b, dy)
    factors = {"N": x.shape[0], "K": kernel}
    expect_gradient(dx, dx_num, what="dx", inputs=inputs, tol=1e-7, factors=factors)
    expect_gradient(dw, dw_num, what="dw", inputs=inputs, tol=1e-7, factors=factors)
    expect_gradient(db, db_num, what="db", inputs=inputs, tol=1e-7, factors=factors)


@settings(max_examples=30, deadline=None)
@given(
    N=st.integers(1, 2), C=st.integers(1, 3), F=st.integers(1, 3), K=st.integers(1, 3),
    H=st.integers(3, 6), W=st.integers(3, 6), stride=st.integers(1, 3), pad=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_loops_equal_the_fast_col2im_version(N, C, F, K, H, W, stride, pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, K, K))
    y, cache = conv2d_forward(x, w, rng.standard_normal(F), stride, pad)
    dy = rng.standard_normal(y.shape)
    inputs = {"x": x, "w": w, "stride": stride, "pad": pad}
    for name, got, want in zip(("dx", "dw", "db"),
                               conv2d_backward_loops(dy, cache, weight_grads=True),
                               conv2d_backward(dy, cache, weight_grads=True), strict=True):
        expect_close(got, want, what=name, against="the fast col2im backward's", inputs=inputs,
                     rtol=0, atol=1e-10)


def test_without_weight_grads_only_dx():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 4, 4))
    y, cache = conv2d_forward(x, rng.standard_normal((2, 2, 3, 3)), np.zeros(2), 1, 1)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward_loops(dy, cache)
    expect(dw is None and db is None, "with weight_grads=False, dw and db must be None")
    expect_close(dx, conv2d_backward(dy, cache)[0], what="dx", against="the fast backward's",
                 inputs={"dy": dy}, rtol=0, atol=1e-10)
