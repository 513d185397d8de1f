"""L-BFGS with a projected backtracking line search: the optimizer of Gatys et al. and minist.

**Direction** (Nocedal & Wright, Algorithm 7.4, the two-loop recursion). L-BFGS keeps the last
:math:`m` curvature pairs :math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i` and applies
the BFGS inverse-Hessian approximation :math:`H_k` to the gradient without ever forming it:

.. math::

    q \\leftarrow g;\\quad \\text{for } i = k-1, \\dots, k-m:\\;
        \\alpha_i = \\rho_i s_i^\\top q,\\; q \\leftarrow q - \\alpha_i y_i
        \\qquad (\\rho_i = 1 / s_i^\\top y_i)

    r \\leftarrow \\gamma_k q, \\qquad
        \\gamma_k = \\frac{s_{k-1}^\\top y_{k-1}}{y_{k-1}^\\top y_{k-1}}
        \\qquad (H_k^0 = \\gamma_k I)

    \\text{for } i = k-m, \\dots, k-1:\\;
        \\beta_i = \\rho_i y_i^\\top r,\\; r \\leftarrow r + (\\alpha_i - \\beta_i) s_i;
        \\qquad d = -r = -H_k g.

Each pair is the secant equation :math:`H y_i = s_i` of a quadratic model; :math:`\\gamma_k`
(the inverse curvature along the last step) sets the scale, so a unit step is usually accepted.
``x``, ``g``, ``s_i``, ``y_i``, ``d``: all the shape of the image.

**Skipped pairs.** :math:`H_k` stays positive definite -- so :math:`d` points downhill -- only if
every pair has :math:`s_i^\\top y_i > 0`. A Wolfe line search would guarantee that; on the
non-convex style loss with an Armijo search it can fail, so a pair is kept only when
:math:`s^\\top y > \\varepsilon\\, y^\\top y`, i.e. its inverse-curvature estimate
:math:`s^\\top y / y^\\top y` is positive and not vanishingly small (which would make
:math:`\\gamma_k` collapse the next step to nothing).

**The box** :math:`[l, u]`. Pixels sitting on a bound whose gradient pushes them further out
(``stuck``: :math:`x_i = l, g_i > 0` or :math:`x_i = u, g_i < 0`) are held fixed: the two-loop
sees :math:`\\tilde g` (the gradient with those entries zeroed), and :math:`d_i = 0` there.
Then :math:`g^\\top d = -\\tilde g^\\top H \\tilde g < 0` whenever :math:`\\tilde g \\ne 0`, because
:math:`H` is positive definite; the other pixels move freely until the projection stops them.
Should rounding ever break that (:math:`g^\\top d \\ge 0`), the step falls back to projected
steepest descent, :math:`d = -\\tilde g`. If :math:`\\tilde g = 0`, ``x`` is stationary on the box
and the step returns a copy of it.

**Line search**: backtracking along the projected path :math:`x(t) = P(x + t d)` until the
Armijo condition of projected methods (Bertsekas) holds,

.. math::

    L(x(t)) \\le L(x) + c_1\\, g^\\top (x(t) - x) + \\epsilon_L, \\qquad c_1 = 10^{-4},

shrinking :math:`t` to the minimiser of the quadratic through :math:`L(x)`, the slope and
:math:`L(x(t))`, kept within :math:`[0.1 t, 0.5 t]`. The slack
:math:`\\epsilon_L = 16\\, \\mathrm{eps}\\, |L(x)|` (``eps`` of ``x``'s dtype; about
:math:`2 \\cdot 10^{-6} |L|` in float32, like the approximate Wolfe test of Hager & Zhang)
absorbs rounding in the loss: once the decrease a step promises is below what float32 can
resolve, plain Armijo would reject every trial and burn a VGG pass on each.

Why not a strong-Wolfe search: its curvature condition is about a straight line, not the kinked
projected path, and each trial costs a full VGG forward and backward pass, while with
:math:`\\gamma_k` scaling the first trial, :math:`t = \\eta` (``lr``, default 1), is nearly
always accepted. With no pairs yet (first step, or after a failed search) the trial is
:math:`t = \\eta \\min(1, 1/\\lVert\\tilde g\\rVert_1)`, so the first step moves the image by
at most :math:`\\eta` in total (L1 norm), however large the loss.

**History** :math:`m = 20` by default: enough pairs to model the main curvature directions of
the style loss, while memory stays at :math:`2m` image-sized arrays (120 MB at 512x512) and the
two-loop's :math:`4m` passes over the image cost little next to one VGG forward/backward pass.

Tutorial ``tutorials/07_optimizers`` compares L-BFGS with gradient descent and Adam.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

from minist.backend import get_array_module
from minist.optim.base import Function, Optimizer, check_int, check_number

DEFAULT_HISTORY = 20
LOSS_NOISE_ULPS = 16  # losses closer than this many units in the last place count as equal


class CurvaturePair(NamedTuple):
    s: Any  # x_{k+1} - x_k
    y: Any  # g_{k+1} - g_k
    rho: float  # 1 / s^T y
    gamma: float  # s^T y / y^T y: the initial inverse-Hessian scale H^0 = gamma I


def two_loop(g, history) -> Any:
    """:math:`H g` by the two-loop recursion (module docstring); ``history`` oldest first.

    Returns a new array like ``g``. The scalars :math:`\\alpha_i, \\beta_i` stay on the device
    (0-d arrays), so on a GPU the recursion never waits for the host.
    """
    xp = get_array_module(g)
    q = g.copy()
    alphas = []
    for pair in reversed(history):  # newest to oldest
        alpha = pair.rho * xp.vdot(pair.s, q)  # alpha_i = rho_i s_i^T q
        q -= alpha * pair.y  # q <- q - alpha_i y_i
        alphas.append(alpha)
    r = q
    if history:
        r *= history[-1].gamma  # r <- H^0 q = gamma_k q
    for pair, alpha in zip(history, reversed(alphas), strict=True):  # oldest to newest
        beta = pair.rho * xp.vdot(pair.y, r)  # beta_i = rho_i y_i^T r
        r += (alpha - beta) * pair.s  # r <- r + (alpha_i - beta_i) s_i
    return r


class LBFGS(Optimizer):
    """Limited-memory BFGS on the box, with a projected Armijo backtracking line search.

    Counters for reports: ``evaluations`` (calls of ``f``), ``skipped_pairs``,
    ``steepest_descent_steps`` (fallbacks), ``line_search_failures``.
    """

    name = "lbfgs"

    def __init__(self, lr: float = 1.0, history: int = DEFAULT_HISTORY,
                 lower: float | None = 0.0, upper: float | None = 1.0, c1: float = 1e-4,
                 max_trials: int = 20, curvature_eps: float = 1e-10):
        super().__init__(lr, lower, upper)
        self.history_size = check_int(self.option, history, 1, 10_000, field="history")
        self.c1 = check_number(self.option, c1, 0.0, 1.0, field="c1", closed_low=False,
                               closed_high=False)
        self.max_trials = check_int(self.option, max_trials, 1, 1000, field="max_trials")
        self.curvature_eps = check_number(self.option, curvature_eps, 0.0, 1.0,
                                          field="curvature_eps")
        self.history: deque[CurvaturePair] = deque(maxlen=self.history_size)
        self.skipped_pairs = 0
        self.steepest_descent_steps = 0
        self.line_search_failures = 0

    def reset(self) -> None:
        super().reset()
        self.history.clear()

    def step(self, x, f: Function):
        xp = get_array_module(x)
        self._prepare(x)
        loss, grad = self.evaluate(x, f)  # kept from the last step when x is the point it returned
        f0 = float(loss)
        stuck = self._stuck(x, grad)
        g_free = grad if stuck is None else xp.where(stuck, xp.zeros((), grad.dtype), grad)
        d, slope = self._direction(x, grad, g_free, stuck)
        if not slope < 0:  # projected gradient is zero: x is a stationary point of the box
            return x.copy()
        # With no curvature pairs yet, keep the first step's size at most lr (module docstring).
        t = self.lr if self.history else self.lr * min(1.0, 1.0 / float(xp.abs(g_free).sum()))
        slack = LOSS_NOISE_ULPS * float(xp.finfo(x.dtype).eps) * abs(f0)  # epsilon_L
        best = None
        for _ in range(self.max_trials):
            x_t = self.project_(x + t * d)  # x(t) = P(x + t d)
            s = x_t - x
            decrease = float(xp.vdot(grad, s))  # g^T (x(t) - x), negative for small t
            if not decrease < 0:
                t *= 0.5
                continue
            f_t, g_t = self.evaluate(x_t, f)  # kept: the next step starts here if accepted
            f_t = float(f_t)
            if f_t <= f0 + self.c1 * decrease + slack:  # Armijo along the projected path
                self._remember(s, g_t - grad)
                return x_t
            if best is None or f_t < best[0]:
                best = (f_t, x_t)
            t = _backtrack(t, f0, f_t, decrease)
        # No sufficient decrease: the quadratic model is misleading here. Forget it and return
        # the best point tried if it is at least lower, else stay put (a copy, never x itself).
        self.line_search_failures += 1
        self.history.clear()
        if best is not None and best[0] < f0:
            return best[1]
        return x.copy()

    def _stuck(self, x, grad):
        """Mask of entries on a bound whose gradient pushes them outwards (None: no bounds)."""
        mask = None
        if self.lower is not None:
            mask = (x <= self.lower) & (grad > 0)
        if self.upper is not None:
            at_upper = (x >= self.upper) & (grad < 0)
            mask = at_upper if mask is None else mask | at_upper
        return mask

    def _direction(self, x, grad, g_free, stuck) -> tuple[Any, float]:
        """The search direction d and its slope g^T d (module docstring, "The box")."""
        xp = get_array_module(x)
        if self.history:
            d = two_loop(g_free, self.history)
            d *= -1.0  # d = -H g~
            if stuck is not None:
                d = xp.where(stuck, xp.zeros((), d.dtype), d)  # hold stuck pixels: d_i = 0
            slope = float(xp.vdot(grad, d))
            if slope < 0:
                return d, slope
            self.steepest_descent_steps += 1
        d = -g_free  # projected steepest descent: never pushes a pixel out of the box
        return d, -float(xp.vdot(g_free, g_free))

    def _remember(self, s, y) -> None:
        """Keep the pair (s, y) if its curvature passes the test in the module docstring."""
        xp = get_array_module(s)
        sy, yy = float(xp.vdot(s, y)), float(xp.vdot(y, y))
        if sy > self.curvature_eps * yy:
            self.history.append(CurvaturePair(s, y, 1.0 / sy, sy / yy))
        else:
            self.skipped_pairs += 1

    def state_bytes(self, n_elements: int, itemsize: int) -> int:
        """:math:`2m` arrays :math:`s_i, y_i`, and during a step :math:`\\tilde g`, :math:`d`,
        :math:`x(t)`, :math:`s`, :math:`y` and one temporary (six copies), plus the boolean
        ``stuck`` mask and its two operands (one byte per number each), and what
        :meth:`evaluate` keeps."""
        return ((2 * self.history_size + 6) * n_elements * itemsize + 3 * n_elements
                + self.kept_bytes(n_elements, itemsize))


def _backtrack(t: float, f0: float, f_t: float, decrease: float) -> float:
    """Next trial step after an Armijo failure at ``t``.

    The quadratic :math:`q(\\tau) = f_0 + (\\delta/t)\\tau + c\\tau^2` through :math:`f_0`, the
    slope :math:`\\delta/t` (``decrease`` :math:`= \\delta = g^\\top(x(t) - x)`) and
    :math:`q(t) = f_t` has :math:`c = (f_t - f_0 - \\delta)/t^2 > 0` (Armijo failed) and
    minimiser :math:`\\tau^* = -\\delta t / (2 (f_t - f_0 - \\delta))`, clamped to
    :math:`[0.1 t, 0.5 t]`.
    """
    excess = f_t - f0 - decrease
    if not (math.isfinite(excess) and excess > 0):  # NaN/inf loss: just shrink hard
        return 0.1 * t
    return min(max(-decrease * t / (2.0 * excess), 0.1 * t), 0.5 * t)
