r"""Max and average pooling over square windows, NCHW, any kernel >= 1 and stride >= 1.

For input :math:`x \in \mathbb{R}^{N \times C \times H \times W}`, kernel :math:`k` and stride
:math:`s`, window :math:`(i, j)` is :math:`R_{ij} = \{(is + p,\, js + q) : 0 \le p, q < k\}` and

.. math::

    y^{\max}_{n,c,i,j} = \max_{(u,v) \in R_{ij}} x_{n,c,u,v}, \qquad
    y^{\text{avg}}_{n,c,i,j} = \frac{1}{k^2} \sum_{(u,v) \in R_{ij}} x_{n,c,u,v},

with :math:`y \in \mathbb{R}^{N \times C \times H_o \times W_o}`,
:math:`H_o = \lfloor (H - k) / s \rfloor + 1` (likewise :math:`W_o`).

**Floor mode.** Windows that would extend past the edge are dropped: with an odd size and
:math:`k = s = 2` the last row/column is never pooled and gets zero gradient.

**Max-pool ties.** When a window holds its maximum more than once, the whole gradient goes to
the *first* maximum in row-major (raster) order, :math:`p` then :math:`q`.

Each function has a fast version and a ``_loops`` version written to be read; both build the
same :class:`PoolCache`, so either backward accepts either forward's cache.
Derivation: ``tutorials/02_relu_and_pooling``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minist.backend import get_array_module
from minist.execution import ExecutionConfig, config_for

MODES = ("max", "avg")


def _kernels(config: ExecutionConfig):
    """The max-pooling kernels for the config's device -- Numba on the CPU
    (:mod:`minist.layers.kernels_numba`), CUDA on the GPU (:mod:`minist.layers.kernels_cupy`)
    -- or ``None`` (the slices version) when ``config.kernels`` is off."""
    if not config.kernels:
        return None
    if config.cpu:
        from minist.layers import kernels_numba

        return kernels_numba
    from minist.layers import kernels_cupy

    return kernels_cupy


class PoolCache(NamedTuple):
    """What the backward pass needs: never a copy of ``x``.

    ``argmax`` (max pooling only, else ``None``) is, per output element, the raster index
    :math:`t = p k + q` of the chosen maximum inside its window, as a small unsigned integer
    array of shape ``(N, C, Ho, Wo)``.
    """

    mode: str
    x_shape: tuple
    kernel: int
    stride: int
    argmax: Any
    config: ExecutionConfig | None = None  # how the forward ran (max pooling's kernels or not)


def _check(x, kernel: int, stride: int) -> tuple[int, int]:
    """Validate the input and geometry; return the output size ``(Ho, Wo)``."""
    if x.ndim != 4:
        raise ValueError(f"pool: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if int(kernel) != kernel or kernel < 1:
        raise ValueError(f"pool: kernel must be an integer >= 1, got {kernel!r}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"pool: stride must be an integer >= 1, got {stride!r}")
    H, W = x.shape[2], x.shape[3]
    Ho, Wo = (H - kernel) // stride + 1, (W - kernel) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"pool: output size {Ho}x{Wo} < 1 for input {H}x{W}, kernel {kernel}, stride {stride}"
        )
    return Ho, Wo


def _index_dtype(xp, kernel: int):
    """Smallest integer type that holds a raster index ``0 .. kernel**2 - 1``."""
    return xp.uint8 if kernel * kernel <= 256 else xp.int32


def _offset_slice(x, p: int, q: int, s: int, Ho: int, Wo: int):
    r"""The strided view :math:`x_{:, :, is+p, js+q}` over all windows :math:`(i, j)`."""
    return x[:, :, p : p + s * Ho : s, q : q + s * Wo : s]


# ----------------------------------------------------------------------------- max pooling


def max_pool_forward(x, kernel: int = 2, stride: int = 2, *,
                     config: ExecutionConfig | None = None):
    r"""Fast max pooling: :math:`y_{n,c,i,j} = \max_{p,q < k} x_{n,c,is+p,js+q}`.

    A running maximum over the :math:`k^2` strided offset slices
    :math:`x_{:, :, p::s, q::s}` (one vectorised step per offset, any kernel and stride). The
    argmax is replaced only on a *strictly* greater value, so the first maximum in raster order
    wins ties. (Reshaping ``x`` to ``(N, C, Ho, k, Wo, k)`` blocks when ``stride == kernel`` is
    the textbook alternative; in NumPy, reducing those tiny axes measured several times slower.)

    Returns ``(y, cache)``, ``y`` of shape ``(N, C, Ho, Wo)`` and dtype ``x.dtype``; floor mode
    (see module docstring). With ``config.kernels`` (the default) the same loop runs as one
    compiled pass. Derivation: ``tutorials/02_relu_and_pooling``.
    """
    Ho, Wo = _check(x, kernel, stride)
    xp = get_array_module(x)
    config = config_for(x, config)
    k, s = kernel, stride
    N, C = x.shape[:2]
    kernels = _kernels(config)
    if kernels is not None:  # the same loop, one pass, compiled (Numba on the CPU, CUDA on GPU)
        y = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
        argmax = xp.empty((N, C, Ho, Wo), dtype=_index_dtype(xp, k))
        planes = xp.ascontiguousarray(x).reshape(N * C, *x.shape[2:])
        kernels.max_pool_forward_kernel(planes, k, s, y.reshape(N * C, Ho, Wo),
                                        argmax.reshape(N * C, Ho, Wo), config.parallel_pooling)
        return y, PoolCache("max", tuple(x.shape), k, s, argmax, config)
    y = _offset_slice(x, 0, 0, s, Ho, Wo).copy()  # offset (0, 0) is the first candidate
    argmax = xp.zeros((N, C, Ho, Wo), dtype=_index_dtype(xp, k))
    for t in range(1, k * k):  # raster order t = p k + q
        p, q = divmod(t, k)
        candidate = _offset_slice(x, p, q, s, Ho, Wo)
        better = candidate > y  # strict: an equal later value never wins a tie
        argmax = xp.where(better, argmax.dtype.type(t), argmax)
        xp.maximum(y, candidate, out=y)
    return y, PoolCache("max", tuple(x.shape), k, s, argmax, config)


def max_pool_backward(dy, cache: PoolCache):
    r"""Fast max-pool gradient: each :math:`dy_{n,c,i,j}` goes to its window's argmax.

    Key step: :math:`\partial y_{n,c,i,j} / \partial x_{n,c,u,v}` is 1 for the selected
    maximum and 0 for every other element, so

    .. math::

        dx_{n,c,u,v} = \sum_{(i,j):\ (u,v) = \operatorname{argmax} R_{ij}} dy_{n,c,i,j}

    (a sum because overlapping windows can pick the same element). Implemented as one strided
    add per offset :math:`t = pk + q` of :math:`dy \odot [\text{argmax} = t]`; elements in no
    window (floor mode) keep 0; one compiled pass (Numba or CUDA) does the same.
    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    xp = get_array_module(dy)
    k, s, argmax = cache.kernel, cache.stride, cache.argmax
    N, C, Ho, Wo = dy.shape
    config = config_for(dy, cache.config)
    kernels = _kernels(config)
    if kernels is not None:
        dx = xp.empty(cache.x_shape, dtype=dy.dtype)
        H, W = cache.x_shape[2:]
        kernels.max_pool_backward_kernel(
            xp.ascontiguousarray(dy).reshape(N * C, Ho, Wo),
            argmax.reshape(N * C, Ho, Wo), k, s, dx.reshape(N * C, H, W),
            config.parallel_pooling,
        )
        return dx
    dx = xp.zeros(cache.x_shape, dtype=dy.dtype)
    for t in range(k * k):  # raster order t = p k + q
        p, q = divmod(t, k)
        dx[:, :, p : p + s * Ho : s, q : q + s * Wo : s] += dy * (argmax == t)
    return dx


def max_pool_forward_loops(x, kernel: int = 2, stride: int = 2):
    r"""Readable max pooling: for every :math:`(n, c, i, j)`, the max of its window.

    ``window.argmax()`` on the ``k x k`` window returns the first maximum in raster order, which
    is the tie rule. Same results as :func:`max_pool_forward`.
    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    Ho, Wo = _check(x, kernel, stride)
    xp = get_array_module(x)
    k, s = kernel, stride
    N, C = x.shape[:2]
    y = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
    argmax = xp.empty((N, C, Ho, Wo), dtype=_index_dtype(xp, k))
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * s : i * s + k, j * s : j * s + k]
                    t = int(window.argmax())  # raster index p*k + q of the first maximum
                    argmax[n, c, i, j] = t
                    y[n, c, i, j] = window[t // k, t % k]
    return y, PoolCache("max", tuple(x.shape), k, s, argmax)


def max_pool_backward_loops(dy, cache: PoolCache):
    r"""Readable max-pool gradient: route each :math:`dy_{n,c,i,j}` to its window's argmax.

    :math:`dx_{n,c,\,is+p,\,js+q} \mathrel{+}= dy_{n,c,i,j}` with :math:`(p, q)` the stored
    argmax; every other element gets nothing. Derivation: ``tutorials/02_relu_and_pooling``.
    """
    xp = get_array_module(dy)
    k, s, argmax = cache.kernel, cache.stride, cache.argmax
    N, C, Ho, Wo = dy.shape
    dx = xp.zeros(cache.x_shape, dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    p, q = divmod(int(argmax[n, c, i, j]), k)
                    dx[n, c, i * s + p, j * s + q] += dy[n, c, i, j]
    return dx


# ------------------------------------------------------------------------- average pooling


def avg_pool_forward(x, kernel: int = 2, stride: int = 2):
    r"""Fast average pooling: :math:`y_{n,c,i,j} = \frac{1}{k^2}\sum_{p,q<k} x_{n,c,is+p,js+q}`.

    The sum of the :math:`k^2` strided offset slices :math:`x_{:, :, p::s, q::s}`, divided by
    :math:`k^2` (any kernel and stride). Floor mode (see module docstring). Returns
    ``(y, cache)``. Derivation: ``tutorials/02_relu_and_pooling``.
    """
    Ho, Wo = _check(x, kernel, stride)
    k, s = kernel, stride
    y = _offset_slice(x, 0, 0, s, Ho, Wo).copy()
    for t in range(1, k * k):
        p, q = divmod(t, k)
        y += _offset_slice(x, p, q, s, Ho, Wo)
    y /= k * k  # a Python int keeps x's dtype
    return y, PoolCache("avg", tuple(x.shape), k, s, None)


def avg_pool_backward(dy, cache: PoolCache):
    r"""Fast average-pool gradient: each element of a window gets :math:`dy / k^2`.

    Key step: :math:`\partial y_{n,c,i,j} / \partial x_{n,c,is+p,js+q} = 1/k^2` for every
    :math:`p, q < k`, so

    .. math::

        dx_{n,c,u,v} = \frac{1}{k^2} \sum_{(i,j):\ (u,v) \in R_{ij}} dy_{n,c,i,j}.

    One strided add of :math:`dy / k^2` per offset; elements in no window (floor mode) keep 0.
    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    xp = get_array_module(dy)
    k, s = cache.kernel, cache.stride
    Ho, Wo = dy.shape[2], dy.shape[3]
    g = dy / (k * k)  # a Python int keeps dy's dtype
    dx = xp.zeros(cache.x_shape, dtype=dy.dtype)
    for p in range(k):
        for q in range(k):
            dx[:, :, p : p + s * Ho : s, q : q + s * Wo : s] += g
    return dx


def avg_pool_forward_loops(x, kernel: int = 2, stride: int = 2):
    r"""Readable average pooling: for every :math:`(n, c, i, j)`, the mean of its window.

    Same results as :func:`avg_pool_forward`. Derivation: ``tutorials/02_relu_and_pooling``.
    """
    Ho, Wo = _check(x, kernel, stride)
    xp = get_array_module(x)
    k, s = kernel, stride
    N, C = x.shape[:2]
    y = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    y[n, c, i, j] = x[n, c, i * s : i * s + k, j * s : j * s + k].sum() / (k * k)
    return y, PoolCache("avg", tuple(x.shape), k, s, None)


def avg_pool_backward_loops(dy, cache: PoolCache):
    r"""Readable average-pool gradient: every window element gets :math:`dy_{n,c,i,j} / k^2`.

    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    xp = get_array_module(dy)
    k, s = cache.kernel, cache.stride
    N, C, Ho, Wo = dy.shape
    dx = xp.zeros(cache.x_shape, dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    dx[n, c, i * s : i * s + k, j * s : j * s + k] += dy[n, c, i, j] / (k * k)
    return dx


# ------------------------------------------------------------------------------ dispatch


def pool_forward(x, mode: str, kernel: int = 2, stride: int = 2, *,
                 config: ExecutionConfig | None = None):
    """Max or average pooling by name: ``mode`` is ``"max"`` or ``"avg"``; the cache remembers it.

    ``config`` (max pooling): see :func:`max_pool_forward`. Derivation:
    ``tutorials/02_relu_and_pooling``.
    """
    if mode == "max":
        return max_pool_forward(x, kernel, stride, config=config)
    if mode == "avg":
        return avg_pool_forward(x, kernel, stride)
    raise ValueError(f"pool: mode must be one of {MODES}, got {mode!r}")


class ReluMaxPoolCache(NamedTuple):
    """Cache of a max pooling whose input was a ReLU's output: the pooling's cache and its own
    output ``y`` (no copy: the next layer keeps it anyway)."""

    pool: PoolCache
    y: Any


def relu_max_pool_backward(dy, cache: ReluMaxPoolCache):
    r"""The backward pass of a ReLU followed by max pooling, in one step (VGG's fused layers).

    It returns the gradient of :math:`y = \operatorname{maxpool}(\max(z, 0))` with respect
    to :math:`z`. The ReLU's backward needs the mask :math:`[z > 0]`, but only where max
    pooling sends a gradient: at the chosen maximum of each window, where :math:`\max(z, 0)`
    *is* the window's output :math:`y`. So the mask there is :math:`[y > 0]`, and

    .. math::

        dz = \operatorname{maxpool\_backward}(dy \odot [y > 0])

    exactly (not approximately): the ReLU's full-size output never has to be kept for the
    backward pass (VGG-19 at 1024 px: conv1_2, conv2_2, conv3_4, conv4_4's outputs, 480 MiB).
    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    return max_pool_backward(dy * (cache.y > 0), cache.pool)  # bool * float keeps dy's dtype


def pool_backward(dy, cache: PoolCache):
    """Gradient of :func:`pool_forward`, dispatched on ``cache.mode``."""
    if cache.mode == "max":
        return max_pool_backward(dy, cache)
    if cache.mode == "avg":
        return avg_pool_backward(dy, cache)
    raise ValueError(f"pool: unknown mode {cache.mode!r} in cache")
