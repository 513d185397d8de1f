"""Winograd F(2x2, 3x3): == direct (im2col) convolution, both transform paths, float32 accuracy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.backend import cupy_or_none, gpu_available
from minist.layers import conv as conv_module
from minist.layers import conv2d_backward, conv2d_forward
from minist.layers import winograd as wg

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")
REPO = Path(__file__).resolve().parents[1]


def direct(x, w, b):
    """The im2col + GEMM convolution (Winograd switched off)."""
    with mock.patch.dict(conv_module.ALGORITHM, {"winograd": False}):
        y, cache = conv2d_forward(x, w, b, 1, 1)
    return y, cache


def direct_dx(dy, cache):
    with mock.patch.dict(conv_module.ALGORITHM, {"winograd": False}):
        dx, _, _ = conv2d_backward(dy, cache)
    return dx


@st.composite
def problems(draw, max_hw: int = 9):
    """(x, w, b, mask) in float64; odd and even sizes, 1x1 images, several tile blocks."""
    N, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    H, W = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, 3, 3))
    b = rng.standard_normal(F)
    mask = rng.standard_normal((N, F, H, W))
    return x, w, b, mask


def _paths(numba: bool, small_chunks: bool):
    chunks = {"cpu": 1} if small_chunks else {}
    return (
        mock.patch.dict(wg.USE_NUMBA, {"cpu": numba}),
        mock.patch.dict(wg.CHUNK_BYTES, chunks),
    )


@settings(max_examples=60, deadline=None)
@given(problem=problems(), numba=st.booleans(), small_chunks=st.booleans())
def test_winograd_equals_direct(problem, numba, small_chunks):
    x, w, b, mask = problem
    y_ref, cache = direct(x, w, b)
    dy = mask[:, :, :, :] * 0.5 + 0.25  # any upstream gradient of y's shape
    dx_ref = direct_dx(dy, cache)
    with _paths(numba, small_chunks)[0], _paths(numba, small_chunks)[1]:
        y = wg.winograd_conv3x3(x, w, b)
        dx = wg.winograd_conv3x3(dy, wg.flip_kernel(w))
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)


def test_conv2d_can_use_winograd_for_3x3_stride1_pad1():
    x = np.ones((1, 2, 4, 4))
    w, b = np.ones((3, 2, 3, 3)), np.zeros(3)
    with (
        mock.patch.dict(conv_module.ALGORITHM, {"winograd": True}),
        mock.patch.object(wg, "winograd_conv3x3", wraps=wg.winograd_conv3x3) as spy,
    ):
        conv2d_forward(x, w, b, 1, 1)
        assert spy.call_count == 1
        conv2d_forward(x, w, b, 2, 1)  # stride 2: im2col
        conv2d_forward(x, w, b, 1, 0)  # pad 0: im2col
        assert spy.call_count == 1


def test_weight_transform_is_g_w_g_transposed():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3, 3))
    U = wg.weight_transform(w).reshape(4, 4, 2, 3)
    for f in range(2):
        for c in range(3):
            np.testing.assert_allclose(U[:, :, f, c], wg._G @ w[f, c] @ wg._G.T, atol=1e-14)


@pytest.mark.parametrize("C, F, hw", [(64, 64, 32), (256, 128, 8)])
def test_float32_accuracy_against_float64_direct(C, F, hw):
    """float32 Winograd stays within a few ulp of the float64 direct result (He-scaled VGG layer).

    Error is measured relative to max |y| of the layer; im2col in float32 is measured the same
    way, and Winograd may be at most 4x worse than it (the report quotes both numbers).
    """
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((1, C, hw, hw)), 0)
    w = rng.standard_normal((F, C, 3, 3)) * np.sqrt(2 / (9 * C))
    b = rng.standard_normal(F) * 0.1
    y64, _ = direct(x, w, b)
    scale = np.abs(y64).max()
    x32, w32, b32 = x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)
    err_wino = np.abs(wg.winograd_conv3x3(x32, w32, b32) - y64).max() / scale
    err_direct = np.abs(direct(x32, w32, b32)[0] - y64).max() / scale
    assert err_wino < 1e-5
    assert err_wino < 4 * err_direct + 1e-7


def test_float32_in_float32_out():
    x = np.ones((1, 2, 5, 5), np.float32)
    y = wg.winograd_conv3x3(x, np.ones((3, 2, 3, 3)), np.zeros(3))
    assert y.dtype == np.float32


def test_kernels_without_jit_give_the_same_numbers():
    """NUMBA_DISABLE_JIT=1 runs the kernels as plain Python: still correct (tiny inputs)."""
    code = (
        "import numpy as np\n"
        "from unittest import mock\n"
        "from minist.layers import winograd as wg, max_pool_forward, max_pool_backward\n"
        "from minist.layers import pool\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((1, 2, 5, 4)); w = rng.standard_normal((3, 2, 3, 3))\n"
        "b = rng.standard_normal(3)\n"
        "y = wg.winograd_conv3x3(x, w, b)\n"
        "with mock.patch.dict(wg.USE_NUMBA, {'cpu': False}):\n"
        "    ref = wg.winograd_conv3x3(x, w, b)\n"
        "assert np.abs(y - ref).max() < 1e-12, 'winograd'\n"
        "p, c = max_pool_forward(x, 2, 2); dx = max_pool_backward(p, c)\n"
        "with mock.patch.dict(pool.USE_NUMBA, {'cpu': False}):\n"
        "    p2, c2 = max_pool_forward(x, 2, 2); dx2 = max_pool_backward(p2, c2)\n"
        "assert (p == p2).all() and (c.argmax == c2.argmax).all() and (dx == dx2).all(), 'pool'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.gpu
@needs_gpu
@settings(max_examples=20, deadline=None)
@given(problem=problems())
def test_cupy_matches_numpy(problem):
    cp = cupy_or_none()
    x, w, b, mask = problem
    y = wg.winograd_conv3x3(x, w, b)
    dx = wg.winograd_conv3x3(mask, wg.flip_kernel(w))
    y_gpu = wg.winograd_conv3x3(cp.asarray(x), cp.asarray(w), cp.asarray(b))
    dx_gpu = wg.winograd_conv3x3(cp.asarray(mask), wg.flip_kernel(cp.asarray(w)))
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(dx_gpu), dx, rtol=0, atol=1e-12)
