"""The loss kernels (Numba on the CPU, CuPy on the GPU) give the reference's numbers.

float32: within 1e-5 of the reference (relative to the largest reference value, so that entries
near zero after cancellation do not demand more than float32 can give); float64: within 1e-12.
Plus: finite differences on the Numba kernels, ``NUMBA_DISABLE_JIT=1`` in a subprocess, the
dispatcher's choices, and (marked ``gpu``) the CuPy kernels against the NumPy reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

import minist.losses as losses
from minist.backend import cupy_or_none
from minist.losses import dispatch, kernels_numba, reference

REPO = Path(__file__).resolve().parents[1]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
seeds = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None)


def assert_matches(got, want, dtype):
    """``got == want`` within ``RTOL[dtype]`` of the largest ``|want|``, on the host."""
    got, want = _host(got), _host(want)
    assert got.shape == want.shape and got.dtype == want.dtype == dtype
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(dtype).tiny)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def _host(a):
    return a.get() if cupy_or_none() is not None and isinstance(a, cupy_or_none().ndarray) else a


def case(N, M, seed, dtype):
    """Features (ReLU-like, many exact zeros), a content target and a style Gram."""
    rng = np.random.default_rng(seed)
    F = np.maximum(rng.standard_normal((N, M)), 0).astype(dtype)
    P = np.maximum(rng.standard_normal((N, M)), 0).astype(dtype)
    A = reference.gram_matrix(np.maximum(rng.standard_normal((N, M + 3)), 0).astype(dtype))
    return F, P, A


def image(shape, seed, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- Numba == reference --------------------------------------------------------------------------


@dtypes
@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 50), seed=seeds)
def test_numba_losses_match_the_reference(dtype, N, M, seed):
    F, P, A = case(N, M, seed, dtype)
    for name, args in (("content_loss", (F, P)), ("style_layer_loss", (F, A))):
        want_value, want_grad = getattr(reference, name)(*args)
        got_value, got_grad = getattr(kernels_numba, name)(*args)
        assert_matches(got_value, want_value, dtype)
        assert_matches(got_grad, want_grad, dtype)
    assert_matches(kernels_numba.gram_matrix(F), reference.gram_matrix(F), dtype)
    assert_matches(kernels_numba.gram_matrix_numba(F), reference.gram_matrix(F), dtype)


@dtypes
@FAST
@given(shape=st.tuples(*[st.integers(1, 9)] * 4), seed=seeds)
def test_numba_tv_matches_the_reference(dtype, shape, seed):
    x = image(shape, seed, dtype)
    (got_value, got_grad), (want_value, want_grad) = kernels_numba.tv_loss(x), reference.tv_loss(x)
    assert_matches(got_value, want_value, dtype)
    assert_matches(got_grad, want_grad, dtype)


@dtypes
def test_numba_kernels_match_on_layer_sized_inputs(dtype):
    """Large enough for every thread of the parallel loops to have work."""
    F, P, A = case(32, 3000, 7, dtype)
    for name, args in (("content_loss", (F, P)), ("style_layer_loss", (F, A))):
        got, want = getattr(kernels_numba, name)(*args), getattr(reference, name)(*args)
        for g, w in zip(got, want, strict=True):
            assert_matches(g, w, dtype)
    assert_matches(kernels_numba.gram_matrix_numba(F), reference.gram_matrix(F), dtype)
    x = image((2, 3, 61, 47), 8, dtype)
    for got, want in zip(kernels_numba.tv_loss(x), reference.tv_loss(x), strict=True):
        assert_matches(got, want, dtype)


def test_numba_gram_is_exactly_symmetric():
    F, _, _ = case(7, 33, 1, np.float32)
    G = kernels_numba.gram_matrix_numba(F)
    np.testing.assert_array_equal(G, G.T)


def test_numba_kernels_take_non_contiguous_inputs_and_activations():
    F, P, A = case(6, 20, 2, np.float64)
    Ft, Pt = np.asfortranarray(F), np.asfortranarray(P)
    got, want = kernels_numba.content_loss(Ft, Pt), reference.content_loss(F, P)
    for g, w in zip(got, want, strict=True):
        assert_matches(g, w, np.float64)
    x = F.reshape(1, 6, 4, 5)
    E, dx = kernels_numba.style_layer_loss(x, A)
    assert dx.shape == x.shape
    assert_matches(dx.reshape(6, 20), reference.style_layer_loss(F, A)[1], np.float64)
    img = image((1, 3, 6, 8), 3, np.float64)[:, :, ::-1, ::2]  # a strided view
    for got, want in zip(kernels_numba.tv_loss(img), reference.tv_loss(img), strict=True):
        assert_matches(got, want, np.float64)


@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 30), seed=seeds)
def test_numba_gradients_match_finite_differences(N, M, seed):
    rng = np.random.default_rng(seed)
    F, P = rng.standard_normal((N, M)), rng.standard_normal((N, M))
    A = reference.gram_matrix(rng.standard_normal((N, M + 2)))
    x = rng.standard_normal((1, 2, N, max(M // 5, 1)))
    checks = (
        (lambda v: kernels_numba.content_loss(v, P), F),
        (lambda v: kernels_numba.style_layer_loss(v, A), F),
        (kernels_numba.tv_loss, x),
    )
    for loss, at in checks:
        numeric = numerical_gradient(lambda v, loss=loss: loss(v)[0], at.copy(), 1.0)
        assert relative_error(loss(at)[1], numeric) < 1e-6


NO_JIT_SCRIPT = textwrap.dedent(
    """
    import numba, numpy as np
    assert numba.config.DISABLE_JIT, "NUMBA_DISABLE_JIT was not honoured"
    from minist.losses import kernels_numba as K, reference as R
    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        F = rng.standard_normal((3, 7)).astype(dtype)
        P = rng.standard_normal((3, 7)).astype(dtype)
        A = R.gram_matrix(rng.standard_normal((3, 9)).astype(dtype))
        x = rng.standard_normal((1, 2, 4, 5)).astype(dtype)
        pairs = [(K.content_loss(F, P), R.content_loss(F, P)),
                 (K.style_layer_loss(F, A), R.style_layer_loss(F, A)),
                 (K.tv_loss(x), R.tv_loss(x)),
                 ((K.gram_matrix_numba(F),), (R.gram_matrix(F),))]
        for got, want in pairs:
            for g, w in zip(got, want, strict=True):
                assert g.dtype == w.dtype == dtype, (g.dtype, w.dtype)
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max())
    print("NO-JIT OK")
    """
)


def test_numba_kernels_run_as_plain_python():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", NO_JIT_SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "NO-JIT OK" in done.stdout


# --- the dispatcher ----------------------------------------------------------------------------


def test_cpu_dispatch_takes_each_function_from_its_measured_choice():
    backend = losses.get_loss_backend(np.zeros(3, np.float32))
    modules = {"numba": kernels_numba, "reference": reference}
    assert set(backend.choice) == set(dispatch.FUNCTIONS)
    for fn, impl in dispatch.CPU_CHOICE.items():
        assert getattr(backend, fn) is getattr(modules[impl], fn)


def test_prefer_reference_forces_the_reference():
    backend = losses.get_loss_backend(np.zeros(3), prefer="reference")
    for fn in dispatch.FUNCTIONS:
        assert getattr(backend, fn) is getattr(reference, fn)
    backend = losses.get_loss_backend(np.zeros(3), prefer="numba")
    for fn in dispatch.FUNCTIONS:
        assert getattr(backend, fn) is getattr(kernels_numba, fn)


def test_dispatch_rejects_bad_preferences():
    with pytest.raises(ValueError, match="prefer"):
        losses.get_loss_backend(np.zeros(3), prefer="fortran")
    with pytest.raises(ValueError, match="CuPy arrays"):
        losses.get_loss_backend(np.zeros(3), prefer="cupy")


def test_kernels_cupy_imports_without_a_gpu():
    from minist.losses import kernels_cupy

    assert callable(kernels_cupy.content_loss) and callable(kernels_cupy.tv_loss)


# --- CuPy == NumPy reference (run on a machine with a GPU) ---------------------------------------


def gpu_pairs(dtype, N, M, seed, shape):
    """(name, kernel result on the GPU, reference result on the CPU) for every function."""
    cp = cupy_or_none()
    from minist.losses import kernels_cupy

    F, P, A = case(N, M, seed, dtype)
    x = image(shape, seed, dtype)
    dF, dP, dA, dx = (cp.asarray(a) for a in (F, P, A, x))
    return [
        ("content_loss", kernels_cupy.content_loss(dF, dP), reference.content_loss(F, P)),
        ("style", kernels_cupy.style_layer_loss(dF, dA), reference.style_layer_loss(F, A)),
        ("gram_matrix", (kernels_cupy.gram_matrix(dF),), (reference.gram_matrix(F),)),
        ("tv_loss", kernels_cupy.tv_loss(dx), reference.tv_loss(x)),
    ]


@pytest.mark.gpu
@dtypes
@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 50), shape=st.tuples(*[st.integers(1, 9)] * 4),
       seed=seeds)
def test_cupy_kernels_match_the_numpy_reference(dtype, N, M, shape, seed):
    cp = cupy_or_none()
    for name, got, want in gpu_pairs(dtype, N, M, seed, shape):
        for g, w in zip(got, want, strict=True):
            assert isinstance(g, cp.ndarray), name  # the value stays on the GPU (0-d array)
            assert_matches(g, w, dtype)


@pytest.mark.gpu
@dtypes
def test_cupy_kernels_match_on_many_blocks(dtype):
    """More elements than one launch's grid: exercises the grid-stride loops and atomics."""
    for _, got, want in gpu_pairs(dtype, 64, 20000, 3, (2, 3, 300, 500)):
        for g, w in zip(got, want, strict=True):
            assert_matches(g, w, dtype)


@pytest.mark.gpu
def test_cupy_dispatch_and_finite_differences():
    cp = cupy_or_none()
    from minist.losses import kernels_cupy

    rng = np.random.default_rng(4)
    F, P = cp.asarray(rng.standard_normal((4, 9))), cp.asarray(rng.standard_normal((4, 9)))
    A = cp.asarray(reference.gram_matrix(rng.standard_normal((4, 11))))
    x = cp.asarray(rng.standard_normal((1, 3, 4, 5)))
    assert losses.get_loss_backend(F).content_loss is kernels_cupy.content_loss
    with pytest.raises(ValueError, match="NumPy arrays"):
        losses.get_loss_backend(F, prefer="numba")
    for loss, at in ((lambda v: losses.content_loss(v, P), F),
                     (lambda v: losses.style_layer_loss(v, A), F), (losses.tv_loss, x)):
        numeric = numerical_gradient(lambda v, loss=loss: loss(v)[0], at.copy(), 1.0)
        assert relative_error(loss(at)[1], numeric) < 1e-6
    L, grads = losses.style_loss({"a": F}, {"a": A})
    assert isinstance(L, cp.ndarray) and isinstance(grads["a"], cp.ndarray)
    empty = cp.zeros((0, 5))
    L, dF = losses.content_loss(empty, empty)
    assert float(L) == 0.0 and dF.shape == (0, 5)
