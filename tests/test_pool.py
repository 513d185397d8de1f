"""Max/avg pooling: fast == loops, Numba == slices, finite differences, ties, floor mode,
dtypes, errors, CuPy."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.backend import cupy_or_none, gpu_available
from minist.execution import ExecutionConfig
from minist.layers import (
    avg_pool_backward,
    avg_pool_backward_loops,
    avg_pool_forward,
    avg_pool_forward_loops,
    max_pool_backward,
    max_pool_backward_loops,
    max_pool_forward,
    max_pool_forward_loops,
    pool_backward,
    pool_forward,
)

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")

FAST = {"max": (max_pool_forward, max_pool_backward), "avg": (avg_pool_forward, avg_pool_backward)}
LOOPS = {
    "max": (max_pool_forward_loops, max_pool_backward_loops),
    "avg": (avg_pool_forward_loops, avg_pool_backward_loops),
}
BOTH = [FAST["max"], LOOPS["max"]]


@st.composite
def pool_problems(draw, max_hw: int = 8):
    """(x, kernel, stride) with output >= 1; x holds distinct values 0.1 apart (float64).

    Distinct, well-separated values keep every argmax unique and stable under x +- h. Half the
    draws use stride == kernel (non-overlapping windows, as in VGG), the rest any stride.
    """
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 3))
    stride = draw(st.one_of(st.just(kernel), st.integers(1, 3)))
    H = draw(st.integers(kernel, max_hw))
    W = draw(st.integers(kernel, max_hw))
    seed = draw(st.integers(0, 2**32 - 1))
    size = N * C * H * W
    x = np.random.default_rng(seed).permutation(size).reshape(N, C, H, W) * 0.1 - size * 0.05
    return x, kernel, stride


@settings(max_examples=100, deadline=None)
@given(problem=pool_problems(), mode=st.sampled_from(["max", "avg"]), ties=st.booleans())
def test_fast_equals_loops(problem, mode, ties):
    x, kernel, stride = problem
    if ties:  # few distinct values: many windows hold their maximum more than once
        x = np.round(x) % 3
    fast_forward, fast_backward = FAST[mode]
    loop_forward, loop_backward = LOOPS[mode]
    y, cache = fast_forward(x, kernel, stride)
    y_ref, cache_ref = loop_forward(x, kernel, stride)
    N, C, H, W = x.shape
    assert y.shape == y_ref.shape == (N, C, (H - kernel) // stride + 1, (W - kernel) // stride + 1)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-10)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx = fast_backward(dy, cache)
    np.testing.assert_allclose(dx, loop_backward(dy, cache_ref), rtol=0, atol=1e-10)
    # the two versions build the same cache, so each backward accepts the other's cache
    np.testing.assert_allclose(dx, loop_backward(dy, cache), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fast_backward(dy, cache_ref), dx, rtol=0, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(problem=pool_problems(max_hw=6), mode=st.sampled_from(["max", "avg"]))
def test_gradient_matches_finite_differences(problem, mode):
    x, kernel, stride = problem
    forward, backward = FAST[mode]
    y, cache = forward(x, kernel, stride)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    numeric = numerical_gradient(lambda v: forward(v, kernel, stride)[0], x, dy)
    assert relative_error(backward(dy, cache), numeric) < 1e-6


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_loops_gradient_matches_finite_differences(mode):
    x = np.random.default_rng(2).permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) * 0.1
    forward, backward = LOOPS[mode]
    y, cache = forward(x, 3, 2)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    numeric = numerical_gradient(lambda v: forward(v, 3, 2)[0], x, dy)
    assert relative_error(backward(dy, cache), numeric) < 1e-6


@pytest.mark.parametrize(("forward", "backward"), BOTH)
def test_max_tie_gradient_goes_to_first_maximum_in_raster_order(forward, backward):
    # window 1 (2x2, stride 2): max 5 at (0,1) and (1,0) -> (0,1) is first in raster order
    # window 2: all four equal -> (0,0)
    x = np.array([[[[1.0, 5.0, 7.0, 7.0],
                    [5.0, 2.0, 7.0, 7.0]]]])
    y, cache = forward(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[5.0, 7.0]]]])
    dx = backward(np.array([[[[10.0, 20.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 10.0, 20.0, 0.0],
                                         [0.0, 0.0, 0.0, 0.0]]]])


@pytest.mark.parametrize(("forward", "backward"), BOTH)
def test_max_tie_rule_with_overlapping_windows(forward, backward):
    # kernel 3, stride 2: a 3x3 window whose maximum 4 appears at
    # (0,2), (1,0), (2,2) -> the gradient goes to (0,2)
    x = np.array([[[[0.0, 1.0, 4.0],
                    [4.0, 2.0, 3.0],
                    [1.0, 0.0, 4.0]]]])
    y, cache = forward(x, 3, 2)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 4.0
    dx = backward(np.ones((1, 1, 1, 1)), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 2] = 1.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("impl", [FAST, LOOPS], ids=["fast", "loops"])
def test_odd_size_floor_mode(mode, impl):
    """5x7 with 2x2/2: output 2x3; row 4 and column 6 are never pooled and get zero gradient."""
    forward, backward = impl[mode]
    x = np.random.default_rng(4).permutation(2 * 3 * 5 * 7).reshape(2, 3, 5, 7) + 1.0
    y, cache = forward(x, 2, 2)
    assert y.shape == (2, 3, 2, 3)
    core = x[:, :, :4, :6].reshape(2, 3, 2, 2, 3, 2)
    reduce = np.max if mode == "max" else np.mean
    np.testing.assert_allclose(y, reduce(core, axis=(3, 5)), rtol=0, atol=1e-12)
    dx = backward(np.ones_like(y), cache)
    assert dx.shape == x.shape
    assert np.all(dx[:, :, 4, :] == 0) and np.all(dx[:, :, :, 6] == 0)
    if mode == "avg":  # every pooled element gets 1/4
        np.testing.assert_allclose(dx[:, :, :4, :6], 0.25, rtol=0, atol=1e-15)
    else:  # exactly one element per window gets the whole gradient 1
        assert np.count_nonzero(dx) == y.size and dx.sum() == y.size


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("impl", [FAST, LOOPS], ids=["fast", "loops"])
@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 2)])
def test_float32_in_float32_out(mode, impl, kernel, stride):
    forward, backward = impl[mode]
    x = np.random.default_rng(5).standard_normal((1, 3, 6, 7)).astype(np.float32)
    y, cache = forward(x, kernel, stride)
    assert y.dtype == np.float32
    assert backward(np.ones_like(y), cache).dtype == np.float32


def test_max_cache_is_a_small_index_array_not_x():
    x = np.random.default_rng(6).standard_normal((1, 4, 8, 8)).astype(np.float32)
    for kernel, stride in [(2, 2), (3, 1)]:
        y, cache = max_pool_forward(x, kernel, stride)
        assert cache.argmax.shape == y.shape
        assert cache.argmax.dtype == np.uint8
    assert avg_pool_forward(x)[1].argmax is None


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_forward_dispatches_and_cache_remembers_mode(mode):
    x = np.random.default_rng(7).standard_normal((2, 2, 6, 5))
    y, cache = pool_forward(x, mode, kernel=3, stride=1)
    y_direct, _ = FAST[mode][0](x, 3, 1)
    assert cache.mode == mode
    np.testing.assert_array_equal(y, y_direct)
    dy = np.random.default_rng(8).standard_normal(y.shape)
    np.testing.assert_array_equal(pool_backward(dy, cache), FAST[mode][1](dy, cache))


def test_pool_forward_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        pool_forward(np.zeros((1, 1, 4, 4)), "min")


@pytest.mark.parametrize("forward", [f for f, _ in (*FAST.values(), *LOOPS.values())])
@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "message"),
    [
        ((1, 4, 4), 2, 2, "4-D"),
        ((1, 1, 1, 4), 2, 2, "output size"),
        ((1, 1, 4, 4), 0, 1, "kernel"),
        ((1, 1, 4, 4), 2, 0, "stride"),
    ],
)
def test_invalid_arguments_raise_value_error(forward, shape, kernel, stride, message):
    with pytest.raises(ValueError, match=message):
        forward(np.zeros(shape), kernel, stride)


@pytest.mark.gpu
@needs_gpu
@settings(max_examples=20, deadline=None)
@given(problem=pool_problems(), mode=st.sampled_from(["max", "avg"]), ties=st.booleans(),
       cuda_kernels=st.booleans())
def test_cupy_matches_numpy(problem, mode, ties, cuda_kernels):
    """CUDA kernels and the slices version on CuPy, against NumPy (ties, overlapping windows)."""
    cp = cupy_or_none()
    x, kernel, stride = problem
    if ties:
        x = np.round(x) % 3
    forward, backward = FAST[mode]
    y, cache = forward(x, kernel, stride)
    dy = np.random.default_rng(9).standard_normal(y.shape)
    config = ExecutionConfig(device="cuda", kernels=cuda_kernels)
    y_gpu, cache_gpu = pool_forward(cp.asarray(x), mode, kernel, stride, config=config)
    dx_gpu = pool_backward(cp.asarray(dy), cache_gpu)
    assert isinstance(y_gpu, cp.ndarray) and isinstance(dx_gpu, cp.ndarray)
    np.testing.assert_allclose(y_gpu.get(), y, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx_gpu.get(), backward(dy, cache), rtol=0, atol=1e-10)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_cupy_float32(mode):
    cp = cupy_or_none()
    forward, backward = FAST[mode]
    x = np.random.default_rng(10).standard_normal((1, 8, 16, 16)).astype(np.float32)
    y_gpu, cache_gpu = forward(cp.asarray(x))
    dx_gpu = backward(cp.ones_like(y_gpu), cache_gpu)
    assert y_gpu.dtype == dx_gpu.dtype == cp.float32
    y, cache = forward(x)
    # float32 sums may be ordered differently on the GPU: compare to float32 rounding
    np.testing.assert_allclose(y_gpu.get(), y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx_gpu.get(), backward(np.ones_like(y), cache), rtol=1e-6, atol=0)


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
    y_ref, cache_ref = max_pool_forward(x, kernel, stride, config=ExecutionConfig(kernels=False))
    dx_ref = max_pool_backward(dy, cache_ref)  # the cache says: slices
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(cache.argmax, cache_ref.argmax)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-6)
    assert y.dtype == dx.dtype == np.float32


def test_parallel_max_pool_kernels_equal_the_serial_ones():
    """ExecutionConfig(parallel_pooling=True): the Numba drivers split the channel planes
    between threads (large arrays only); every output is still computed by one plane's loop."""
    x = np.random.default_rng(11).standard_normal((1, 64, 40, 36)).astype(np.float32)
    parallel = ExecutionConfig(parallel_pooling=True)
    y, cache = max_pool_forward(x, 2, 2)
    y_par, cache_par = max_pool_forward(x, 2, 2, config=parallel)
    dy = np.random.default_rng(12).standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(y_par, y)
    np.testing.assert_array_equal(cache_par.argmax, cache.argmax)
    np.testing.assert_array_equal(max_pool_backward(dy, cache_par), max_pool_backward(dy, cache))
