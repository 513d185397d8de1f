r"""2-D convolution (cross-correlation, as in every deep-learning library), NCHW.

Forward, for input :math:`x \in \mathbb{R}^{N \times C \times H \times W}`, weights
:math:`w \in \mathbb{R}^{F \times C \times K_H \times K_W}`, bias :math:`b \in \mathbb{R}^F`,
stride :math:`s` and zero padding :math:`P`:

.. math::

    y_{n,f,i,j} = b_f + \sum_{c,p,q} w_{f,c,p,q}\, \tilde x_{n,c,\,i s + p,\, j s + q},
    \qquad y \in \mathbb{R}^{N \times F \times H_o \times W_o},

where :math:`\tilde x` is :math:`x` padded with :math:`P` zeros on every side and
:math:`H_o = \lfloor (H + 2P - K_H) / s \rfloor + 1` (likewise :math:`W_o`).

Two implementations of the same equation:

* ``conv2d_forward`` / ``conv2d_backward`` -- fast: *im2col* turns every receptive field into a
  column of a matrix :math:`X_{col} \in \mathbb{R}^{C K_H K_W \times H_o W_o}` (built with one
  strided slice per kernel offset :math:`(p, q)`, so it runs unchanged on CuPy), and the whole
  layer becomes a matrix product :math:`Y = W_{mat} X_{col} + b` (float32 GEMM for float32 input;
  on the CPU it is done a cache-sized block of output rows at a time).
  On the CPU and the GPU, the 3x3, stride-1, pad-1 convolutions of VGG with 16 or more input
  channels (forward, and backward to the input) go instead through Winograd's
  :math:`F(4 \times 4, 3 \times 3)` (:mod:`minist.layers.winograd`): the same equation with 4x
  fewer multiplications, float32 results within ~1e-5 of the largest output (the execution
  config chooses, :mod:`minist.execution`; CUDA kernels for the transforms on CuPy).
* ``conv2d_relu_forward`` / ``conv2d_relu_backward`` -- a convolution and the ReLU after it as
  one step: the same numbers as the two layers, one array and one pass over memory less.
* ``conv2d_forward_loops`` / ``conv2d_backward_loops`` -- the equation written as loops over
  :math:`n, f, i, j`, to be read; the tests prove all of them agree.

Derivation: ``tutorials/01_convolution``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minist.backend import get_array_module
from minist.execution import ExecutionConfig, config_for
from minist.layers import winograd
from minist.layers.relu import ReluCache, relu_backward


class Conv2dCache(NamedTuple):
    """What the backward pass needs: the (unpadded) input, the weights and the geometry, and how
    the forward ran (its execution config and the weights' transform cache, or None).

    ``x`` is a reference to the caller's input, not a copy; the im2col columns are *not* kept
    (they are as large as :math:`K_H K_W` copies of the input) and are rebuilt only when the
    weight gradients are asked for.
    """

    x: Any
    w: Any
    stride: int
    pad: int
    config: ExecutionConfig | None = None
    weight_cache: dict | None = None


def _check(x, w, b, stride: int, pad: int) -> tuple[int, int]:
    """Validate shapes and geometry; return the output size ``(Ho, Wo)``."""
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: w must be 4-D (F, C, KH, KW), got shape {tuple(w.shape)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"conv2d: channel mismatch, x has C={x.shape[1]} but w expects C={w.shape[1]}"
        )
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ValueError(f"conv2d: b must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"conv2d: stride must be an integer >= 1, got {stride!r}")
    if int(pad) != pad or pad < 0:
        raise ValueError(f"conv2d: pad must be an integer >= 0, got {pad!r}")
    H, W = x.shape[2], x.shape[3]
    KH, KW = w.shape[2], w.shape[3]
    Ho = (H + 2 * pad - KH) // stride + 1
    Wo = (W + 2 * pad - KW) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"conv2d: output size {Ho}x{Wo} < 1 for input {H}x{W}, kernel {KH}x{KW}, "
            f"stride {stride}, pad {pad}"
        )
    return Ho, Wo


def _pad(x, pad: int):
    r""":math:`\tilde x`: ``x`` with ``pad`` zeros on each side of H and W (no copy if 0)."""
    if pad == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    x_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    x_pad[:, :, pad : pad + H, pad : pad + W] = x
    return x_pad


def _winograd(w, stride: int, pad: int, channels: int, config: ExecutionConfig) -> bool:
    """Whether this convolution runs as Winograd (:meth:`ExecutionConfig.uses_winograd`)."""
    return winograd.applies(w, stride, pad) and config.uses_winograd(channels)


def rows_per_chunk(budget: int, K: int, Ho: int, Wo: int, itemsize: int) -> int:
    """How many output rows ``i`` share one block of columns ``(K, rows * Wo)`` within
    ``budget`` bytes (``ExecutionConfig.im2col_block_bytes``; the memory planner asks the
    same)."""
    return max(1, min(Ho, budget // (K * Wo * itemsize)))


def _im2col_rows(x_pad_n, KH: int, KW: int, s: int, i0: int, r: int, Wo: int, buf):
    r"""Columns for output rows :math:`i_0 \le i < i_0 + r` of one image, written into ``buf``.

    :math:`X_{col}[(c,p,q), (i,j)] = \tilde x_{c,\,(i_0+i)s+p,\,js+q}`, shape
    ``(C*KH*KW, r*Wo)``: one strided slice per kernel offset :math:`(p, q)` copies
    :math:`\tilde x_{:, p::s, q::s}` into its share of the columns (this runs on CuPy too).
    """
    C = x_pad_n.shape[0]
    cols = buf[: C * KH * KW * r * Wo].reshape(C, KH, KW, r, Wo)
    for p in range(KH):
        for q in range(KW):
            top = i0 * s + p
            cols[:, p, q] = x_pad_n[:, top : top + s * r : s, q : q + s * Wo : s]
    return cols.reshape(C * KH * KW, r * Wo)


def conv2d_forward(x, w, b, stride: int = 1, pad: int = 1, *,
                   config: ExecutionConfig | None = None, weight_cache: dict | None = None):
    r"""Fast convolution: im2col, then GEMM.

    .. math::

        Y_n = W_{mat}\, X_{col,n} + b \mathbf{1}^\top, \qquad
        W_{mat} \in \mathbb{R}^{F \times C K_H K_W},\;
        X_{col,n} \in \mathbb{R}^{C K_H K_W \times H_o W_o},\;
        Y_n \in \mathbb{R}^{F \times H_o W_o}

    which is :math:`y_{n,f,i,j} = b_f + \sum_{c,p,q} w_{f,c,p,q}\,\tilde x_{n,c,is+p,js+q}`
    with the sum over :math:`(c,p,q)` done by the matrix product. The columns of
    :math:`X_{col,n}` are independent, so they are built and multiplied a block of output rows
    at a time (``config.im2col_block_bytes``): same result, a fraction of the memory. Where
    ``config.winograd`` is on, 3x3 stride-1 pad-1 layers with at least
    ``config.winograd_min_channels`` input channels use
    :func:`minist.layers.winograd.winograd_conv3x3` instead (same equation).

    Args:
        x: input ``(N, C, H, W)``.
        w: weights ``(F, C, KH, KW)``; cast to ``x.dtype`` if it differs.
        b: bias ``(F,)``; cast to ``x.dtype`` if it differs.
        stride: step :math:`s \ge 1` in both directions.
        pad: zeros :math:`P \ge 0` added on every side.
        config: the execution config (:mod:`minist.execution`); None: the device's default.
        weight_cache: a dict the caller keeps beside ``w`` (which must then not change) where
            Winograd keeps the transforms of ``w`` between calls; None: transformed per call.

    Returns:
        ``(y, cache)`` with ``y`` of shape ``(N, F, Ho, Wo)`` and dtype ``x.dtype``.

    Derivation: ``tutorials/01_convolution``.
    """
    _check(x, w, b, stride, pad)
    config = config_for(x, config)
    w = w.astype(x.dtype, copy=False)
    b = b.astype(x.dtype, copy=False)
    cache = Conv2dCache(x, w, stride, pad, config, weight_cache)
    if _winograd(w, stride, pad, w.shape[1], config):
        y = winograd.winograd_conv3x3(x, w, b, config=config, weight_cache=weight_cache)
        return y, cache
    return _im2col_forward(x, w, b, stride, pad, config), cache


def _im2col_forward(x, w, b, stride: int, pad: int, config: ExecutionConfig):
    """:math:`Y = W_{mat} X_{col} + b` a block of output rows at a time (``b`` may be None)."""
    xp = get_array_module(x)
    Ho, Wo = _check(x, w, b, stride, pad)
    N = x.shape[0]
    F, C, KH, KW = w.shape
    K = C * KH * KW
    w_mat = w.reshape(F, K)
    x_pad = _pad(x, pad)
    rows = rows_per_chunk(config.im2col_block_bytes, K, Ho, Wo, x.itemsize)
    buf = xp.empty(K * rows * Wo, dtype=x.dtype)
    y = xp.empty((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for i0 in range(0, Ho, rows):
            r = min(rows, Ho - i0)
            cols = _im2col_rows(x_pad[n], KH, KW, stride, i0, r, Wo, buf)
            y[n, :, i0 : i0 + r] = (w_mat @ cols).reshape(F, r, Wo)  # W_mat X_col
    if b is not None:
        y += b.reshape(1, F, 1, 1)  # + b 1^T
    return y


def conv2d_backward(dy, cache: Conv2dCache, weight_grads: bool = False):
    r"""Fast gradients of the convolution, given :math:`\partial L / \partial y`.

    With :math:`Y_n = W_{mat} X_{col,n} + b\mathbf 1^\top` the matrix calculus is one line each:

    .. math::

        \frac{\partial L}{\partial X_{col,n}} = W_{mat}^\top\, dY_n, \qquad
        \frac{\partial L}{\partial W_{mat}} = \sum_n dY_n\, X_{col,n}^\top, \qquad
        \frac{\partial L}{\partial b} = \sum_{n,i,j} dy_{n,:,i,j}.

    Key step for :math:`dx`: every input pixel was copied into several columns by im2col, so
    its gradient is the **sum** of the gradients of all its copies -- *col2im*, the adjoint of
    im2col: for each kernel offset :math:`(p, q)`, a strided add of that share of
    :math:`W_{mat}^\top dY` into :math:`d\tilde x_{:, :, p::s, q::s}`, then the padding is
    cropped away. Written out, :math:`dx` is the "full" correlation of :math:`dy` (dilated by
    the stride) with the spatially flipped, channel-transposed kernel; :math:`dw` is the
    correlation of :math:`\tilde x` with :math:`dy`. Like the forward pass, this runs a block
    of output rows at a time; the columns are rebuilt only for ``dw``, never cached. For stride
    1 (all of VGG) :math:`dx` is computed as that correlation, by the forward pass's im2col
    (:func:`_dx_by_correlation`, less memory traffic); col2im serves the other strides.

    Args:
        dy: upstream gradient ``(N, F, Ho, Wo)``.
        cache: from :func:`conv2d_forward` (or :func:`conv2d_forward_loops`).
        weight_grads: also compute ``dw`` and ``db`` (style transfer needs only ``dx``).

    Returns:
        ``(dx, dw, db)``: ``dx`` ``(N, C, H, W)``; ``dw`` ``(F, C, KH, KW)`` and ``db`` ``(F,)``
        when ``weight_grads``, else ``None``.

    Derivation: ``tutorials/01_convolution``.
    """
    x, w, s, pad, config, weight_cache = cache
    config = config_for(dy, config)
    F, C, KH, KW = w.shape
    if _winograd(w, s, pad, w.shape[0], config):  # dy * flip(w)^T, pad 1
        dx = winograd.winograd_conv3x3(dy, w, transpose=True, config=config,
                                       weight_cache=weight_cache)
    elif s == 1 and KH == KW and pad <= KH - 1:
        dx = _dx_by_correlation(dy, cache, config)
    else:
        dx = _col2im_backward(dy, cache, config)
    if not weight_grads:
        return dx, None, None
    dw = _weight_gradient(dy, cache, config)
    db = dy.sum(axis=(0, 2, 3))  # sum over n, i, j
    return dx, dw, db


def _dx_by_correlation(dy, cache: Conv2dCache, config: ExecutionConfig):
    r""":math:`dx` for stride 1 as a forward convolution: the "full" correlation of :math:`dy`
    with the flipped, channel-transposed kernel :math:`w'_{c,f,p,q} = w_{f,c,K-1-p,K-1-q}`,

    .. math::

        dx_{c,u,v} = \sum_{f,p,q} w'_{c,f,p,q}\, \widetilde{dy}_{f,\,u+p,\,v+q},

    with :math:`dy` padded by :math:`K-1-P`. Same numbers as col2im, but built by the forward
    pass's im2col (copies) instead of :math:`K^2` read-modify-write adds into :math:`dx`: about
    half the memory traffic, which is what a GPU convolution is bound by.
    """
    w, pad = cache.w, cache.pad
    K = w.shape[2]
    w_t = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return _im2col_forward(dy, w_t, None, 1, K - 1 - pad, config)


def _col2im_backward(dy, cache: Conv2dCache, config: ExecutionConfig):
    r""":math:`dx` by :math:`dX_{col} = W_{mat}^\top dY` and col2im, a block of rows at a time."""
    x, w, s, pad = cache[:4]
    xp = get_array_module(dy, x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    K = C * KH * KW
    w_mat_t = w.reshape(F, K).T
    dx_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dy.dtype)
    rows = rows_per_chunk(config.im2col_block_bytes, K, Ho, Wo, dy.itemsize)
    for n in range(N):
        for i0 in range(0, Ho, rows):
            r = min(rows, Ho - i0)
            dy_mat = dy[n, :, i0 : i0 + r].reshape(F, r * Wo)  # dY for these rows
            dcols = (w_mat_t @ dy_mat).reshape(C, KH, KW, r, Wo)  # dX_col = W_mat^T dY
            for p in range(KH):  # col2im: the copies of each padded pixel add up
                for q in range(KW):
                    top = i0 * s + p
                    dx_pad[n, :, top : top + s * r : s, q : q + s * Wo : s] += dcols[:, p, q]
    return dx_pad[:, :, pad : pad + H, pad : pad + W] if pad else dx_pad


def _weight_gradient(dy, cache: Conv2dCache, config: ExecutionConfig):
    r""":math:`dW_{mat} = \sum_n dY_n X_{col,n}^\top`, the columns rebuilt a block at a time."""
    x, w, s, pad = cache[:4]
    xp = get_array_module(dy, x)
    N = x.shape[0]
    F, C, KH, KW = w.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    K = C * KH * KW
    x_pad = _pad(x, pad)
    rows = rows_per_chunk(config.im2col_block_bytes, K, Ho, Wo, dy.itemsize)
    buf = xp.empty(K * rows * Wo, dtype=x.dtype)
    dw_mat = xp.zeros((F, K), dtype=dy.dtype)
    for n in range(N):
        for i0 in range(0, Ho, rows):
            r = min(rows, Ho - i0)
            dy_mat = dy[n, :, i0 : i0 + r].reshape(F, r * Wo)
            cols = _im2col_rows(x_pad[n], KH, KW, s, i0, r, Wo, buf)
            dw_mat += dy_mat @ cols.T  # dW_mat = sum dY X_col^T
    return dw_mat.reshape(F, C, KH, KW)


class ConvReluCache(NamedTuple):
    """Caches of a convolution and the ReLU after it (:func:`conv2d_relu_forward`); ``relu`` may
    be set to None when a max pooling follows (see :func:`conv2d_relu_backward`)."""

    conv: Conv2dCache
    relu: ReluCache | None


def conv2d_relu_forward(x, w, b, stride: int = 1, pad: int = 1, *,
                        config: ExecutionConfig | None = None, weight_cache: dict | None = None):
    r"""A convolution and the ReLU after it in one step: :math:`y = \max(0,\, W * x + b)`.

    The same numbers as ``relu_forward(conv2d_forward(x, w, b, stride, pad)[0])``, with one
    output array instead of two and one pass less over memory: Winograd applies the max as it
    writes its outputs; im2col's fresh output is rectified in place. (VGG uses this for every
    convolution whose own output is not asked for; the tests prove it equals the two layers.)

    ``config``, ``weight_cache``: as for :func:`conv2d_forward`. Returns ``(y,
    ConvReluCache)``. Derivations: ``tutorials/01_convolution``,
    ``tutorials/02_relu_and_pooling``.
    """
    _check(x, w, b, stride, pad)
    config = config_for(x, config)
    w = w.astype(x.dtype, copy=False)
    b = b.astype(x.dtype, copy=False)
    if _winograd(w, stride, pad, w.shape[1], config):
        y = winograd.winograd_conv3x3(x, w, b, relu=True, config=config,
                                      weight_cache=weight_cache)
    else:
        y = _im2col_forward(x, w, b, stride, pad, config)
        get_array_module(y).maximum(y, 0, out=y)  # y is ours: rectify in place
    conv = Conv2dCache(x, w, stride, pad, config, weight_cache)
    return y, ConvReluCache(conv, ReluCache(y))


def conv2d_relu_backward(dy, cache: ConvReluCache, weight_grads: bool = False):
    r"""Gradients of :func:`conv2d_relu_forward`: :math:`dz = dy \odot [y > 0]`, then
    :func:`conv2d_backward` of :math:`dz`.

    With Winograd, :math:`dz` is never stored: the input transform reads :math:`dy` through the
    mask :math:`[y > 0]`. A cache whose ``relu`` is None means :math:`dy` is already
    :math:`dz` (a max pooling applied the mask, :func:`minist.layers.pool.relu_max_pool_backward`).
    Same returns as :func:`conv2d_backward`.
    """
    conv = cache.conv
    if cache.relu is None:  # the mask was applied further down (pool.relu_max_pool_backward)
        return conv2d_backward(dy, conv, weight_grads)
    config = config_for(dy, conv.config)
    if not weight_grads and _winograd(conv.w, conv.stride, conv.pad, conv.w.shape[0], config):
        dx = winograd.winograd_conv3x3(dy, conv.w, transpose=True, mask=cache.relu.mask,
                                       config=config, weight_cache=conv.weight_cache)
        return dx, None, None
    return conv2d_backward(relu_backward(dy, cache.relu), cache.conv, weight_grads)


def conv2d_forward_loops(x, w, b, stride: int = 1, pad: int = 1):
    r"""Readable convolution: the defining equation as loops over :math:`n, f, i, j`.

    .. math::

        y_{n,f,i,j} = b_f + \sum_{c,p,q} w_{f,c,p,q}\,\tilde x_{n,c,\,is+p,\,js+q}

    The sum over :math:`(c, p, q)` is the elementwise product of the filter
    :math:`w_{f} \in \mathbb{R}^{C \times K_H \times K_W}` with the receptive field
    :math:`\tilde x_{n,:,is:is+K_H,js:js+K_W}`, summed. Slow; same arguments and results as
    :func:`conv2d_forward`. Derivation: ``tutorials/01_convolution``.
    """
    Ho, Wo = _check(x, w, b, stride, pad)
    xp = get_array_module(x)
    w = w.astype(x.dtype, copy=False)
    b = b.astype(x.dtype, copy=False)
    N = x.shape[0]
    F, _, KH, KW = w.shape
    x_pad = _pad(x, pad)
    y = xp.empty((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    field = x_pad[n, :, i * stride : i * stride + KH, j * stride : j * stride + KW]
                    y[n, f, i, j] = b[f] + xp.sum(w[f] * field)
    return y, Conv2dCache(x, w, stride, pad)


def conv2d_backward_loops(dy, cache: Conv2dCache, weight_grads: bool = False):
    r"""Readable gradients: differentiate the forward loop body term by term.

    Each output :math:`y_{n,f,i,j}` touched the receptive field
    :math:`R = \tilde x_{n,:,is:is+K_H,js:js+K_W}` through :math:`\sum w_f \odot R`, so by the
    chain rule, for every :math:`(n, f, i, j)`:

    .. math::

        d\tilde x_{n,:,R} \mathrel{+}= w_{f}\, dy_{n,f,i,j}, \qquad
        dw_{f} \mathrel{+}= \tilde x_{n,:,R}\, dy_{n,f,i,j}, \qquad
        db_f \mathrel{+}= dy_{n,f,i,j}.

    Then :math:`dx` is :math:`d\tilde x` with the padding cropped. Same arguments and results
    as :func:`conv2d_backward`. Derivation: ``tutorials/01_convolution``.
    """
    x, w, s, pad = cache[:4]
    xp = get_array_module(dy, x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    x_pad = _pad(x, pad)
    dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    dw = xp.zeros(w.shape, dtype=dy.dtype) if weight_grads else None
    db = xp.zeros((F,), dtype=dy.dtype) if weight_grads else None
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    rows = slice(i * s, i * s + KH)
                    cols = slice(j * s, j * s + KW)
                    g = dy[n, f, i, j]
                    dx_pad[n, :, rows, cols] += w[f] * g
                    if weight_grads:
                        dw[f] += x_pad[n, :, rows, cols] * g
                        db[f] += g
    dx = dx_pad[:, :, pad : pad + H, pad : pad + W]
    return dx, dw, db
