r"""CPU kernels for the layers, compiled by Numba: what BLAS cannot do, in one pass over memory.

* :func:`winograd_input_transform` / :func:`winograd_output_transform` -- the two data
  transforms of Winograd's :math:`F(2 \times 2, 3 \times 3)` (equations and derivation in
  :mod:`minist.layers.winograd`); the 16 matrix products between them are BLAS's job.
* :func:`max_pool_forward_kernel` / :func:`max_pool_backward_kernel` -- max pooling with its
  argmax in one pass, and its gradient written once (no zero fill plus :math:`k^2` strided adds).

Every kernel is parallel over channels (one channel plane per thread at a time, so no two threads
write the same element), keeps ``x.dtype`` (float32 or float64) and gives the same results with
``NUMBA_DISABLE_JIT=1``, when it runs as plain Python (slowly; the tests do so on tiny inputs).
``fastmath`` is off: the arithmetic is the IEEE arithmetic of the NumPy/CuPy version, term for
term, so both paths agree to the last bit or nearly so.
"""

from __future__ import annotations

import numba

_JIT = {"cache": True, "fastmath": False, "nogil": True}


@numba.njit(inline="always", **_JIT)
def _bt(d0, d1, d2, d3):
    r""":math:`B^\top d` for one 4-vector: rows of :math:`B^\top` are
    ``(1,0,-1,0), (0,1,1,0), (0,-1,1,0), (0,1,0,-1)``."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@numba.njit(inline="always", **_JIT)
def _at(m0, m1, m2, m3):
    r""":math:`A^\top m` for one 4-vector: rows of :math:`A^\top` are ``(1,1,1,0), (0,1,-1,-1)``."""
    return m0 + m1 + m2, m1 - m2 - m3


@numba.njit(**_JIT)
def _input_transform_channel(x_pad, t0, tw, V, c):  # pragma: no cover - compiled
    r""":math:`V_{\xi\nu, c, t} = (B^\top d_{c,t} B)_{\xi\nu}` for the tiles of rows ``t0 ...``.

    ``x_pad``: one image ``(C, Hp, Wp)`` padded so that every tile is inside; tile ``(i, j)``
    is :math:`d = \tilde x_{c,\,2i:2i+4,\,2j:2j+4}`. ``V``: ``(16, C, tr * tw)`` with
    :math:`t = (i - t_0)\, t_w + j`.
    """
    tr = V.shape[2] // tw
    for i in range(tr):
        r = 2 * (t0 + i)
        for j in range(tw):
            q = 2 * j
            t = i * tw + j
            # columns b = 0..3 of B^T d (each a 4-vector over xi)
            a0, a1, a2, a3 = _bt(x_pad[c, r, q], x_pad[c, r + 1, q],
                                 x_pad[c, r + 2, q], x_pad[c, r + 3, q])
            b0, b1, b2, b3 = _bt(x_pad[c, r, q + 1], x_pad[c, r + 1, q + 1],
                                 x_pad[c, r + 2, q + 1], x_pad[c, r + 3, q + 1])
            e0, e1, e2, e3 = _bt(x_pad[c, r, q + 2], x_pad[c, r + 1, q + 2],
                                 x_pad[c, r + 2, q + 2], x_pad[c, r + 3, q + 2])
            g0, g1, g2, g3 = _bt(x_pad[c, r, q + 3], x_pad[c, r + 1, q + 3],
                                 x_pad[c, r + 2, q + 3], x_pad[c, r + 3, q + 3])
            # row xi of (B^T d) times B: V[4 xi + nu]
            V[0, c, t], V[1, c, t], V[2, c, t], V[3, c, t] = _bt(a0, b0, e0, g0)
            V[4, c, t], V[5, c, t], V[6, c, t], V[7, c, t] = _bt(a1, b1, e1, g1)
            V[8, c, t], V[9, c, t], V[10, c, t], V[11, c, t] = _bt(a2, b2, e2, g2)
            V[12, c, t], V[13, c, t], V[14, c, t], V[15, c, t] = _bt(a3, b3, e3, g3)


@numba.njit(**_JIT)
def _output_transform_channel(M, t0, tw, bias, y, f):  # pragma: no cover
    r""":math:`y_{f,\,2i:2i+2,\,2j:2j+2} = A^\top m_{f,t} A` (+ epilogue) for tile rows ``t0 ...``.

    ``M``: ``(16, F, tr * tw)``, the 16 products. ``y``: one image's output ``(F, H, W)``;
    outputs of a partial last tile that fall outside ``H, W`` are dropped; ``+ bias[f]`` when
    ``bias`` is not None.
    """
    tr = M.shape[2] // tw
    for i in range(tr):
        r = 2 * (t0 + i)
        for j in range(tw):
            t = i * tw + j
            # A^T m, column by column (nu = 0..3): s0_nu, s1_nu
            s00, s10 = _at(M[0, f, t], M[4, f, t], M[8, f, t], M[12, f, t])
            s01, s11 = _at(M[1, f, t], M[5, f, t], M[9, f, t], M[13, f, t])
            s02, s12 = _at(M[2, f, t], M[6, f, t], M[10, f, t], M[14, f, t])
            s03, s13 = _at(M[3, f, t], M[7, f, t], M[11, f, t], M[15, f, t])
            y00, y01 = _at(s00, s01, s02, s03)  # (A^T m) A, row 0
            y10, y11 = _at(s10, s11, s12, s13)  # row 1
            _store(y, f, r, 2 * j, y00, bias)
            _store(y, f, r, 2 * j + 1, y01, bias)
            _store(y, f, r + 1, 2 * j, y10, bias)
            _store(y, f, r + 1, 2 * j + 1, y11, bias)


@numba.njit(inline="always", **_JIT)
def _store(y, f, u, v, val, bias):
    """Write one output (plus the bias); skip it if it falls outside the image."""
    if u < y.shape[1] and v < y.shape[2]:
        if bias is not None:
            val += bias[f]
        y[f, u, v] = val


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

PARALLEL_MIN_ELEMENTS = 1 << 15


@numba.njit(parallel=True, **_JIT)
def _input_transform_parallel(x_pad, t0, tw, V):  # pragma: no cover - compiled
    for c in numba.prange(x_pad.shape[0]):
        _input_transform_channel(x_pad, t0, tw, V, c)


@numba.njit(**_JIT)
def _input_transform_serial(x_pad, t0, tw, V):  # pragma: no cover - compiled
    for c in range(x_pad.shape[0]):
        _input_transform_channel(x_pad, t0, tw, V, c)


@numba.njit(parallel=True, **_JIT)
def _output_transform_parallel(M, t0, tw, bias, y):  # pragma: no cover - compiled
    for f in numba.prange(M.shape[1]):
        _output_transform_channel(M, t0, tw, bias, y, f)


@numba.njit(**_JIT)
def _output_transform_serial(M, t0, tw, bias, y):  # pragma: no cover - compiled
    for f in range(M.shape[1]):
        _output_transform_channel(M, t0, tw, bias, y, f)


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


def winograd_input_transform(x_pad, t0, tw, V):
    """Driver of :func:`_input_transform_channel` over all channels (arguments as there)."""
    big = V.size >= PARALLEL_MIN_ELEMENTS
    (_input_transform_parallel if big else _input_transform_serial)(x_pad, t0, tw, V)


def winograd_output_transform(M, t0, tw, bias, y):
    """Driver of :func:`_output_transform_channel` over all output channels."""
    big = M.size >= PARALLEL_MIN_ELEMENTS
    (_output_transform_parallel if big else _output_transform_serial)(M, t0, tw, bias, y)


def max_pool_forward_kernel(x, k, s, y, argmax):
    """Driver of :func:`_max_pool_forward_plane` over all ``(P, H, W)`` planes."""
    big = x.size >= PARALLEL_MIN_ELEMENTS
    (_max_pool_forward_parallel if big else _max_pool_forward_serial)(x, k, s, y, argmax)


def max_pool_backward_kernel(dy, argmax, k, s, dx):
    """Driver of :func:`_max_pool_backward_plane` over all ``(P, H, W)`` planes."""
    big = dx.size >= PARALLEL_MIN_ELEMENTS
    (_max_pool_backward_parallel if big else _max_pool_backward_serial)(dy, argmax, k, s, dx)
