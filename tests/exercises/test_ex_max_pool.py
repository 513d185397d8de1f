"""Exercise ex_max_pool: ``max_pool_forward_loops`` and ``max_pool_backward_loops`` (lesson 02).

Checked against the fast strided version (``max_pool_forward``/``max_pool_backward``, not an
exercise), by finite differences where the maximum is unique, and by the documented rules: the
first maximum in raster order wins a tie; floor mode drops windows past the edge; the caches of
the two versions are interchangeable.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
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
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, y_fast)
    np.testing.assert_array_equal(cache.argmax, cache_fast.argmax)  # same tie rule
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx = max_pool_backward_loops(dy, cache)
    np.testing.assert_allclose(dx, max_pool_backward(dy, cache_fast), rtol=0, atol=1e-12)
    # either backward accepts either forward's cache
    np.testing.assert_allclose(max_pool_backward_loops(dy, cache_fast), dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.sum(dx), np.sum(dy), rtol=1e-10, atol=1e-10)  # routed, not lost


@settings(max_examples=15, deadline=None)
@given(problem=pools(ties=False))
def test_backward_matches_finite_differences(problem):
    x, k, s = problem
    y, cache = max_pool_forward_loops(x, k, s)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx = max_pool_backward_loops(dy, cache)
    assert dx.shape == x.shape
    numeric = numerical_gradient(lambda v: max_pool_forward(v, k, s)[0], x, dy)
    assert relative_error(dx, numeric) < 1e-8


def test_tie_goes_to_the_first_maximum_in_raster_order():
    x = np.array([[[[1.0, 3.0, 0.0, 0.0],
                    [3.0, 3.0, 0.0, 0.0]]]])  # window 1: three 3s; window 2: all zeros
    y, cache = max_pool_forward_loops(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[3.0, 0.0]]]])
    dx = max_pool_backward_loops(np.array([[[[10.0, 20.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 10.0, 20.0, 0.0],
                                         [0.0, 0.0, 0.0, 0.0]]]])


def test_floor_mode_drops_the_last_row_and_column():
    x = np.arange(25.0).reshape(1, 1, 5, 5)  # increasing: every window's max is bottom-right
    y, cache = max_pool_forward_loops(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[6.0, 8.0], [16.0, 18.0]]]])
    dx = max_pool_backward_loops(np.ones_like(y), cache)
    assert dx.shape == x.shape
    assert np.all(dx[..., 4, :] == 0) and np.all(dx[..., :, 4] == 0)
    assert dx.sum() == 4


def test_overlapping_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the centre is the max of all four 2x2 windows at stride 1
    y, cache = max_pool_forward_loops(x, 2, 1)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 5.0))
    dx = max_pool_backward_loops(np.ones((1, 1, 2, 2)), cache)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0
