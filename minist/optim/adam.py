"""Adam (Kingma & Ba 2015): per-pixel step sizes from running moments of the gradient.

With :math:`g_k = \\nabla L(x_k)`, step count :math:`t = k + 1`, decay rates
:math:`\\beta_1, \\beta_2` and :math:`m_0 = v_0 = 0`, elementwise:

.. math::

    m_t = \\beta_1 m_{t-1} + (1 - \\beta_1)\\, g_k, \\qquad
    v_t = \\beta_2 v_{t-1} + (1 - \\beta_2)\\, g_k^2,

    \\hat m_t = \\frac{m_t}{1 - \\beta_1^t}, \\qquad \\hat v_t = \\frac{v_t}{1 - \\beta_2^t},

    x_{k+1} = P\\Big(x_k - \\eta\\, \\frac{\\hat m_t}{\\sqrt{\\hat v_t} + \\epsilon}\\Big).

Bias correction: the moments start at zero, so :math:`m_t` is a weighted sum of gradients whose
weights add up to :math:`1 - \\beta_1^t`, not 1; dividing by it undoes that shrinkage. At
:math:`t = 1` it gives :math:`\\hat m_1 = g`, :math:`\\hat v_1 = g^2`, so the first step is
:math:`-\\eta\\, g / (|g| + \\epsilon) \\approx -\\eta\\, \\mathrm{sign}(g)`: every pixel moves by
about :math:`\\eta`, whatever the scale of the loss. That scale invariance is why Adam's
learning rate is easy to choose for style transfer. ``x``, ``m``, ``v``: same shape and dtype.

Tutorial ``tutorials/07_optimizers`` compares this with gradient descent and L-BFGS.
"""

from __future__ import annotations

from minist.backend import get_array_module
from minist.optim.base import Function, Optimizer, check_number


class Adam(Optimizer):
    """Adam with bias correction, followed by projection onto the box (equations above)."""

    name = "adam"

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, lower: float | None = 0.0, upper: float | None = 1.0):
        super().__init__(lr, lower, upper)
        self.beta1 = check_number(self.option, beta1, 0.0, 1.0, field="beta1", closed_high=False)
        self.beta2 = check_number(self.option, beta2, 0.0, 1.0, field="beta2", closed_high=False)
        self.eps = check_number(self.option, eps, 0.0, 1.0, field="eps", closed_low=False)
        self.t = 0
        self.m = self.v = None

    def reset(self) -> None:
        super().reset()
        self.t = 0
        self.m = self.v = None  # m_0 = v_0 = 0

    def step(self, x, f: Function):
        xp = get_array_module(x)
        self._prepare(x)
        _, grad = self.evaluate(x, f)  # g_k = grad L(x_k)
        if self.m is None:
            self.m, self.v = xp.zeros_like(x), xp.zeros_like(x)
        b1, b2 = self.beta1, self.beta2
        self.t += 1
        self.m *= b1
        self.m += (1.0 - b1) * grad  # m_t = b1 m_{t-1} + (1 - b1) g
        self.v *= b2
        self.v += (1.0 - b2) * (grad * grad)  # v_t = b2 v_{t-1} + (1 - b2) g^2
        m_hat = self.m / (1.0 - b1**self.t)  # bias-corrected first moment
        v_hat = self.v / (1.0 - b2**self.t)  # bias-corrected second moment
        denom = xp.sqrt(v_hat, out=v_hat)
        denom += self.eps  # sqrt(v_hat) + eps
        update = xp.divide(m_hat, denom, out=m_hat)
        update *= self.lr
        return self.project_(x - update)  # x <- P(x - eta m_hat / (sqrt(v_hat) + eps))

    def state_bytes(self, n_elements: int, itemsize: int) -> int:
        """:math:`m, v`, then :math:`\\hat m, \\hat v` and ``x - update``: five copies, and what
        :meth:`evaluate` keeps."""
        return 5 * n_elements * itemsize + self.kept_bytes(n_elements, itemsize)
