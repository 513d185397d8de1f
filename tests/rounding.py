r"""Tolerances derived from floating-point rounding, for comparing two computations of the same
numbers whose order of operations may differ (other blocks, threads, kernels or BLAS).

The standard forward error bound (Higham, *Accuracy and Stability of Numerical Algorithms*,
ch. 3): a value computed by :math:`n` rounded operations in sequence (sums of products, each
step rounded to the working precision with unit roundoff :math:`u`) lies within

.. math::

    |\hat y - y| \le \gamma_n \sum |\text{terms}|, \qquad \gamma_n = \frac{n u}{1 - n u},

of the exact :math:`y`, whatever the order of the sum. Two such computations in different orders
therefore differ by at most :math:`2 \gamma_n \sum |\text{terms}|`. BLAS libraries choose their
kernels and summation order by CPU model, matrix shape and thread count, so this -- not bit
equality -- is what two paths can promise on every machine.
"""

from __future__ import annotations

import numpy as np

from minist.layers import winograd as wg

U32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff of float32, 2^-24
U64 = float(np.finfo(np.float64).eps) / 2  # unit roundoff of float64, 2^-53


def gamma(n: int, u: float = U32) -> float:
    r""":math:`\gamma_n = n u / (1 - n u)`."""
    return n * u / (1 - n * u)


def two_orders(n: int, magnitude, u: float = U64) -> float:
    r"""Largest difference between two computations of the same sum of ``n`` rounded terms, in
    any two orders: :math:`2\gamma_n \max \sum |\text{terms}|` (``magnitude``: the sums of
    the terms' absolute values, an array or a number)."""
    return 2 * gamma(n, u) * float(np.max(np.abs(magnitude), initial=0.0))


def winograd_magnitudes(x, w, b, m: int) -> np.ndarray:
    r""":math:`\sum |\text{terms}|` of each output of :math:`F(m \times m, 3 \times 3)` (float64).

    The Winograd output is :math:`y = b + \sum_c A^\top[(G w_c G^\top) \odot (B^\top d_c B)]A`;
    with every matrix and input replaced by its absolute value the same formula adds up the
    magnitudes of all the terms that are summed (``x`` (N, C, H, W), ``w`` (F, C, 3, 3)).
    """
    BT, G, AT = (np.abs(a) for a in wg.TRANSFORMS[m])
    alpha = m + 2
    N, C, H, W = x.shape
    th, tw = -(-H // m), -(-W // m)
    x_pad = np.zeros((N, C, m * th + 2, m * tw + 2))
    x_pad[:, :, 1 : H + 1, 1 : W + 1] = np.abs(x)
    tiles = np.lib.stride_tricks.sliding_window_view(x_pad, (alpha, alpha), axis=(2, 3))
    tiles = tiles[:, :, ::m, ::m]  # (N, C, th, tw, alpha, alpha)
    V = np.einsum("ua,ncijab,vb->ncijuv", BT, tiles, BT)
    U = np.einsum("ua,fcab,vb->fcuv", G, np.abs(w), G)
    M = np.einsum("fcuv,ncijuv->nfijuv", U, V)
    Y = np.einsum("pu,nfijuv,qv->nfipjq", AT, M, AT).reshape(N, -1, th * m, tw * m)
    return Y[:, :, :H, :W] + np.abs(b).reshape(1, -1, 1, 1)


def winograd_float32_tolerance(x, w, b, m: int) -> np.ndarray:
    r"""Largest difference, output by output, between two float32 evaluations of the same
    Winograd convolution that sum in different orders: :math:`2\gamma_n \sum|\text{terms}|`.

    :math:`n` counts the rounded steps an output goes through: the input transform
    (:math:`B^\top d` then :math:`\cdot B`, up to :math:`\alpha` terms each, plus the products
    by constants), the weight transform (rounded once), the GEMM over the :math:`C` channels,
    the output transform (twice :math:`\alpha` terms plus products) and the bias.
    """
    alpha = m + 2
    n = 2 * (alpha + 1) + 1 + (x.shape[1] + 1) + 2 * (alpha + 1) + 1
    return 2 * gamma(n) * winograd_magnitudes(x, w, b, m)
