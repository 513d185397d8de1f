r"""Rectified linear unit, elementwise on any shape.

.. math::

    y = \max(x, 0), \qquad
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot [x > 0]

Derivation: ``tutorials/02_relu_and_pooling``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minist.backend import get_array_module


class ReluCache(NamedTuple):
    """The mask :math:`[x > 0]`, kept as the ReLU's output :math:`y` itself: :math:`[y > 0] =
    [x > 0]`, and the next layer keeps :math:`y` anyway, so the mask costs no memory. A boolean
    mask works too."""

    mask: Any


def relu_forward(x):
    r"""ReLU: :math:`y = \max(x, 0)`, same shape and dtype as ``x``.

    Returns ``(y, cache)``; the cache keeps only :math:`y`, whose positive entries are the
    mask :math:`[x > 0]` the backward needs.
    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    xp = get_array_module(x)
    y = xp.maximum(x, 0)  # a Python 0 keeps x.dtype (no float64 temporaries)
    return y, ReluCache(y)


def relu_backward(dy, cache: ReluCache):
    r"""ReLU gradient: :math:`dx = dy \odot [x > 0]`.

    Key step: :math:`\partial y / \partial x` is 1 where :math:`x > 0` and 0 where
    :math:`x < 0`. At exactly :math:`x = 0` the function has a kink and no derivative; we use 0
    there (the mask is strict), as every deep-learning library does.
    Derivation: ``tutorials/02_relu_and_pooling``.
    """
    return dy * (cache.mask > 0)  # [y > 0] = [x > 0]; bool * float keeps dy's dtype
