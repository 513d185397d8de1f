r"""Winograd's minimal filtering :math:`F(2 \times 2, 3 \times 3)`: the 3x3, stride-1, pad-1
convolution of VGG with 2.25x fewer multiplications (Lavin & Gray 2016).

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

**2-D by nesting** the 1-D algorithm along rows and columns: a 4x4 input tile :math:`d` and a
3x3 filter :math:`g` give a 2x2 output tile :math:`Y = A^\top [(G g G^\top) \odot (B^\top d
B)] A` with 16 multiplications instead of 36.

**Across channels** the elementwise product becomes a sum over input channels :math:`c`, which
is a matrix product for each of the 16 positions :math:`(\xi, \nu)` of the 4x4 tile:

.. math::

    U_{\xi\nu} = [G w_{f,c} G^\top]_{\xi\nu} \in \mathbb{R}^{F \times C}, \qquad
    V_{\xi\nu} = [B^\top d_{c,t} B]_{\xi\nu} \in \mathbb{R}^{C \times T},

    M_{\xi\nu} = U_{\xi\nu} V_{\xi\nu} \in \mathbb{R}^{F \times T}, \qquad
    y_{f,t} = A^\top M_{:, f, t} A,

over the :math:`T = \lceil H/2 \rceil \lceil W/2 \rceil` tiles :math:`t` (tiles overlap by 2
pixels; tile :math:`(i, j)` reads :math:`\tilde x_{c,\,2i:2i+4,\,2j:2j+4}`). The 16 GEMMs do
:math:`16 F C T \approx 4 F C H W` multiply-adds against :math:`9 F C H W` for im2col; the
transforms are additions only, :math:`O((C + F) H W)` work, done in one pass each
(:mod:`.kernels_numba` on the CPU, strided slices of the same equations on CuPy).

**Accuracy.** The transforms add and subtract, and :math:`G` halves, so in float32 the result
differs from the direct convolution by a few units in the last place relative to
:math:`\sum |w||x|` (the tests bound it; ``minist bench``-style measurements are in the report
of issue 4).

**Backward.** For stride 1 and "same" padding the gradient with respect to the input is again a
3x3, pad-1 convolution: :math:`dx = dy \star \operatorname{flip}(w)^\top`, with
:math:`w'_{c,f,p,q} = w_{f,c,2-p,2-q}` (:func:`flip_kernel`), so it runs through the same code.

Memory: only the input (padded once) and the output are whole; :math:`V` and :math:`M` are built
for a block of tile rows at a time (``CHUNK_BYTES``).
"""

from __future__ import annotations

import numpy as np

from minist.backend import get_array_module

# Bytes of V + M (the transformed input and the products) built at a time, per device.
CHUNK_BYTES = {"cpu": 12 * 2**20, "gpu": 512 * 2**20}
# NumPy arrays use the Numba transforms; False runs the NumPy-slices version instead (tests).
USE_NUMBA = {"cpu": True}

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def applies(w, stride: int, pad: int) -> bool:
    """Whether a convolution is one this module computes: 3x3 kernel, stride 1, pad 1."""
    return w.shape[2] == 3 and w.shape[3] == 3 and stride == 1 and pad == 1


def flip_kernel(w):
    r""":math:`w'_{c,f,p,q} = w_{f,c,2-p,2-q}`: the kernel of the input-gradient convolution."""
    return w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


def weight_transform(w):
    r""":math:`U_{\xi\nu,f,c} = (G\, w_{f,c}\, G^\top)_{\xi\nu}`, shape ``(16, F, C)``, ``w.dtype``.

    Computed in float64 and rounded once (the :math:`\tfrac12` entries of :math:`G` are exact).
    """
    xp = get_array_module(w)
    G = xp.asarray(_G)
    U = xp.tensordot(G, w.astype(xp.float64), axes=(1, 2))  # (G w)[a, f, c, q]: one GEMM
    U = xp.tensordot(U, G, axes=(3, 1))  # (G w G^T)[a, f, c, b]
    F, C = w.shape[:2]
    return xp.ascontiguousarray(U.transpose(0, 3, 1, 2).reshape(16, F, C).astype(w.dtype))


def input_transform_xp(x_pad, t0: int, tw: int, V):
    r"""CuPy/NumPy version of :func:`.kernels_numba.winograd_input_transform`.

    ``d[a][b]`` is the strided view :math:`\tilde x_{c,\,2i+a,\,2j+b}` over the tiles of the
    block; :math:`B^\top d B` is then 16 sums of views, rows first.
    """
    C = x_pad.shape[0]
    tr = V.shape[2] // tw
    r0 = 2 * t0
    d = [[x_pad[:, r0 + a : r0 + a + 2 * tr : 2, b : b + 2 * tw : 2] for b in range(4)]
         for a in range(4)]
    # rows: (B^T d)[xi][b]
    bt = [[d[0][b] - d[2][b] for b in range(4)], [d[1][b] + d[2][b] for b in range(4)],
          [d[2][b] - d[1][b] for b in range(4)], [d[1][b] - d[3][b] for b in range(4)]]
    Vv = V.reshape(4, 4, C, tr, tw)
    for xi in range(4):  # columns: (B^T d B)[xi][nu]
        t = bt[xi]
        Vv[xi, 0] = t[0] - t[2]
        Vv[xi, 1] = t[1] + t[2]
        Vv[xi, 2] = t[2] - t[1]
        Vv[xi, 3] = t[1] - t[3]


def output_transform_xp(M, t0: int, tw: int, bias, y):
    r"""CuPy/NumPy version of :func:`.kernels_numba.winograd_output_transform`.

    :math:`Y = A^\top m A` on all tiles of the block at once, plus the bias; the outputs of a
    partial last tile row/column are cropped.
    """
    F = M.shape[1]
    H, W = y.shape[1], y.shape[2]
    tr = M.shape[2] // tw
    m = M.reshape(4, 4, F, tr, tw)
    s = [[m[0, nu] + m[1, nu] + m[2, nu] for nu in range(4)],  # (A^T m)[0][nu]
         [m[1, nu] - m[2, nu] - m[3, nu] for nu in range(4)]]  # (A^T m)[1][nu]
    r0 = 2 * t0
    for a in range(2):
        for b in range(2):
            t = s[a]
            val = t[0] + t[1] + t[2] if b == 0 else t[1] - t[2] - t[3]  # ((A^T m) A)[a][b]
            rows = min(tr, (H - r0 - a + 1) // 2)  # tiles whose output row is inside
            cols = min(tw, (W - b + 1) // 2)
            val = val[:, :rows, :cols]
            if bias is not None:
                val = val + bias.reshape(F, 1, 1)
            y[:, r0 + a : r0 + a + 2 * rows : 2, b : b + 2 * cols : 2] = val


def _tile_rows_per_chunk(xp, C: int, F: int, tw: int, itemsize: int, th: int) -> int:
    budget = CHUNK_BYTES["cpu" if xp.__name__ == "numpy" else "gpu"]
    return max(1, min(th, budget // (16 * (C + F) * tw * itemsize)))


def winograd_conv3x3(x, w, b=None):
    r"""3x3, stride-1, pad-1 convolution by :math:`F(2 \times 2, 3 \times 3)` (module docstring).

    Args:
        x: input ``(N, C, H, W)``.
        w: weights ``(F, C, 3, 3)`` (any strides; cast to ``x.dtype``).
        b: bias ``(F,)`` or ``None``.

    Returns:
        ``y`` of shape ``(N, F, H, W)`` and dtype ``x.dtype``.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F = w.shape[0]
    U = weight_transform(w.astype(x.dtype, copy=False))
    if b is not None:
        b = xp.ascontiguousarray(b.astype(x.dtype, copy=False))
    th, tw = (H + 1) // 2, (W + 1) // 2
    rows = _tile_rows_per_chunk(xp, C, F, tw, x.itemsize, th)
    V = xp.empty((16, C, rows * tw), dtype=x.dtype)
    M = xp.empty((16, F, rows * tw), dtype=x.dtype)
    y = xp.empty((N, F, H, W), dtype=x.dtype)
    x_pad = xp.zeros((C, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)  # pad 1, plus 1 if odd
    cpu = xp is np and USE_NUMBA["cpu"]
    if cpu:
        from minist.layers import kernels_numba as kn
    for n in range(N):
        x_pad[:, 1 : H + 1, 1 : W + 1] = x[n]
        for t0 in range(0, th, rows):
            r = min(rows, th - t0)
            Vb, Mb = V[:, :, : r * tw], M[:, :, : r * tw]
            if r < rows:  # last block: contiguous buffers of the right size
                Vb, Mb = xp.empty_like(Vb), xp.empty_like(Mb)
            if cpu:
                kn.winograd_input_transform(x_pad, t0, tw, Vb)
            else:
                input_transform_xp(x_pad, t0, tw, Vb)
            xp.matmul(U, Vb, out=Mb)  # M_{xi nu} = U_{xi nu} V_{xi nu}: 16 GEMMs
            if cpu:
                kn.winograd_output_transform(Mb, t0, tw, b, y[n])
            else:
                output_transform_xp(Mb, t0, tw, b, y[n])
    return y
