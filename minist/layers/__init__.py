"""The layers of VGG: convolution, ReLU, max/average pooling -- forward and backward.

Pure functions, CS231n style, NCHW: ``y, cache = f_forward(x, ...)`` then
``dx = f_backward(dy, cache)`` (``conv2d_backward`` returns ``(dx, dw, db)``);
``conv2d_relu_forward``/``_backward`` are a convolution and its ReLU as one step (fewer passes
over memory, same numbers). Each layer has a
fast version and a ``_loops`` version that spells out the equation; the tests prove they agree.
Derivations: ``tutorials/01_convolution`` and ``tutorials/02_relu_and_pooling``.
"""

from minist.layers.conv import (
    Conv2dCache,
    ConvReluCache,
    conv2d_backward,
    conv2d_backward_loops,
    conv2d_forward,
    conv2d_forward_loops,
    conv2d_relu_backward,
    conv2d_relu_forward,
)
from minist.layers.pool import (
    PoolCache,
    ReluMaxPoolCache,
    avg_pool_backward,
    avg_pool_backward_loops,
    avg_pool_forward,
    avg_pool_forward_loops,
    max_pool_backward,
    max_pool_backward_loops,
    max_pool_forward,
    max_pool_forward_loops,
    pool_backward,
    pool_forward,
    relu_max_pool_backward,
)
from minist.layers.relu import ReluCache, relu_backward, relu_forward

__all__ = [
    "Conv2dCache",
    "ConvReluCache",
    "PoolCache",
    "ReluCache",
    "ReluMaxPoolCache",
    "avg_pool_backward",
    "avg_pool_backward_loops",
    "avg_pool_forward",
    "avg_pool_forward_loops",
    "conv2d_backward",
    "conv2d_backward_loops",
    "conv2d_forward",
    "conv2d_forward_loops",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "max_pool_backward",
    "max_pool_backward_loops",
    "max_pool_forward",
    "max_pool_forward_loops",
    "pool_backward",
    "pool_forward",
    "relu_backward",
    "relu_max_pool_backward",
    "relu_forward",
]
