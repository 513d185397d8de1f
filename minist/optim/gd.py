"""Projected gradient descent with optional heavy-ball momentum (Polyak 1964).

With gradient :math:`g_k = \\nabla L(x_k)`, learning rate :math:`\\eta` and momentum
:math:`\\mu \\in [0, 1)`, one step is

.. math::

    v_{k+1} = \\mu\\, v_k - \\eta\\, g_k, \\qquad x_{k+1} = P(x_k + v_{k+1}), \\qquad v_0 = 0,

where :math:`P` clamps into the box (``base.py``). With :math:`\\mu = 0` this is plain projected
gradient descent, :math:`x_{k+1} = P(x_k - \\eta g_k)`. Momentum lets steps build up along
directions where the gradient keeps its sign -- the long, flat valleys of a badly conditioned
loss -- up to :math:`\\eta / (1 - \\mu)` per unit gradient. ``x``, ``v``: same shape and dtype.

Tutorial ``tutorials/07_optimizers`` compares this with Adam and L-BFGS.
"""

from __future__ import annotations

from minist.backend import get_array_module
from minist.optim.base import Function, Optimizer, check_number


class GradientDescent(Optimizer):
    """``x_new = P(x + v)`` with ``v = momentum * v - lr * grad`` (equations above)."""

    name = "gd"

    def __init__(self, lr: float = 1.0, momentum: float = 0.0,
                 lower: float | None = 0.0, upper: float | None = 1.0):
        super().__init__(lr, lower, upper)
        self.momentum = check_number(self.option, momentum, 0.0, 1.0, field="momentum",
                                     closed_high=False)
        self.velocity = None

    def reset(self) -> None:
        super().reset()
        self.velocity = None  # v_0 = 0

    def step(self, x, f: Function):
        xp = get_array_module(x)
        self._prepare(x)
        _, grad = self.evaluate(x, f)  # g_k = grad L(x_k)
        if self.velocity is None:
            self.velocity = xp.zeros_like(x)
        v = self.velocity
        v *= self.momentum  # v <- mu v
        v -= self.lr * grad  # v <- mu v - eta g
        return self.project_(x + v)  # x <- P(x + v)

    def state_bytes(self, n_elements: int, itemsize: int) -> int:
        """:math:`v`, then ``lr * grad`` and ``x + v``: three copies of the iterate, and
        what :meth:`evaluate` keeps."""
        return 3 * n_elements * itemsize + self.kept_bytes(n_elements, itemsize)
