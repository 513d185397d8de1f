r"""CPU kernels for the losses, compiled by Numba: the same functions as :mod:`.reference`.

Each kernel fuses what NumPy does in several passes over memory (a difference, a square, a sum,
a scatter into the gradient) into one pass: every element is read once, its share of the loss is
added to a float64 accumulator and its gradient is written. The equations, shapes and the
derivations are in :mod:`minist.losses.reference`; the comments here only tie lines to them.

What BLAS does better stays with BLAS. The Gram matrix :math:`F F^\top` and the product
:math:`(G - A) F` are matrix products of :math:`O(N^2 M)` work; OpenBLAS (through NumPy's ``@``)
runs them near the processor's peak. Numba is used for the :math:`O(NM)` and :math:`O(N^2)`
elementwise parts that BLAS cannot fuse. :func:`gram_matrix_numba`, a Gram written in Numba,
is kept to measure against and to read. Measured (float32, 2-core x86-64, best of 30 runs;
the full table is in :mod:`minist.losses.dispatch`, which picks the faster per function):

* fused content loss: 3-5x faster than NumPy's three passes (1.7 vs 7.7 ms at 256 x 16384);
* fused TV: about 3.5x faster (1.1 vs 3.8 ms on a 1 x 3 x 512 x 512 image);
* Gram in Numba: 15-40x *slower* than BLAS (269 vs 6.7 ms at 256 x 16384), so
  :func:`gram_matrix` here is BLAS;
* style loss: the same as the reference (14 ms at 256 x 16384): the two GEMMs are all of its
  time, and the fused :math:`N \times N` step runs on one thread (see
  :func:`_diff_sumsq_serial`).

All kernels are ``njit(cache=True, fastmath=False)`` (IEEE arithmetic, no reassociation
inside a thread; a parallel loop adds its threads' float64 partial sums at the end) and give
the same results with ``NUMBA_DISABLE_JIT=1``, when they run as plain Python (slowly; the
tests do so on tiny inputs). float32 stays float32 in and out; only the scalar losses are
accumulated in float64.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from minist.losses.reference import feature_matrix

_JIT = {"cache": True, "fastmath": False, "nogil": True}


# ---------------------------------------------------------------------------------------------
# Compiled loops (flat, contiguous arrays)
# ---------------------------------------------------------------------------------------------


@numba.njit(parallel=True, **_JIT)
def _diff_sumsq(a, b, out, divisor):
    """``out = (a - b) / divisor`` and return ``sum((a - b)**2)`` in float64, in one pass."""
    acc = 0.0
    for k in numba.prange(a.size):
        d = a[k] - b[k]
        out[k] = d / divisor
        acc += np.float64(d) * np.float64(d)
    return acc


@numba.njit(**_JIT)
def _diff_sumsq_serial(a, b, out, divisor):
    """:func:`_diff_sumsq` on one thread, for small arrays that sit between two BLAS calls.

    Waking Numba's thread team costs more than the work on an :math:`N_l \times N_l` matrix, and
    its spinning threads would compete with OpenBLAS's for the same cores.
    """
    acc = 0.0
    for k in range(a.size):
        d = a[k] - b[k]
        out[k] = d / divisor
        acc += np.float64(d) * np.float64(d)
    return acc


@numba.njit(parallel=True, **_JIT)
def _tv_forward_backward(x, grad, zero):
    """Squared TV of ``x`` (N, C, H, W) in float64; its gradient written into ``grad``.

    ``zero`` is 0 in ``x``'s dtype, so that the gradient is summed in that dtype.
    """
    N, C, H, W = x.shape
    acc = 0.0
    for nc in numba.prange(N * C):
        n = nc // C
        c = nc - n * C
        img = x[n, c]
        g = grad[n, c]
        for i in range(H):
            for j in range(W):
                xij = img[i, j]
                # same order of operations as the reference: + above, - below, + left, - right
                gij = zero
                if i > 0:
                    up = xij - img[i - 1, j]
                    gij += up + up  # 2 (x_{i,j} - x_{i-1,j}); x + x == 2x exactly
                if i < H - 1:
                    dv = img[i + 1, j] - xij  # x_{i+1,j} - x_{i,j}
                    gij -= dv + dv
                    acc += np.float64(dv) * np.float64(dv)
                if j > 0:
                    left = xij - img[i, j - 1]
                    gij += left + left
                if j < W - 1:
                    dh = img[i, j + 1] - xij  # x_{i,j+1} - x_{i,j}
                    gij -= dh + dh
                    acc += np.float64(dh) * np.float64(dh)
                g[i, j] = gij
    return acc


@numba.njit(parallel=True, **_JIT)
def _gram_loops(FT, G):
    """``G = FT^T FT`` for ``FT`` of shape (M, N), by rows of ``G`` (upper triangle, mirrored).

    The inner loop runs along a contiguous row of ``FT`` and of ``G`` so that it vectorises
    without reassociating any sum (each ``G[i, j]`` is its own accumulator).
    """
    M, N = FT.shape
    block = 256
    for i in numba.prange(N):
        row = np.zeros(N, dtype=G.dtype)
        for m0 in range(0, M, block):
            for m in range(m0, min(m0 + block, M)):
                a = FT[m, i]
                for j in range(i, N):
                    row[j] += a * FT[m, j]
        for j in range(i, N):
            G[i, j] = row[j]
            G[j, i] = row[j]


# ---------------------------------------------------------------------------------------------
# Public functions: same signatures and results as minist.losses.reference
# ---------------------------------------------------------------------------------------------


def _scalar(value: float, dtype) -> np.ndarray:
    return np.asarray(value, dtype=dtype)


def content_loss(F: Any, P: Any):
    """Fused content loss and gradient (paper Eq. 1, 2): one pass gives ``L`` and ``F - P``."""
    F = np.ascontiguousarray(F)
    P = np.ascontiguousarray(P, dtype=F.dtype)
    if P.shape != F.shape:
        raise ValueError(f"content_loss: F has shape {F.shape} but P has shape {P.shape}")
    dF = np.empty_like(F)
    acc = _diff_sumsq(F.reshape(-1), P.reshape(-1), dF.reshape(-1), F.dtype.type(1))
    return _scalar(0.5 * acc, F.dtype), dF


def gram_matrix(F: Any):
    """Gram matrix ``F F^T / M`` (paper Eq. 3) -- through BLAS, which is fastest (see above)."""
    Fm = feature_matrix(np.asarray(F))
    return (Fm @ Fm.T) / Fm.shape[1]


def gram_matrix_numba(F: Any):
    """The Gram matrix ``F F^T / M`` computed by :func:`_gram_loops` (to measure and to read)."""
    Fm = feature_matrix(np.asarray(F))
    N, M = Fm.shape
    G = np.empty((N, N), dtype=Fm.dtype)
    _gram_loops(np.ascontiguousarray(Fm.T), G)
    return G / M


def style_layer_loss(F: Any, A: Any):
    r"""Style loss of one layer and its gradient (paper Eq. 4, 6).

    BLAS forms :math:`G = F F^\top / M`; one fused pass forms :math:`(G - A) / (N^2 M)` and
    :math:`\sum (G - A)^2`; BLAS forms the gradient :math:`\frac{G - A}{N^2 M} F`.
    """
    F = np.asarray(F)
    Fm = feature_matrix(F)
    N, M = Fm.shape
    A = np.ascontiguousarray(A, dtype=F.dtype)
    if A.shape != (N, N):
        raise ValueError(f"style_layer_loss: F has {N} channels but A has shape {A.shape}")
    G = gram_matrix(Fm)
    D = np.empty_like(G)
    acc = _diff_sumsq_serial(G.reshape(-1), A.reshape(-1), D.reshape(-1), F.dtype.type(N * N * M))
    dF = D @ Fm  # (G - A) F / (N^2 M)
    return _scalar(acc / (4 * N * N), F.dtype), dF.reshape(F.shape)


def tv_loss(image: Any):
    """Fused squared-TV loss and gradient: one pass over the image gives both."""
    image = np.ascontiguousarray(image)
    if image.ndim != 4:
        raise ValueError(f"tv_loss: expected an (N, C, H, W) image, got shape {image.shape}")
    grad = np.empty_like(image)
    acc = _tv_forward_backward(image, grad, image.dtype.type(0))
    return _scalar(acc, image.dtype), grad
