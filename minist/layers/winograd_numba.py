r"""CPU kernels of the Winograd transforms, compiled by Numba: the data transforms of
:math:`F(2 \times 2, 3 \times 3)` and :math:`F(4 \times 4, 3 \times 3)` in one pass over memory
(equations and derivation in :mod:`minist.layers.winograd`; the GEMMs between them are BLAS's).

Each kernel handles one channel at a time; the drivers loop over the channels on **one thread**.
The transforms run between BLAS calls a few milliseconds apart, and BLAS's worker threads keep
spinning for a while after each GEMM, so Numba's threads would fight them for the cores: on 2
cores a 64-channel 256 px layer took 92 ms with parallel transforms and 28 ms with serial ones.

The arithmetic is the IEEE arithmetic of the NumPy/CuPy version (``fastmath`` off), and
``NUMBA_DISABLE_JIT=1`` runs the same code as plain Python (slowly; the tests do so on tiny
inputs).
"""

from __future__ import annotations

import numba
import numpy as np

from minist.layers.kernels_numba import _JIT

# --------------------------------------------------------------------------- F(2x2, 3x3)


@numba.njit(**_JIT)
def _stage_rows(image, mask, c, r, rows):  # pragma: no cover - compiled
    r"""Copy rows ``r, r+1, ...`` of channel ``c`` into ``rows[:, 1:W+1]``: the padded rows
    :math:`\tilde x_{c,\,r+1 \ldots}` one row of tiles reads. Rows outside the image are zeros
    (the padding); columns ``0`` and ``W+1 ...`` of ``rows`` stay zero. With a ``mask``, each
    value is multiplied by :math:`[\text{mask} > 0]` (the ReLU backward, fused).

    The tile loop then reads only this small, zero-padded buffer (in L1 cache): no border
    checks per pixel, no padded copy of the whole image.
    """
    H, W = image.shape[1], image.shape[2]
    zero = rows.dtype.type(0)
    for a in range(rows.shape[0]):
        u = r + a
        if u < 0 or u >= H:
            for v in range(W):
                rows[a, 1 + v] = zero
        elif mask is None:
            for v in range(W):
                rows[a, 1 + v] = image[c, u, v]
        else:  # a product, not a branch: ReLU masks are close to random
            for v in range(W):
                rows[a, 1 + v] = image[c, u, v] * rows.dtype.type(mask[c, u, v] > 0)


@numba.njit(inline="always", **_JIT)
def _bt4(d):
    r""":math:`B^\top d` for one 4-vector: rows of :math:`B^\top` are
    ``(1,0,-1,0), (0,1,1,0), (0,-1,1,0), (0,1,0,-1)``."""
    d0, d1, d2, d3 = d
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@numba.njit(inline="always", **_JIT)
def _at4(m0, m1, m2, m3):
    r""":math:`A^\top m` for one 4-vector: rows of :math:`A^\top` are ``(1,1,1,0), (0,1,-1,-1)``."""
    return m0 + m1 + m2, m1 - m2 - m3


@numba.njit(**_JIT)
def _input_transform_f2(image, mask, t0, tw, V, c):  # pragma: no cover - compiled
    r""":math:`V_{\xi\nu, c, t} = (B^\top d_{c,t} B)_{\xi\nu}` for the tiles of rows ``t0 ...``.

    ``image``: one image ``(C, H, W)``, unpadded; tile ``(i, j)`` is
    :math:`d = \tilde x_{c,\,2i:2i+4,\,2j:2j+4}`, i.e. rows and columns ``2i-1 .. 2i+2`` of the
    image, zeros outside it (staged row by row, :func:`_stage_rows`). ``V``: ``(16, C, tr * tw)``
    with :math:`t = (i - t_0)\, t_w + j`. ``mask``: None, or an array like ``image``: the tiles
    are read from :math:`\text{image} \odot [\text{mask} > 0]`.
    """
    tr = V.shape[2] // tw
    d = np.zeros((4, 2 * tw + 2), dtype=V.dtype)  # the 4 padded rows of one row of tiles
    for i in range(tr):
        _stage_rows(image, mask, c, 2 * (t0 + i) - 1, d)
        for j in range(tw):
            q = 2 * j
            t = i * tw + j
            # columns b = 0..3 of B^T d, each a 4-vector over xi
            c0 = _bt4((d[0, q], d[1, q], d[2, q], d[3, q]))
            c1 = _bt4((d[0, q + 1], d[1, q + 1], d[2, q + 1], d[3, q + 1]))
            c2 = _bt4((d[0, q + 2], d[1, q + 2], d[2, q + 2], d[3, q + 2]))
            c3 = _bt4((d[0, q + 3], d[1, q + 3], d[2, q + 3], d[3, q + 3]))
            for xi in range(4):  # row xi of (B^T d), times B: V[4 xi + nu]
                k = 4 * xi
                v0, v1, v2, v3 = _bt4((c0[xi], c1[xi], c2[xi], c3[xi]))
                V[k, c, t] = v0
                V[k + 1, c, t] = v1
                V[k + 2, c, t] = v2
                V[k + 3, c, t] = v3


@numba.njit(**_JIT)
def _output_transform_f2(M, t0, tw, bias, relu, y, f):  # pragma: no cover - compiled
    r""":math:`y_{f,\,2i:2i+2,\,2j:2j+2} = A^\top m_{f,t} A\, (+ b_f)` for tile rows ``t0 ...``.

    ``M``: ``(16, F, tr * tw)``, the 16 products. ``y``: one image's output ``(F, H, W)``;
    outputs of a partial last tile that fall outside ``H, W`` are dropped. With ``relu``, the
    ReLU of the next layer is applied on the way out: :math:`y = \max(\cdot, 0)`.
    """
    tr = M.shape[2] // tw
    has_bias = bias is not None
    zero = y.dtype.type(0)
    bf = bias[f] if has_bias else zero  # read once (a load per store: 15x slower)
    for i in range(tr):
        r = 2 * (t0 + i)
        for j in range(tw):
            t = i * tw + j
            # A^T m, column by column (nu = 0..3): s0_nu, s1_nu
            s00, s10 = _at4(M[0, f, t], M[4, f, t], M[8, f, t], M[12, f, t])
            s01, s11 = _at4(M[1, f, t], M[5, f, t], M[9, f, t], M[13, f, t])
            s02, s12 = _at4(M[2, f, t], M[6, f, t], M[10, f, t], M[14, f, t])
            s03, s13 = _at4(M[3, f, t], M[7, f, t], M[11, f, t], M[15, f, t])
            y00, y01 = _at4(s00, s01, s02, s03)  # (A^T m) A, row 0
            y10, y11 = _at4(s10, s11, s12, s13)  # row 1
            if has_bias:
                y00, y01, y10, y11 = y00 + bf, y01 + bf, y10 + bf, y11 + bf
            if relu:
                y00, y01 = _relu(y00, zero), _relu(y01, zero)
                y10, y11 = _relu(y10, zero), _relu(y11, zero)
            v = 2 * j
            _store(y, f, r, v, y00)
            _store(y, f, r, v + 1, y01)
            _store(y, f, r + 1, v, y10)
            _store(y, f, r + 1, v + 1, y11)


@numba.njit(inline="always", **_JIT)
def _relu(v, zero):
    r""":math:`\max(v, 0)`, the fused ReLU; NaN stays NaN, as with ``np.maximum``."""
    return zero if v < zero else v


@numba.njit(inline="always", **_JIT)
def _store(y, f, u, v, val):
    """Write one output; skip it if it falls outside the image (partial last tiles)."""
    if u < y.shape[1] and v < y.shape[2]:
        y[f, u, v] = val


# --------------------------------------------------------------------------- F(4x4, 3x3)


@numba.njit(inline="always", **_JIT)
def _bt6(d, k):
    r""":math:`B^\top d` for one 6-vector (the rows of :math:`B^\top` of :math:`F(4, 3)`).

    ``k = (2, 4, 5)`` in the data's dtype: a bare ``2`` is an int64 to Numba, and float32 times
    int64 would be computed in float64.
    """
    d0, d1, d2, d3, d4, d5 = d
    k2, k4, k5 = k
    return (k4 * d0 - k5 * d2 + d4,
            (d3 + d4) - k4 * (d1 + d2),
            k4 * (d1 - d2) + (d4 - d3),
            k2 * (d3 - d1) + (d4 - d2),
            k2 * (d1 - d3) + (d4 - d2),
            k4 * d1 - k5 * d3 + d5)


@numba.njit(inline="always", **_JIT)
def _at6(m0, m1, m2, m3, m4, m5, k):
    r""":math:`A^\top m` for one 6-vector: rows ``(1,1,1,1,1,0), (0,1,-1,2,-2,0),
    (0,1,1,4,4,0), (0,1,-1,8,-8,1)``; ``k = (2, 4, 8)`` in the data's dtype."""
    k2, k4, k8 = k
    p12, d12, p34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + p12 + p34, d12 + k2 * d34, p12 + k4 * p34, d12 + k8 * d34 + m5


@numba.njit(**_JIT)
def _input_transform_f4(image, mask, t0, tw, V, c):  # pragma: no cover - compiled
    r""":math:`V_{\xi\nu, c, t} = (B^\top d_{c,t} B)_{\xi\nu}` for 6x6 tiles
    :math:`d = \tilde x_{c,\,4i:4i+6,\,4j:4j+6}` (image rows and columns ``4i-1 .. 4i+4``,
    zeros outside); ``V``: ``(36, C, tr * tw)``; the rest as in :func:`_input_transform_f2`.

    The 36 intermediate values live in six 6-tuples (registers), not in a scratch array.
    """
    tr = V.shape[2] // tw
    d = np.zeros((6, 4 * tw + 2), dtype=V.dtype)  # the 6 padded rows of one row of tiles
    kc = (V.dtype.type(2), V.dtype.type(4), V.dtype.type(5))
    for i in range(tr):
        _stage_rows(image, mask, c, 4 * (t0 + i) - 1, d)
        for j in range(tw):
            q = 4 * j
            t = i * tw + j
            # columns b = 0..5 of B^T d, each a 6-vector over xi
            c0 = _bt6((d[0, q], d[1, q], d[2, q], d[3, q], d[4, q], d[5, q]), kc)
            c1 = _bt6((d[0, q + 1], d[1, q + 1], d[2, q + 1], d[3, q + 1], d[4, q + 1],
                       d[5, q + 1]), kc)
            c2 = _bt6((d[0, q + 2], d[1, q + 2], d[2, q + 2], d[3, q + 2], d[4, q + 2],
                       d[5, q + 2]), kc)
            c3 = _bt6((d[0, q + 3], d[1, q + 3], d[2, q + 3], d[3, q + 3], d[4, q + 3],
                       d[5, q + 3]), kc)
            c4 = _bt6((d[0, q + 4], d[1, q + 4], d[2, q + 4], d[3, q + 4], d[4, q + 4],
                       d[5, q + 4]), kc)
            c5 = _bt6((d[0, q + 5], d[1, q + 5], d[2, q + 5], d[3, q + 5], d[4, q + 5],
                       d[5, q + 5]), kc)
            for xi in range(6):  # row xi of (B^T d), times B: V[6 xi + nu]
                k = 6 * xi
                v0, v1, v2, v3, v4, v5 = _bt6((c0[xi], c1[xi], c2[xi], c3[xi], c4[xi], c5[xi]), kc)
                V[k, c, t] = v0
                V[k + 1, c, t] = v1
                V[k + 2, c, t] = v2
                V[k + 3, c, t] = v3
                V[k + 4, c, t] = v4
                V[k + 5, c, t] = v5


@numba.njit(**_JIT)
def _output_transform_f4(M, t0, tw, bias, relu, y, f):  # pragma: no cover - compiled
    r""":math:`y_{f,\,4i:4i+4,\,4j:4j+4} = A^\top m_{f,t} A\, (+ b_f)`; ``M``: ``(36, F, tr tw)``;
    outputs of a partial last tile that fall outside ``H, W`` are dropped."""
    tr = M.shape[2] // tw
    H, W = y.shape[1], y.shape[2]
    has_bias = bias is not None
    zero = y.dtype.type(0)
    bf = bias[f] if has_bias else zero
    m = M[:, f]
    out = y[f]
    kc = (M.dtype.type(2), M.dtype.type(4), M.dtype.type(8))
    for i in range(tr):
        r = 4 * (t0 + i)
        for j in range(tw):
            v = 4 * j
            t = i * tw + j
            # columns nu = 0..5 of A^T m, each a 4-vector over a
            s0 = _at6(m[0, t], m[6, t], m[12, t], m[18, t], m[24, t], m[30, t], kc)
            s1 = _at6(m[1, t], m[7, t], m[13, t], m[19, t], m[25, t], m[31, t], kc)
            s2 = _at6(m[2, t], m[8, t], m[14, t], m[20, t], m[26, t], m[32, t], kc)
            s3 = _at6(m[3, t], m[9, t], m[15, t], m[21, t], m[27, t], m[33, t], kc)
            s4 = _at6(m[4, t], m[10, t], m[16, t], m[22, t], m[28, t], m[34, t], kc)
            s5 = _at6(m[5, t], m[11, t], m[17, t], m[23, t], m[29, t], m[35, t], kc)
            full = r + 3 < H and v + 3 < W  # the whole tile is inside
            for a in range(4):  # row a of (A^T m), times A
                y0, y1, y2, y3 = _at6(s0[a], s1[a], s2[a], s3[a], s4[a], s5[a], kc)
                if has_bias:
                    y0, y1, y2, y3 = y0 + bf, y1 + bf, y2 + bf, y3 + bf
                if relu:
                    y0, y1 = _relu(y0, zero), _relu(y1, zero)
                    y2, y3 = _relu(y2, zero), _relu(y3, zero)
                if full:
                    out[r + a, v] = y0
                    out[r + a, v + 1] = y1
                    out[r + a, v + 2] = y2
                    out[r + a, v + 3] = y3
                else:
                    _store(y, f, r + a, v, y0)
                    _store(y, f, r + a, v + 1, y1)
                    _store(y, f, r + a, v + 2, y2)
                    _store(y, f, r + a, v + 3, y3)


# --------------------------------------------------------------------------- drivers


@numba.njit(**_JIT)
def _input_transform_channels(image, mask, t0, tw, V, m):  # pragma: no cover - compiled
    for c in range(image.shape[0]):
        if m == 2:
            _input_transform_f2(image, mask, t0, tw, V, c)
        else:
            _input_transform_f4(image, mask, t0, tw, V, c)


@numba.njit(**_JIT)
def _output_transform_channels(M, t0, tw, bias, relu, y, m):  # pragma: no cover - compiled
    for f in range(M.shape[1]):
        if m == 2:
            _output_transform_f2(M, t0, tw, bias, relu, y, f)
        else:
            _output_transform_f4(M, t0, tw, bias, relu, y, f)


def winograd_input_transform(image, mask, t0: int, tw: int, V, m: int) -> None:
    r""":math:`V = B^\top d B` for the tiles of rows ``t0 ...`` (``m`` = 2 or 4), all channels of
    one unpadded image ``(C, H, W)``, masked by ``mask > 0`` unless ``mask`` is None."""
    _input_transform_channels(image, mask, t0, tw, V, m)


def winograd_output_transform(M, t0: int, tw: int, bias, relu: bool, y, m: int) -> None:
    r""":math:`y = A^\top M A` (+ ``bias``, then ReLU if ``relu``) for the tiles of rows
    ``t0 ...``, all channels."""
    _output_transform_channels(M, t0, tw, bias, relu, y, m)
