"""Exercise ex_max_pool: ``max_pool_forward_loops`` and ``max_pool_backward_loops`` (lesson 02).

Checked against the fast strided version (``max_pool_forward``/``max_pool_backward``, not an
exercise), by finite differences where the maximum is unique, and by the documented rules: the
first maximum in raster order wins a tie; floor mode drops windows past the edge; the caches of
the two versions are interchangeable.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_dtype, expect_gradient, expect_shape
from gradcheck import numerical_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_threads import one_numba_thread  # noqa: F401 (autouse fixture)

from minist.layers.pool import (
    max_pool_backward,
    max_pool_backward_loops,
    max_pool_forward,
    max_pool_forward_loops,
)

pytestmark = pytest.mark.ex_max_pool


@st.composite
def pools(draw, ties: bool):
    """(x, kernel, stride): float64 input, with many ties when ``ties`` (small integers)."""
    k, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H, W = draw(st.integers(k, 7)), draw(st.integers(k, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x_shape = (N, C, H, W)
    if ties:
        x = rng.integers(-2, 3, x_shape).astype(np.float64)
    else:
        size = N * C * H * W  # distinct values in [0, 1), at least 0.5 / size apart
        x = (rng.permutation(size).reshape(N, C, H, W) + rng.uniform(0, 0.5, x_shape)) / size
    return x, k, s


@settings(max_examples=40, deadline=None)
@given(problem=pools(ties=True))
def test_loops_equal_the_fast_version_with_ties(problem):
    x, k, s = problem
    y, cache = max_pool_forward_loops(x, k, s)
    y_fast, cache_fast = max_pool_forward(x, k, s)
    inputs = {"x": x, "kernel": k, "stride": s}
    expect_shape(y, y_fast.shape, what="y", inputs=inputs)
    expect_dtype(y, x.dtype, what="y", input_name="x")
    expect_close(y, y_fast, what="y", against="the fast max pooling", inputs=inputs, rtol=0)
    expect_close(cache.argmax, cache_fast.argmax, what="argmax",
                 against="the fast version's (the first maximum in raster order, t = p k + q)",
                 inputs=inputs, rtol=0)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx = max_pool_backward_loops(dy, cache)
    expect_close(dx, max_pool_backward(dy, cache_fast), what="dx", against="the fast backward's",
                 inputs=inputs, rtol=0, atol=1e-12)
    # either backward accepts either forward's cache
    expect_close(max_pool_backward_loops(dy, cache_fast), dx, what="dx from the fast cache",
                 against="dx from yours", inputs=inputs, rtol=0, atol=1e-12)
    expect_close(np.sum(dx), np.sum(dy), what="sum of dx", against="sum of dy (routed, not lost)",
                 inputs=inputs, rtol=1e-10, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(problem=pools(ties=False))
def test_backward_matches_finite_differences(problem):
    x, k, s = problem
    y, cache = max_pool_forward_loops(x, k, s)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx = max_pool_backward_loops(dy, cache)
    inputs = {"x": x, "kernel": k, "stride": s}
    expect_shape(dx, x.shape, what="dx", inputs=inputs)
    numeric = numerical_gradient(lambda v: max_pool_forward(v, k, s)[0], x, dy)
    expect_gradient(dx, numeric, what="dx", inputs=inputs, tol=1e-8, factors={"k": k})


def test_tie_goes_to_the_first_maximum_in_raster_order():
    x = np.array([[[[1.0, 3.0, 0.0, 0.0],
                    [3.0, 3.0, 0.0, 0.0]]]])  # window 1: three 3s; window 2: all zeros
    y, cache = max_pool_forward_loops(x, 2, 2)
    expect_close(y, [[[[3.0, 0.0]]]], what="y", against="the window maxima", inputs={"x": x},
                 rtol=0)
    dx = max_pool_backward_loops(np.array([[[[10.0, 20.0]]]]), cache)
    expect_close(dx, [[[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]], what="dx",
                 against="each window's gradient at its first maximum in raster order",
                 inputs={"x": x}, rtol=0)


def test_floor_mode_drops_the_last_row_and_column():
    x = np.arange(25.0).reshape(1, 1, 5, 5)  # increasing: every window's max is bottom-right
    y, cache = max_pool_forward_loops(x, 2, 2)
    expect_close(y, [[[[6.0, 8.0], [16.0, 18.0]]]], what="y of a 5x5 input",
                 against="2x2 maxima (floor mode drops the last row and column)",
                 inputs={"x": x}, rtol=0)
    dx = max_pool_backward_loops(np.ones_like(y), cache)
    expect_shape(dx, x.shape, what="dx", inputs={"x": x})
    expect(np.all(dx[..., 4, :] == 0) and np.all(dx[..., :, 4] == 0) and dx.sum() == 4,
           "dx of a 5x5 input: the last row and column are in no window and must get 0")


def test_overlapping_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the centre is the max of all four 2x2 windows at stride 1
    y, cache = max_pool_forward_loops(x, 2, 1)
    expect_close(y, np.full((1, 1, 2, 2), 5.0), what="y", against="the centre's 5 in every window",
                 inputs={"x": x, "stride": 1}, rtol=0)
    dx = max_pool_backward_loops(np.ones((1, 1, 2, 2)), cache)
    expect(dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0,
           f"dx at the centre is {dx[0, 0, 1, 1]:g}, expected 4: four overlapping windows (stride "
           "1) chose it, and their gradients add up")
