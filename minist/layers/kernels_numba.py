r"""CPU kernels for the layers, compiled by Numba: what BLAS cannot do, in one pass over memory
(the Winograd transforms are in :mod:`minist.layers.winograd_numba`).

* :func:`max_pool_forward_kernel` / :func:`max_pool_backward_kernel` -- max pooling with its
  argmax in one pass, and its gradient written once (no zero fill plus :math:`k^2` strided adds).

Every kernel can run parallel over channels (one channel plane per thread at a time, so no two
threads write the same element; ``ExecutionConfig.parallel_pooling`` says when it does), keeps
``x.dtype`` (float32 or
float64) and gives the same results with ``NUMBA_DISABLE_JIT=1``, when it runs as plain Python
(slowly; the tests do so on tiny inputs). ``fastmath`` is off: the arithmetic is the IEEE
arithmetic of the NumPy/CuPy version, term for term, so both paths agree to the last bit or nearly
so.
"""

from __future__ import annotations

import numba

_JIT = {"cache": True, "fastmath": False, "nogil": True}


@numba.njit(**_JIT)
def _max_pool_forward_plane(x, k, s, y, argmax, p):  # pragma: no cover - compiled
    r""":math:`y_{p,i,j} = \max_{a,b<k} x_{p,\,is+a,\,js+b}` and the raster index of the first
    maximum, for ``x`` of shape ``(P, H, W)`` (P = N C planes); strict ``>`` keeps the first."""
    Ho, Wo = y.shape[1], y.shape[2]
    for i in range(Ho):
        for j in range(Wo):
            best = x[p, i * s, j * s]
            arg = 0
            for a in range(k):
                for b in range(k):
                    v = x[p, i * s + a, j * s + b]
                    if v > best:
                        best = v
                        arg = a * k + b
            y[p, i, j] = best
            argmax[p, i, j] = arg


@numba.njit(**_JIT)
def _max_pool_backward_plane(dy, argmax, k, s, dx, p):  # pragma: no cover - compiled
    r""":math:`dx_{p,\,is+a,\,js+b} \mathrel{+}= dy_{p,i,j}` for the stored argmax :math:`(a, b)`;
    every element of ``dx`` (``(P, H, W)``) is written (zeros first, plane by plane).
    """
    Ho, Wo = dy.shape[1], dy.shape[2]
    H, W = dx.shape[1], dx.shape[2]
    for u in range(H):
        for v in range(W):
            dx[p, u, v] = 0.0
    for i in range(Ho):
        for j in range(Wo):
            t = argmax[p, i, j]
            u = i * s + t // k
            v = j * s + t % k
            dx[p, u, v] += dy[p, i, j]


# ---------------------------------------------------------------------------------------------
# Drivers: each loops over channel planes, in parallel (big arrays) or on one thread (small
# ones, where waking the worker threads costs more than the work).
# ---------------------------------------------------------------------------------------------

PARALLEL_MIN_ELEMENTS = 1 << 15  # arrays smaller than this run serially even when parallel


@numba.njit(parallel=True, **_JIT)
def _max_pool_forward_parallel(x, k, s, y, argmax):  # pragma: no cover - compiled
    for p in numba.prange(y.shape[0]):
        _max_pool_forward_plane(x, k, s, y, argmax, p)


@numba.njit(**_JIT)
def _max_pool_forward_serial(x, k, s, y, argmax):  # pragma: no cover - compiled
    for p in range(y.shape[0]):
        _max_pool_forward_plane(x, k, s, y, argmax, p)


@numba.njit(parallel=True, **_JIT)
def _max_pool_backward_parallel(dy, argmax, k, s, dx):  # pragma: no cover - compiled
    for p in numba.prange(dy.shape[0]):
        _max_pool_backward_plane(dy, argmax, k, s, dx, p)


@numba.njit(**_JIT)
def _max_pool_backward_serial(dy, argmax, k, s, dx):  # pragma: no cover - compiled
    for p in range(dy.shape[0]):
        _max_pool_backward_plane(dy, argmax, k, s, dx, p)


def max_pool_forward_kernel(x, k, s, y, argmax, parallel: bool = False):
    """Driver of :func:`_max_pool_forward_plane` over all ``(P, H, W)`` planes (in parallel over
    the planes when ``parallel`` and the array is large)."""
    big = parallel and x.size >= PARALLEL_MIN_ELEMENTS
    (_max_pool_forward_parallel if big else _max_pool_forward_serial)(x, k, s, y, argmax)


def max_pool_backward_kernel(dy, argmax, k, s, dx, parallel: bool = False):
    """Driver of :func:`_max_pool_backward_plane` over all ``(P, H, W)`` planes."""
    big = parallel and dx.size >= PARALLEL_MIN_ELEMENTS
    (_max_pool_backward_parallel if big else _max_pool_backward_serial)(dy, argmax, k, s, dx)
