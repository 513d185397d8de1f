"""Winograd F(2x2, 3x3) and F(4x4, 3x3): == direct (im2col) convolution on every path (Numba and
slices, one and several threads, small blocks), fused ReLU and ReLU-backward mask, the weight
cache, and float32 accuracy against float64."""

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
from rounding import winograd_float32_tolerance

from minist import threads
from minist.backend import cupy_or_none, gpu_available
from minist.execution import ExecutionConfig
from minist.layers import conv2d_backward, conv2d_forward
from minist.layers import winograd as wg

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")
REPO = Path(__file__).resolve().parents[1]
IM2COL = ExecutionConfig(winograd=False)


def direct(x, w, b):
    """The im2col + GEMM convolution (Winograd switched off)."""
    return conv2d_forward(x, w, b, 1, 1, config=IM2COL)


def direct_dx(dy, cache):
    dx, _, _ = conv2d_backward(dy, cache)  # the cache carries the im2col config
    return dx


@st.composite
def problems(draw, max_hw: int = 11):
    """(x, w, b, mask) in float64; odd and even sizes, 1x1 images, several tile blocks."""
    N, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    H, W = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, 3, 3))
    b = rng.standard_normal(F)
    mask = rng.standard_normal((N, F, H, W))
    return x, w, b, mask


def path(numba: bool, small_blocks: bool, workers: int) -> ExecutionConfig:
    """A code path, as an execution config: Numba kernels or NumPy slices; blocks of one tile row
    or as big as they come; ``workers`` CPU threads each running whole blocks (forced on)."""
    config = ExecutionConfig(kernels=numba, threads=workers)
    if small_blocks:
        config = config.replace(winograd_block_bytes=1, pipeline_block_bytes=1)
    if workers > 1:
        config = config.replace(pipeline_min_blocks_per_thread=0)
    return config


@settings(max_examples=80, deadline=None)
@given(problem=problems(), m=st.sampled_from([2, 4]), numba=st.booleans(),
       small_blocks=st.booleans(), workers=st.sampled_from([1, 2, 3]))
def test_winograd_equals_direct(problem, m, numba, small_blocks, workers):
    """y, the fused ReLU, dx = dy * flip(w)^T and the masked dx all equal the direct versions."""
    x, w, b, mask = problem
    y_ref, cache = direct(x, w, b)
    dy = mask * 0.5 + 0.25  # any upstream gradient of y's shape
    dx_ref = direct_dx(dy, cache)
    dx_masked_ref = direct_dx(dy * (mask > 0), cache)
    config = path(numba, small_blocks, workers)
    y = wg.winograd_conv3x3(x, w, b, m=m, config=config)
    y_relu = wg.winograd_conv3x3(x, w, b, m=m, relu=True, config=config)
    dx = wg.winograd_conv3x3(dy, w, transpose=True, m=m, config=config)
    dx_masked = wg.winograd_conv3x3(dy, w, transpose=True, m=m, mask=mask, config=config)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-11)
    np.testing.assert_allclose(y_relu, np.maximum(y_ref, 0), rtol=0, atol=1e-11)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-11)
    np.testing.assert_allclose(dx_masked, dx_masked_ref, rtol=0, atol=1e-11)


def test_numba_and_slices_agree_on_a_vgg_sized_layer():
    """Both transform paths and the threaded blocks on a layer with many tile rows.

    Each path sums in its own order (the slices version another association, other blocks
    other GEMM shapes, for which BLAS picks its kernels by CPU model and thread count), so they
    agree to the float32 rounding bound of the computation (tests/rounding.py), not bit for bit.
    """
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 16, 67, 45)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32) * 0.1
    b = rng.standard_normal(24).astype(np.float32)
    for m in (2, 4):
        tolerance = winograd_float32_tolerance(x, w, b, m)
        ref = wg.winograd_conv3x3(x, w, b, m=m, relu=True)
        slices = wg.winograd_conv3x3(x, w, b, m=m, relu=True,
                                     config=path(numba=False, small_blocks=False, workers=1))
        threaded = wg.winograd_conv3x3(x, w, b, m=m, relu=True,
                                       config=path(numba=True, small_blocks=True, workers=2))
        for other in (slices, threaded):
            excess = np.abs(other.astype(np.float64) - ref) - tolerance
            assert excess.max() <= 0, (m, excess.max())
        # and the bound is tight enough to mean something: far below the outputs themselves
        assert np.median(tolerance) < 1e-3 * np.abs(ref).max()


def test_rounding_tolerance_catches_a_wrong_tile():
    """The bound is not so loose that a real mistake passes: one tile row computed from the
    wrong input rows is far outside it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32) * 0.1
    b = rng.standard_normal(8).astype(np.float32)
    y = wg.winograd_conv3x3(x, w, b, m=4)
    shifted = x.copy()
    shifted[:, :, 4:8] = x[:, :, 5:9]  # the rows of one tile row, off by one
    wrong = y.copy()
    wrong[:, :, 4:8] = wg.winograd_conv3x3(shifted, w, b, m=4)[:, :, 4:8]
    assert (np.abs(wrong.astype(np.float64) - y) > winograd_float32_tolerance(x, w, b, 4)).any()


def test_conv2d_uses_winograd_where_it_applies():
    x = np.ones((1, 16, 4, 4))
    w, b = np.ones((3, 16, 3, 3)), np.zeros(3)
    with mock.patch.object(wg, "winograd_conv3x3", wraps=wg.winograd_conv3x3) as spy:
        conv2d_forward(x, w, b, 1, 1)
        assert spy.call_count == 1
        conv2d_forward(x, w, b, 2, 1)  # stride 2: im2col
        conv2d_forward(x, w, b, 1, 0)  # pad 0: im2col
        conv2d_forward(x[:, :3], w[:, :3], b, 1, 1)  # 3 input channels (RGB): im2col
        assert spy.call_count == 1
        conv2d_forward(x, w, b, 1, 1, config=IM2COL)
        conv2d_forward(x, w, b, 1, 1, config=ExecutionConfig(winograd_min_channels=17))
        assert spy.call_count == 1


@pytest.mark.parametrize("m", [2, 4])
def test_weight_transform_is_g_w_g_transposed(m):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3, 3))
    G = wg.TRANSFORMS[m].G
    alpha = m + 2
    U = wg.weight_transform(w, m).reshape(alpha, alpha, 2, 3)
    for f in range(2):
        for c in range(3):
            np.testing.assert_allclose(U[:, :, f, c], G @ w[f, c] @ G.T, atol=1e-14)


@pytest.mark.parametrize("m", [2, 4])
def test_1d_algorithm_is_a_correlation(m):
    """y = A^T [(G g) * (B^T d)] gives the m outputs of the 3-tap correlation exactly."""
    BT, G, AT = wg.TRANSFORMS[m]
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    y = AT @ ((G @ g) * (BT @ d))
    np.testing.assert_allclose(y, [d[i : i + 3] @ g for i in range(m)], atol=1e-13)


def test_transformed_weights_are_kept_only_in_the_cache_handed_in():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 16, 3, 3)).astype(np.float32)
    assert wg.transformed_weights(w, m=4) is not wg.transformed_weights(w, m=4)  # no cache
    x = rng.standard_normal((1, 16, 6, 6)).astype(np.float32)
    y1 = wg.winograd_conv3x3(x, w)
    w *= 2  # a change is seen: nothing was kept
    np.testing.assert_allclose(wg.winograd_conv3x3(x, w), 2 * y1, rtol=1e-6, atol=1e-6)

    cache = {}
    u = wg.transformed_weights(w, m=4, weight_cache=cache)
    assert wg.transformed_weights(w, m=4, weight_cache=cache) is u
    assert wg.transformed_weights(w, transpose=True, m=4, weight_cache=cache) is not u
    assert wg.transformed_weights(w, m=2, weight_cache=cache).shape[0] == 16
    assert set(cache) == {(False, 4), (True, 4), (False, 2)}
    # through the convolution: one entry per input dtype, so float64 inputs never get the
    # float32 transforms
    conv_cache = {}
    y32 = wg.winograd_conv3x3(x, w, weight_cache=conv_cache)
    y64 = wg.winograd_conv3x3(x.astype(np.float64), w, weight_cache=conv_cache)
    assert sorted(conv_cache) == sorted([np.dtype(np.float32).str, np.dtype(np.float64).str])
    assert y64.dtype == np.float64
    assert (np.abs(y32 - y64) <= winograd_float32_tolerance(x, w, np.zeros(4), 4)).all()


def test_vgg_keeps_its_weight_transforms_with_the_network():
    """The network owns the cache of its (read-only) weights' transforms: filled on the first
    forward and reused after; a second network has its own."""
    from conftest import random_params

    from minist.architectures import layer_table
    from minist.preprocessing import TORCHVISION
    from minist.vgg import VGG
    from minist.weights.store import VGGWeights

    channels = (16, 16, 16, 16, 16)
    weights = VGGWeights("vgg19", random_params("vgg19", channels, layers={"conv1_1", "conv1_2"}),
                         TORCHVISION, "random", "none", channels)
    assert layer_table("vgg19", channels)[2].name == "conv1_2"
    image = np.random.default_rng(0).uniform(size=(1, 3, 8, 8)).astype(np.float32)
    net = VGG(weights)
    assert not net.params["conv1_2"][0].flags.writeable
    feats, cache = net.forward(image, ["relu1_2"])
    net.backward({"relu1_2": np.ones_like(feats["relu1_2"])}, cache)
    kept = net.weight_caches["conv1_2"]["<f4"]
    assert set(kept) == {(False, 4), (True, 4)}  # forward and input-gradient kernels
    u = kept[False, 4]
    net.forward(image, ["relu1_2"])
    assert net.weight_caches["conv1_2"]["<f4"][False, 4] is u
    # conv1_1: 3 input channels, so im2col forward; its input gradient has 16: Winograd
    assert set(net.weight_caches["conv1_1"]["<f4"]) == {(True, 4)}
    assert VGG(weights).weight_caches["conv1_2"] == {}


def test_blas_scope_sets_and_restores_the_thread_counts():
    import numba

    before, numba_before = threads.blas_threads(), numba.get_num_threads()
    blas = []
    with threads.blas_scope(1):
        blas.append(threads.blas_threads())
        assert numba.get_num_threads() == 1
        with threads.blas_scope(2):  # scopes nest in one thread
            blas.append(threads.blas_threads())
        blas.append(threads.blas_threads())
    assert threads.blas_threads() == before and numba.get_num_threads() == numba_before
    assert threads.process_threads() >= 1
    if before is None:
        pytest.skip("Numba's threads checked; NumPy's BLAS cannot be told its threads here "
                    "(neither OpenBLAS nor threadpoolctl): its counts were not checked")
    assert blas == [1, 2, 1]


@pytest.mark.parametrize("C, F, hw", [(64, 64, 32), (256, 128, 8), (512, 512, 12)])
def test_float32_accuracy_against_float64_direct(C, F, hw):
    """float32 Winograd against the float64 direct result (He-scaled VGG layer, ReLU input).

    Error relative to max |y| of the layer, as in the README: F(2x2) within 4x of float32
    im2col; F(4x4), whose transforms multiply by up to 8 and divide by 24, below 2e-5.
    """
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((1, C, hw, hw)), 0)
    w = rng.standard_normal((F, C, 3, 3)) * np.sqrt(2 / (9 * C))
    b = rng.standard_normal(F) * 0.1
    y64, _ = direct(x, w, b)
    scale = np.abs(y64).max()
    x32, w32, b32 = x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)
    err_direct = np.abs(direct(x32, w32, b32)[0] - y64).max() / scale
    err_f2 = np.abs(wg.winograd_conv3x3(x32, w32, b32, m=2) - y64).max() / scale
    err_f4 = np.abs(wg.winograd_conv3x3(x32, w32, b32, m=4) - y64).max() / scale
    assert err_f2 < 4 * err_direct + 1e-7
    assert err_f4 < 2e-5


def test_float32_in_float32_out():
    x = np.ones((1, 2, 5, 5), np.float32)
    for m in (2, 4):
        y = wg.winograd_conv3x3(x, np.ones((3, 2, 3, 3)), np.zeros(3), m=m)
        assert y.dtype == np.float32


def test_unknown_tile_size_is_refused():
    with pytest.raises(ValueError, match="tile size"):
        wg.winograd_conv3x3(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), m=3)


def test_kernels_without_jit_give_the_same_numbers():
    """NUMBA_DISABLE_JIT=1 runs the kernels as plain Python: still correct (tiny inputs)."""
    code = (
        "import numpy as np\n"
        "from minist.execution import ExecutionConfig\n"
        "from minist.layers import winograd as wg, max_pool_forward, max_pool_backward\n"
        "slices = ExecutionConfig(kernels=False)\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((1, 2, 5, 4)); w = rng.standard_normal((3, 2, 3, 3))\n"
        "b = rng.standard_normal(3); mask = rng.standard_normal((1, 2, 5, 4))\n"
        "for m in (2, 4):\n"
        "    y = wg.winograd_conv3x3(x, w, b, m=m, relu=True)\n"
        "    dx = wg.winograd_conv3x3(x, w[:, :2].transpose(1, 0, 2, 3), transpose=True, m=m,\n"
        "                             mask=mask)\n"
        "    ref = wg.winograd_conv3x3(x, w, b, m=m, relu=True, config=slices)\n"
        "    dref = wg.winograd_conv3x3(x, w[:, :2].transpose(1, 0, 2, 3), transpose=True,\n"
        "                               m=m, mask=mask, config=slices)\n"
        "    assert np.abs(y - ref).max() < 1e-12, 'winograd'\n"
        "    assert np.abs(dx - dref).max() < 1e-12, 'winograd masked'\n"
        "p, c = max_pool_forward(x, 2, 2); dx = max_pool_backward(p, c)\n"
        "p2, c2 = max_pool_forward(x, 2, 2, config=slices); dx2 = max_pool_backward(p2, c2)\n"
        "assert (p == p2).all() and (c.argmax == c2.argmax).all() and (dx == dx2).all(), 'pool'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("m", [2, 4])
def test_generated_cuda_source_computes_the_transforms(m):
    """The CUDA kernels are generated from B^T and A^T: run their straight-line arithmetic here
    (as Python) on a random tile and compare with the matrix products (the GPU tests run the
    compiled kernels themselves)."""
    import re

    from minist.layers import winograd_cupy as wc

    BT, _, AT = wg.TRANSFORMS[m]
    alpha = m + 2
    rng = np.random.default_rng(m)
    d = rng.standard_normal((alpha, alpha))
    env = {f"d{a}_{b}": d[a, b] for a in range(alpha) for b in range(alpha)}
    V = {}
    for line in wc._input_source(m, "double").splitlines():
        if match := re.fullmatch(r"\s*T (s\d+_\d+) = (.*);", line):
            env[match[1]] = eval(match[2].replace("(T)", ""), {}, env)
        elif match := re.fullmatch(r"\s*V\[\(\(long long\)(\d+) \* C .*\] = (.*);", line):
            V[int(match[1])] = eval(match[2].replace("(T)", ""), {}, env)
    np.testing.assert_allclose([V[k] for k in range(alpha**2)], (BT @ d @ BT.T).ravel(),
                               rtol=0, atol=1e-12)

    mm = rng.standard_normal((alpha, alpha))
    env = {f"m{xi}_{nu}": mm[xi, nu] for xi in range(alpha) for nu in range(alpha)}
    Y = np.full((m, m), np.nan)
    for line in wc._output_source(m, "double").splitlines():
        if match := re.fullmatch(r"\s*T (s\d+_\d+) = (.*);", line):
            env[match[1]] = eval(match[2].replace("(T)", ""), {}, env)
        elif match := re.fullmatch(r"\s*store\(y, base, r \+ (\d), q \+ (\d), H, W, \((.*)\)"
                                   r" \+ bf, relu\);", line):
            Y[int(match[1]), int(match[2])] = eval(match[3].replace("(T)", ""), {}, env)
    np.testing.assert_allclose(Y, AT @ mm @ AT.T, rtol=0, atol=1e-12)


@pytest.mark.gpu
@needs_gpu
@settings(max_examples=20, deadline=None)
@given(problem=problems(), m=st.sampled_from([2, 4]))
def test_cupy_matches_numpy(problem, m):
    cp = cupy_or_none()
    x, w, b, mask = problem
    y = wg.winograd_conv3x3(x, w, b, m=m, relu=True)
    dx = wg.winograd_conv3x3(mask, w, transpose=True, m=m, mask=mask)
    y_gpu = wg.winograd_conv3x3(cp.asarray(x), cp.asarray(w), cp.asarray(b), m=m, relu=True)
    dx_gpu = wg.winograd_conv3x3(cp.asarray(mask), cp.asarray(w), transpose=True, m=m,
                                 mask=cp.asarray(mask))
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y, rtol=0, atol=1e-11)
    np.testing.assert_allclose(cp.asnumpy(dx_gpu), dx, rtol=0, atol=1e-11)
    slices = ExecutionConfig(device="cuda", kernels=False)  # the slices version on CuPy
    y_slices = wg.winograd_conv3x3(cp.asarray(x), cp.asarray(w), cp.asarray(b), m=m, relu=True,
                                   config=slices)
    np.testing.assert_allclose(cp.asnumpy(y_slices), y, rtol=0, atol=1e-11)
