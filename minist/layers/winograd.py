r"""Winograd's minimal filtering :math:`F(m \times m, 3 \times 3)`: the 3x3, stride-1, pad-1
convolution of VGG with fewer multiplications (Lavin & Gray 2016), for output tiles of
:math:`m = 2` (the one to learn from) and :math:`m = 4` (the one minist runs on the CPU).

**1-D first.** Two outputs of a 3-tap correlation, :math:`y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2`,
:math:`y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2`, take 6 multiplications directly but only 4 as

.. math::

    m_1 = (d_0 - d_2) g_0,\quad m_2 = (d_1 + d_2)\tfrac{g_0 + g_1 + g_2}{2},\quad
    m_3 = (d_2 - d_1)\tfrac{g_0 - g_1 + g_2}{2},\quad m_4 = (d_1 - d_3) g_2,

    y_0 = m_1 + m_2 + m_3, \qquad y_1 = m_2 - m_3 - m_4,

i.e. :math:`y = A^\top [(G g) \odot (B^\top d)]` with

.. math::

    B^\top = \begin{pmatrix} 1&0&-1&0\\ 0&1&1&0\\ 0&-1&1&0\\ 0&1&0&-1 \end{pmatrix},\quad
    G = \begin{pmatrix} 1&0&0\\ \frac12&\frac12&\frac12\\ \frac12&-\frac12&\frac12\\ 0&0&1
        \end{pmatrix},\quad
    A^\top = \begin{pmatrix} 1&1&1&0\\ 0&1&-1&-1 \end{pmatrix}.

The construction: both :math:`d` and :math:`g` are read as polynomials, evaluated at the points
:math:`0, 1, -1, \infty` (:math:`G g`, :math:`B^\top d`), multiplied pointwise, and the
product polynomial is recovered by interpolation (:math:`A^\top`). With the six points
:math:`0, \pm 1, \pm 2, \infty` the same recipe gives :math:`F(4, 3)`: 4 outputs from 6
multiplications instead of 12,

.. math::

    B^\top = \begin{pmatrix} 4&0&-5&0&1&0\\ 0&-4&-4&1&1&0\\ 0&4&-4&-1&1&0\\ 0&-2&-1&2&1&0\\
        0&2&-1&-2&1&0\\ 0&4&0&-5&0&1 \end{pmatrix},\quad
    G = \begin{pmatrix} \frac14&0&0\\ -\frac16&-\frac16&-\frac16\\ -\frac16&\frac16&-\frac16\\
        \frac1{24}&\frac1{12}&\frac16\\ \frac1{24}&-\frac1{12}&\frac16\\ 0&0&1 \end{pmatrix},\quad
    A^\top = \begin{pmatrix} 1&1&1&1&1&0\\ 0&1&-1&2&-2&0\\ 0&1&1&4&4&0\\ 0&1&-1&8&-8&1
        \end{pmatrix}.

**2-D by nesting** the 1-D algorithm along rows and columns: an :math:`\alpha \times \alpha`
input tile :math:`d` (:math:`\alpha = m + 2`) and a 3x3 filter :math:`g` give an
:math:`m \times m` output tile

.. math::

    Y = A^\top \big[(G g G^\top) \odot (B^\top d B)\big] A

with :math:`\alpha^2` multiplications instead of :math:`9 m^2`: 16 for 36 (:math:`m = 2`,
2.25x fewer), 36 for 144 (:math:`m = 4`, 4x fewer).

**Across channels** the elementwise product becomes a sum over input channels :math:`c`, which
is a matrix product for each of the :math:`\alpha^2` positions :math:`(\xi, \nu)` of the tile:

.. math::

    U_{\xi\nu} = [G w_{f,c} G^\top]_{\xi\nu} \in \mathbb{R}^{F \times C}, \qquad
    V_{\xi\nu} = [B^\top d_{c,t} B]_{\xi\nu} \in \mathbb{R}^{C \times T},

    M_{\xi\nu} = U_{\xi\nu} V_{\xi\nu} \in \mathbb{R}^{F \times T}, \qquad
    y_{f,t} = A^\top M_{:, f, t} A,

over the :math:`T = \lceil H/m \rceil \lceil W/m \rceil` tiles :math:`t` (tiles overlap by 2
pixels; tile :math:`(i, j)` reads :math:`\tilde x_{c,\,mi:mi+\alpha,\,mj:mj+\alpha}`). The GEMMs
do :math:`\alpha^2 F C T` multiply-adds against :math:`9 F C H W` for im2col; the transforms
are additions and multiplications by small constants, :math:`O((C + F) H W)` work, done in one
pass each (:mod:`.winograd_numba` on the CPU, :mod:`.winograd_cupy` on the GPU; the strided
slices in this module are the same equations, to read).

**Accuracy.** The transforms of :math:`F(2, 3)` add, subtract and halve: in float32 the result
is within a few units in the last place of the direct one. Those of :math:`F(4, 3)` multiply by
up to 8 and divide by 24, so rounding errors grow: a few times those of the direct convolution
(tests bound both against a float64 reference; numbers in the README, "Performance").

**Backward.** For stride 1 and "same" padding the gradient with respect to the input is again a
3x3, pad-1 convolution: :math:`dx = dy \star \operatorname{flip}(w)^\top`, with
:math:`w'_{c,f,p,q} = w_{f,c,2-p,2-q}` (:func:`flip_kernel`), so it runs through the same code.

Memory: only the input (padded once) and the output are whole; :math:`V` and :math:`M` are built
for a block of tile rows at a time (``ExecutionConfig.winograd_block_bytes``,
:func:`block_plan`), small enough to stay in the CPU's cache between the input transform, the
GEMMs and the output transform.

**Weights are transformed once.** :math:`U = G w G^\top` depends only on the weights, so
:func:`transformed_weights` keeps it in a cache the caller owns and hands in
(``weight_cache``): :class:`minist.vgg.VGG` keeps one per layer beside its weights, which never
change during a run. Without a cache the weights are transformed at every call (correct,
slower).

Derivation: ``tutorials/01_convolution`` (convolution) and this docstring (Winograd).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minist.backend import get_array_module
from minist.execution import ExecutionConfig, config_for
from minist.threads import blas_scope, worker_pool


def _kernels(config: ExecutionConfig):
    """The module with the two transform kernels for the config's device -- Numba on the CPU
    (:mod:`.winograd_numba`), CUDA on the GPU (:mod:`.winograd_cupy`) -- or None when
    ``config.kernels`` is off (the slices version below)."""
    if not config.kernels:
        return None
    if config.cpu:
        from minist.layers import winograd_numba
        return winograd_numba
    from minist.layers import winograd_cupy
    return winograd_cupy


class Transforms(NamedTuple):
    r"""The matrices of :math:`F(m, 3)`: :math:`B^\top` (α×α), :math:`G` (α×3), :math:`A^\top`
    (m×α), α = m + 2."""

    BT: np.ndarray
    G: np.ndarray
    AT: np.ndarray


TRANSFORMS = {
    2: Transforms(
        BT=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        G=np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        AT=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: Transforms(
        BT=np.array(
            [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
             [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64
        ),
        G=np.array(
            [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64
        ),
        AT=np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
            np.float64,
        ),
    ),
}


def applies(w, stride: int, pad: int) -> bool:
    """Whether a convolution is one this module computes: 3x3 kernel, stride 1, pad 1."""
    return w.shape[2] == 3 and w.shape[3] == 3 and stride == 1 and pad == 1


def flip_kernel(w):
    r""":math:`w'_{c,f,p,q} = w_{f,c,2-p,2-q}`: the kernel of the input-gradient convolution."""
    return w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


def weight_transform(w, m: int = 2):
    r""":math:`U_{\xi\nu,f,c} = (G\, w_{f,c}\, G^\top)_{\xi\nu}`, shape ``(α², F, C)``, ``w.dtype``.

    Computed in float64 and rounded once.
    """
    xp = get_array_module(w)
    G = xp.asarray(TRANSFORMS[m].G)
    alpha = G.shape[0]
    U = xp.tensordot(G, w.astype(xp.float64), axes=(1, 2))  # (G w)[a, f, c, q]: one GEMM
    U = xp.tensordot(U, G, axes=(3, 1))  # (G w G^T)[a, f, c, b]
    F, C = w.shape[:2]
    return xp.ascontiguousarray(U.transpose(0, 3, 1, 2).reshape(alpha**2, F, C).astype(w.dtype))


def transformed_weights(w, transpose: bool = False, m: int = 2, weight_cache: dict | None = None):
    r""":math:`U` of ``w`` (or, with ``transpose``, of :math:`\operatorname{flip}(w)^\top`, the
    kernel of the input gradient).

    ``weight_cache``: a dict owned by the caller, one per weight array, in which the transforms
    are kept between calls (keyed by ``(transpose, m)``); the caller promises that ``w`` does not
    change while it keeps the dict. :class:`minist.vgg.VGG` keeps one per layer, so the cache
    lives and dies with the network's own weights. ``None``: computed at every call.
    """
    key = (transpose, m)
    if weight_cache is not None and key in weight_cache:
        return weight_cache[key]
    U = weight_transform(flip_kernel(w) if transpose else w, m)
    if weight_cache is not None:
        weight_cache[key] = U
    return U


def _product_buffer(xp, count: int, rows: int, cols: int, dtype):
    """An empty ``(count, rows, cols)`` array for :math:`V` or :math:`M` (``count`` = α²).

    The transforms touch all α² matrices at once, one stream each. On the CPU the matrices are
    set 64 bytes further apart than ``rows * cols`` elements: when their distance is a multiple
    of 4 KiB, the streams land in the same L1 cache sets and evict each other (measured: the
    input transform of a 64-channel 256 px layer took 24 ms instead of 3.5 ms).
    """
    if xp is not np:
        return xp.empty((count, rows, cols), dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    step = rows * cols + 64 // itemsize
    base = np.empty(count * step, dtype=dtype)
    return np.lib.stride_tricks.as_strided(
        base, (count, rows, cols), (step * itemsize, cols * itemsize, itemsize), writeable=True
    )


def _combine(coefficients, terms):
    r""":math:`\sum_k a_k t_k` over the non-zero coefficients, in the terms' dtype."""
    out = None
    for a, t in zip(coefficients, terms, strict=True):
        if a == 0:
            continue
        term = t if a == 1 else -t if a == -1 else t.dtype.type(a) * t
        out = term if out is None else out + term
    return out


def input_transform_xp(x_pad, t0: int, tw: int, V, m: int):
    r"""CuPy/NumPy version of the Numba input transforms: :math:`V = B^\top d B` for all tiles
    of the block at once.

    ``d[a][b]`` is the strided view :math:`\tilde x_{c,\,m i+a,\,m j+b}` over the tiles of the
    block; :math:`B^\top d B` is then sums of views, rows first.
    """
    BT = TRANSFORMS[m].BT
    alpha = m + 2
    C = x_pad.shape[0]
    tr = V.shape[2] // tw
    r0 = m * t0
    d = [[x_pad[:, r0 + a : r0 + a + m * tr : m, b : b + m * tw : m] for b in range(alpha)]
         for a in range(alpha)]
    rows = [[_combine(BT[xi], [d[a][b] for a in range(alpha)]) for b in range(alpha)]
            for xi in range(alpha)]  # (B^T d)[xi][b]
    Vv = V.reshape(alpha, alpha, C, tr, tw)
    for xi in range(alpha):  # (B^T d B)[xi][nu]
        for nu in range(alpha):
            Vv[xi, nu] = _combine(BT[nu], rows[xi])


def output_transform_xp(M, t0: int, tw: int, bias, relu: bool, y, m: int):
    r"""CuPy/NumPy version of the Numba output transforms: :math:`Y = A^\top m A` (+ bias, then
    ReLU if ``relu``) on all tiles of the block at once; the outputs of a partial last tile
    row/column are cropped."""
    AT = TRANSFORMS[m].AT
    alpha = m + 2
    F = M.shape[1]
    H, W = y.shape[1], y.shape[2]
    tr = M.shape[2] // tw
    mm = M.reshape(alpha, alpha, F, tr, tw)
    cols = [[_combine(AT[a], [mm[xi, nu] for xi in range(alpha)]) for nu in range(alpha)]
            for a in range(m)]  # (A^T m)[a][nu]
    r0 = m * t0
    for a in range(m):
        for b in range(m):
            val = _combine(AT[b], cols[a])  # ((A^T m) A)[a][b]
            rows = min(tr, (H - r0 - a + m - 1) // m)  # tiles whose output row is inside
            width = min(tw, (W - b + m - 1) // m)
            val = val[:, :rows, :width]
            if bias is not None:
                val = val + bias.reshape(F, 1, 1)
            if relu:
                val = get_array_module(val).maximum(val, 0)
            y[:, r0 + a : r0 + a + m * rows : m, b : b + m * width : m] = val


def _tile_rows_per_chunk(budget: int, C: int, F: int, tw: int, itemsize: int, th: int, m: int):
    """How many rows of tiles share one block of V and M within ``budget`` bytes."""
    return max(1, min(th, budget // ((m + 2) ** 2 * (C + F) * tw * itemsize)))


class BlockPlan(NamedTuple):
    """How one Winograd call is cut up: ``workers`` threads (1: the calling thread, with BLAS's
    own threads in the GEMMs), each holding one block of ``rows`` tile rows of :math:`V` and
    :math:`M` at a time."""

    workers: int
    rows: int


def block_plan(C: int, F: int, H: int, W: int, itemsize: int, m: int,
               config: ExecutionConfig) -> BlockPlan:
    """The blocks and threads of a call on a ``(C, H, W)`` input with ``F`` outputs.

    On the CPU with the Numba kernels and ``config.threads > 1``, when there are at least
    ``config.pipeline_min_blocks_per_thread`` blocks of ``config.pipeline_block_bytes`` per
    thread, each of ``config.threads`` workers runs whole blocks on a single-threaded BLAS;
    otherwise one thread runs blocks of ``config.winograd_block_bytes``.
    :func:`winograd_conv3x3` follows this plan and the memory planner (:mod:`minist.memory`)
    counts its blocks.
    """
    th, tw = -(-H // m), -(-W // m)
    if config.cpu and config.kernels and config.threads > 1:
        rows = _tile_rows_per_chunk(config.pipeline_block_bytes, C, F, tw, itemsize, th, m)
        if -(-th // rows) >= config.pipeline_min_blocks_per_thread * config.threads:
            return BlockPlan(config.threads, rows)
    return BlockPlan(1, _tile_rows_per_chunk(config.winograd_block_bytes, C, F, tw, itemsize,
                                             th, m))


def block_bytes(C: int, F: int, W: int, itemsize: int, m: int, rows: int) -> int:
    """Bytes of one block of :math:`V` and :math:`M` (``rows`` tile rows) that a worker holds."""
    return (m + 2) ** 2 * (C + F) * rows * -(-W // m) * itemsize


def winograd_conv3x3(x, w, b=None, transpose: bool = False, m: int | None = None,
                     relu: bool = False, mask=None, *, config: ExecutionConfig | None = None,
                     weight_cache: dict | None = None):
    r"""3x3, stride-1, pad-1 convolution by :math:`F(m \times m, 3 \times 3)` (module docstring).

    Args:
        x: input ``(N, C, H, W)``.
        w: weights ``(F, C, 3, 3)`` (any strides; cast to ``x.dtype``).
        b: bias ``(F,)`` or ``None``.
        transpose: convolve with :math:`\operatorname{flip}(w)^\top` (shape ``(C, F, 3, 3)``)
            instead: the input gradient :math:`dx = dy \star \operatorname{flip}(w)^\top`.
        m: output tile size, 2 or 4 (default ``config.winograd_tile``).
        relu: return :math:`\max(y, 0)` instead, applied as the outputs are written (the ReLU
            that follows every convolution of VGG, fused).
        mask: convolve :math:`x \odot [\text{mask} > 0]` instead (``mask`` shaped like ``x``),
            masked as the tiles are read: the ReLU backward :math:`dy \odot [y > 0]`, fused.
        config: the execution config (:mod:`minist.execution`; default: the device's).
        weight_cache: where the transforms of ``w`` are kept between calls
            (:func:`transformed_weights`); None computes them at every call.

    Returns:
        ``y`` of shape ``(N, F, H, W)`` and dtype ``x.dtype``.
    """
    xp = get_array_module(x)
    config = config_for(x, config)
    m = config.winograd_tile if m is None else m
    if m not in TRANSFORMS:
        raise ValueError(f"winograd: tile size m must be one of {sorted(TRANSFORMS)}, got {m!r}")
    N, C, H, W = x.shape
    cache = None if weight_cache is None else weight_cache.setdefault(x.dtype.str, {})
    U = transformed_weights(w.astype(x.dtype, copy=False), transpose, m, cache)
    F = U.shape[1]
    if b is not None:
        b = xp.ascontiguousarray(b.astype(x.dtype, copy=False))
    th, tw = -(-H // m), -(-W // m)
    kernels = _kernels(config)
    # Numba kernels release the GIL: several threads can each run whole blocks.
    threads, rows = block_plan(C, F, H, W, x.itemsize, m, config)
    blocks = list(range(0, th, rows))
    y = xp.empty((N, F, H, W), dtype=x.dtype)
    if kernels is None:  # the slices version reads tiles from a padded copy
        x_pad = xp.zeros((C, m * th + 2, m * tw + 2), dtype=x.dtype)  # pad 1, more to fill tiles
    for n in range(N):
        source_mask = None
        if kernels is not None:  # kernels read the zeros of the padding and the mask themselves
            source = x[n]
            source_mask = None if mask is None else mask[n]
        else:
            x_pad[:, 1 : H + 1, 1 : W + 1] = x[n] if mask is None else x[n] * (mask[n] > 0)
            source = x_pad
        work = (kernels, source, source_mask, U, b, relu, y[n])
        if threads == 1:
            _run_blocks(*work, blocks, rows, tw, m)
            continue
        with blas_scope(1):  # each thread: transform, GEMM on one BLAS thread, transform
            pool = worker_pool(threads)
            jobs = [pool.submit(_run_blocks, *work, blocks[k::threads], rows, tw, m)
                    for k in range(threads)]
            for job in jobs:
                job.result()
    return y


def _run_blocks(kn, source, mask, U, b, relu, y, starts, rows: int, tw: int, m: int) -> None:
    """Input transform, GEMMs and output transform for the blocks of tile rows ``starts``.

    ``kn``: the kernel module (:func:`_kernels`) or None for the slices. ``source``: the image
    ``(C, H, W)`` for the kernels (with its ``mask`` or None), its padded (and already masked)
    copy for the slices.
    """
    xp = get_array_module(source)
    count = (m + 2) ** 2
    C, F = source.shape[0], U.shape[1]
    th = -(-y.shape[1] // m)
    V = _product_buffer(xp, count, C, rows * tw, source.dtype)
    M = _product_buffer(xp, count, F, rows * tw, source.dtype)
    for t0 in starts:
        r = min(rows, th - t0)
        Vb, Mb = V, M
        if r < rows:  # last block: buffers of the right size
            Vb = _product_buffer(xp, count, C, r * tw, source.dtype)
            Mb = _product_buffer(xp, count, F, r * tw, source.dtype)
        if kn is not None:
            kn.winograd_input_transform(source, mask, t0, tw, Vb, m)
        else:
            input_transform_xp(source, t0, tw, Vb, m)
        xp.matmul(U, Vb, out=Mb)  # M_{xi nu} = U_{xi nu} V_{xi nu}: alpha^2 GEMMs
        if kn is not None:
            kn.winograd_output_transform(Mb, t0, tw, b, relu, y, m)
        else:
            output_transform_xp(Mb, t0, tw, b, relu, y, m)
