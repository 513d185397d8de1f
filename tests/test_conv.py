"""conv2d: fast == loops, finite differences, dtypes, a hand-computed example, errors, CuPy."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.backend import cupy_or_none, gpu_available
from minist.execution import ExecutionConfig
from minist.layers import (
    conv2d_backward,
    conv2d_backward_loops,
    conv2d_forward,
    conv2d_forward_loops,
)

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")


@st.composite
def conv_problems(draw, max_hw: int = 7):
    """A random convolution whose output is at least 1x1: (x, w, b, stride, pad) in float64."""
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 3))
    F = draw(st.integers(1, 3))
    KH = draw(st.integers(1, 3))
    KW = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, KH - 2 * pad), max_hw))
    W = draw(st.integers(max(1, KW - 2 * pad), max_hw))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, KH, KW))
    b = rng.standard_normal(F)
    return x, w, b, stride, pad


# The fast path building its columns one output row at a time (several chunks).
SMALL_CHUNKS = ExecutionConfig(im2col_block_bytes=1)


@settings(max_examples=100, deadline=None)
@given(problem=conv_problems(), small_chunks=st.booleans())
def test_fast_equals_loops(problem, small_chunks):
    x, w, b, stride, pad = problem
    config = SMALL_CHUNKS if small_chunks else None  # the cache carries it to the backward
    y, cache = conv2d_forward(x, w, b, stride, pad, config=config)
    y_ref, cache_ref = conv2d_forward_loops(x, w, b, stride, pad)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-10)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    got = conv2d_backward(dy, cache, weight_grads=True)
    ref = conv2d_backward_loops(dy, cache_ref, weight_grads=True)
    for g, r, name in zip(got, ref, ("dx", "dw", "db"), strict=True):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-10, err_msg=name)


def test_output_size_formula():
    x = np.zeros((1, 2, 11, 8))
    w = np.zeros((4, 2, 3, 2))
    y, _ = conv2d_forward(x, w, np.zeros(4), stride=3, pad=2)
    # Ho = (11 + 4 - 3) // 3 + 1 = 5, Wo = (8 + 4 - 2) // 3 + 1 = 4
    assert y.shape == (1, 4, 5, 4)


@settings(max_examples=20, deadline=None)
@given(problem=conv_problems(max_hw=5))
def test_gradients_match_finite_differences(problem):
    x, w, b, stride, pad = problem
    y, cache = conv2d_forward(x, w, b, stride, pad)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache, weight_grads=True)
    num_dx = numerical_gradient(lambda x_: conv2d_forward(x_, w, b, stride, pad)[0], x, dy)
    num_dw = numerical_gradient(lambda w_: conv2d_forward(x, w_, b, stride, pad)[0], w, dy)
    num_db = numerical_gradient(lambda b_: conv2d_forward(x, w, b_, stride, pad)[0], b, dy)
    assert relative_error(dx, num_dx) < 1e-6
    assert relative_error(dw, num_dw) < 1e-6
    assert relative_error(db, num_db) < 1e-6


def test_loops_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 2, 3)), rng.random(3)
    y, cache = conv2d_forward_loops(x, w, b, stride=2, pad=1)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward_loops(dy, cache, weight_grads=True)
    f = conv2d_forward_loops
    assert relative_error(dx, numerical_gradient(lambda v: f(v, w, b, 2, 1)[0], x, dy)) < 1e-6
    assert relative_error(dw, numerical_gradient(lambda v: f(x, v, b, 2, 1)[0], w, dy)) < 1e-6
    assert relative_error(db, numerical_gradient(lambda v: f(x, w, v, 2, 1)[0], b, dy)) < 1e-6


@pytest.mark.parametrize("backward", [conv2d_backward, conv2d_backward_loops])
def test_weight_grads_false_gives_only_dx(backward):
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)), rng.random(3)
    y, cache = conv2d_forward(x, w, b)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = backward(dy, cache)
    assert dw is None and db is None
    np.testing.assert_allclose(dx, backward(dy, cache, weight_grads=True)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("forward", "backward"),
    [(conv2d_forward, conv2d_backward), (conv2d_forward_loops, conv2d_backward_loops)],
)
def test_float32_in_float32_out(forward, backward):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 6, 5), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    b = rng.standard_normal(4, dtype=np.float32)
    y, cache = forward(x, w, b, 1, 1)
    assert y.dtype == np.float32
    dx, dw, db = backward(np.ones_like(y), cache, weight_grads=True)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    y64, _ = conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5)


def test_float64_weights_follow_float32_input():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 4, 4), dtype=np.float32)
    y, _ = conv2d_forward(x, rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2))
    assert y.dtype == np.float32


@pytest.mark.parametrize("forward", [conv2d_forward, conv2d_forward_loops])
def test_hand_computed_3x3(forward):
    """y[n,f,i,j] = b[f] + sum_{c,p,q} w[f,c,p,q] x_pad[n,c,i+p,j+q], spelled out by hand."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 1, 3, 3))
    w = rng.standard_normal((1, 1, 3, 3))
    b = np.array([0.25])
    y, _ = forward(x, w, b, stride=1, pad=1)
    X, K = x[0, 0], w[0, 0]
    # centre: the kernel lies exactly on the image
    centre = sum(K[p, q] * X[p, q] for p in range(3) for q in range(3)) + 0.25
    # top-left corner: row -1 and column -1 are padding zeros, so only K[1:, 1:] meets X[:2, :2]
    corner = sum(K[p, q] * X[p - 1, q - 1] for p in (1, 2) for q in (1, 2)) + 0.25
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 1, 1] == pytest.approx(centre, abs=1e-12)
    assert y[0, 0, 0, 0] == pytest.approx(corner, abs=1e-12)


@pytest.mark.parametrize("forward", [conv2d_forward, conv2d_forward_loops])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "pad", "message"),
    [
        ((2, 3, 5), (4, 3, 3, 3), 1, 1, "x must be 4-D"),
        ((1, 3, 5, 5), (4, 3, 3), 1, 1, "w must be 4-D"),
        ((1, 2, 5, 5), (4, 3, 3, 3), 1, 1, "channel mismatch"),
        ((1, 3, 2, 5), (4, 3, 3, 3), 1, 0, "output size"),
        ((1, 3, 5, 5), (4, 3, 3, 3), 0, 1, "stride"),
        ((1, 3, 5, 5), (4, 3, 3, 3), 1, -1, "pad"),
    ],
)
def test_invalid_arguments_raise_value_error(forward, x_shape, w_shape, stride, pad, message):
    with pytest.raises(ValueError, match=message):
        forward(np.zeros(x_shape), np.zeros(w_shape), np.zeros(w_shape[0]), stride, pad)


def test_bias_shape_is_checked():
    with pytest.raises(ValueError, match="b must have shape"):
        conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((4, 3, 3, 3)), np.zeros(3))


@gpu
@needs_gpu
@settings(max_examples=15, deadline=None)
@given(problem=conv_problems())
def test_cupy_matches_numpy(problem):
    cp = cupy_or_none()
    x, w, b, stride, pad = problem
    y, cache = conv2d_forward(x, w, b, stride, pad)
    dy = np.random.default_rng(8).standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache, weight_grads=True)
    y_gpu, cache_gpu = conv2d_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), stride, pad)
    grads_gpu = conv2d_backward(cp.asarray(dy), cache_gpu, weight_grads=True)
    assert isinstance(y_gpu, cp.ndarray)
    np.testing.assert_allclose(y_gpu.get(), y, rtol=0, atol=1e-10)
    for g_gpu, g in zip(grads_gpu, (dx, dw, db), strict=True):
        assert isinstance(g_gpu, cp.ndarray)
        np.testing.assert_allclose(g_gpu.get(), g, rtol=0, atol=1e-10)


@gpu
@needs_gpu
def test_cupy_float32_vgg_shape():
    cp = cupy_or_none()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 16, 32, 32), dtype=np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    y, cache = conv2d_forward(x, w, b)
    dx, _, _ = conv2d_backward(np.ones_like(y), cache)
    y_gpu, cache_gpu = conv2d_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b))
    dx_gpu, _, _ = conv2d_backward(cp.ones_like(y_gpu), cache_gpu)
    assert y_gpu.dtype == dx_gpu.dtype == cp.float32
    np.testing.assert_allclose(y_gpu.get(), y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx_gpu.get(), dx, rtol=1e-4, atol=1e-4)
