"""What every optimizer shares: the ``step`` contract, its evaluations, the box projection.

minist optimises the RGB image itself, so the variable lives in a box, :math:`x \\in [l, u]^n`
with :math:`[l, u] = [0, 1]` by default. Every optimizer takes an unconstrained update and then
projects it back onto the box, elementwise:

.. math::

    P(x)_i = \\min(\\max(x_i, l), u)

(``lower``/``upper`` of ``None`` drop that side of the box). The update rules themselves, and
how they compare on style transfer, are in ``gd.py``, ``adam.py``, ``lbfgs.py`` and the tutorial
``tutorials/07_optimizers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from minist.backend import get_array_module
from minist.errors import MinistError

# f(x) -> (loss, grad): the loss as a Python float (or 0-d array) and dL/dx shaped like x. Anything
# that unpacks as that pair will do, such as a minist.problem.Evaluation (which also carries the
# loss's parts).
Function = Callable[[Any], Any]


class Kept(NamedTuple):
    """The optimizer's last evaluation: its own copy of the point ``x`` and ``value = f(x)``."""

    x: Any
    value: Any


def project_(x, lower: float | None, upper: float | None):
    """Clamp ``x`` into ``[lower, upper]`` in place and return it: :math:`x \\leftarrow P(x)`.

    Only call it on arrays the optimizer has just made, never on the caller's ``x``.
    """
    xp = get_array_module(x)
    if lower is not None:
        xp.maximum(x, lower, out=x)
    if upper is not None:
        xp.minimum(x, upper, out=x)
    return x


def check_number(option: str, value, low: float, high: float, *, field: str = "",
                 closed_low: bool = True, closed_high: bool = True) -> float:
    """Return ``value`` as a float after checking it lies in the stated interval.

    Raises :class:`MinistError` with one line, ``"<option>: [<field> ]must be in ..."``, for a
    non-number, NaN or a value outside the interval.
    """
    what = f"{field} " if field else ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MinistError(f"{option}: {what}must be a number, got {value!r}") from None
    ok_low = number >= low if closed_low else number > low
    ok_high = number <= high if closed_high else number < high
    if math.isnan(number) or not (ok_low and ok_high):
        left, right = "[" if closed_low else "(", "]" if closed_high else ")"
        raise MinistError(
            f"{option}: {what}must be in {left}{low:g}, {high:g}{right}, got {value!r}"
        )
    return number


def check_int(option: str, value, low: int, high: int, *, field: str = "") -> int:
    """Return ``value`` as an int after checking it is a whole number in ``[low, high]``."""
    what = f"{field} " if field else ""
    try:
        number = int(value)
        whole = not isinstance(value, bool) and number == float(value)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or not low <= number <= high:
        raise MinistError(f"{option}: {what}must be an integer in [{low}, {high}], got {value!r}")
    return number


def check_bounds(option: str, lower, upper) -> tuple[float | None, float | None]:
    """Validate the box: each side a finite number or ``None``, and ``lower < upper``."""
    finite = {"closed_low": False, "closed_high": False}
    if lower is not None:
        lower = check_number(option, lower, -math.inf, math.inf, field="lower", **finite)
    if upper is not None:
        upper = check_number(option, upper, -math.inf, math.inf, field="upper", **finite)
    if lower is not None and upper is not None and not lower < upper:
        raise MinistError(f"{option}: need lower < upper, got [{lower:g}, {upper:g}]")
    return lower, upper


class Optimizer:
    """Base class: ``x_new = opt.step(x, f)``, with ``f(x) -> (loss, grad)``.

    * ``x`` is the current iterate (any shape, NumPy or CuPy, float32 or float64); ``f`` the
      function to minimise: ``f(x)`` returns the loss at ``x`` and its gradient, shaped like
      ``x`` (as :class:`torch.optim.LBFGS` takes a closure).
    * The optimizer owns the evaluations: it calls ``f`` where it needs a value, always through
      :meth:`evaluate`, which calls ``f`` at most once per point -- it keeps its own copy of the
      last point it evaluated with ``f``'s value there and hands that value back when asked for
      a point equal to it, element for element. So one iteration of gradient descent or Adam
      costs one evaluation, and L-BFGS does not evaluate again the point its line search
      accepted; a caller that wants the value at the current iterate (to log it, or to check
      that it is finite) asks :meth:`evaluate` too, and pays nothing extra. A point changed in
      place is a new point. ``self.evaluations`` counts the calls of ``f``.
    * ``step`` returns a new array, never modifies ``x``, and keeps ``x``'s dtype and device.
    * Internal state (moments, curvature pairs, the kept evaluation) is reset by :meth:`reset`,
      and automatically when ``x`` changes shape, dtype or device (e.g. the next scale of a
      multi-scale run). A new ``f`` at a point of the same shape: call :meth:`forget_evaluation`.
    """

    name = "optimizer"

    @property
    def option(self) -> str:
        """How errors about this optimizer's settings name it, e.g. ``"--optimizer adam"``."""
        return f"--optimizer {self.name}"

    def __init__(self, lr: float, lower: float | None = 0.0, upper: float | None = 1.0):
        self.lr = check_number("--lr", lr, 0.0, math.inf, closed_low=False, closed_high=False)
        self.lower, self.upper = check_bounds(self.option, lower, upper)
        self.evaluations = 0
        self._state_key = None
        self._kept: Kept | None = None

    def step(self, x, f: Function):
        raise NotImplementedError

    def evaluate(self, x, f: Function):
        """``f(x)``, computed at most once per point: the value kept from the last evaluation
        when ``x`` equals that point (same shape, dtype, device and elements), else ``f(x)``
        now, kept in turn with a copy of ``x``."""
        kept = self._kept
        if kept is not None and _same_point(kept.x, x):
            return kept.value
        value = f(x)
        self.evaluations += 1
        self._kept = Kept(x.copy(), value)
        return value

    def forget_evaluation(self) -> None:
        """Drop the kept evaluation (``f`` changed; the state built up by the steps stays)."""
        self._kept = None

    def reset(self) -> None:
        """Forget all state built up by earlier steps and evaluations (not their count)."""
        self._state_key = None
        self._kept = None

    def _prepare(self, x) -> bool:
        """Reset the state when ``x`` is not like the last iterate; True when state was reset."""
        key = (get_array_module(x).__name__, tuple(x.shape), str(x.dtype))
        if key != self._state_key:
            kept = self._kept  # already evaluated at this new x, perhaps: keep that
            self.reset()
            if kept is not None and _same_point(kept.x, x):
                self._kept = kept
            self._state_key = key
            return True
        return False

    def project_(self, x):
        """:math:`P(x)` in place on an array this optimizer owns."""
        return project_(x, self.lower, self.upper)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr:g}, lower={self.lower}, upper={self.upper})"

    def state_bytes(self, n_elements: int, itemsize: int) -> int:
        """The most memory this optimizer holds during a step on an iterate of ``n_elements``
        numbers of ``itemsize`` bytes: its state and the step's temporaries (the memory check,
        :mod:`minist.memory`, counts it). An optimizer that does not say: four copies, plus
        :meth:`kept_bytes`."""
        return 4 * n_elements * itemsize + self.kept_bytes(n_elements, itemsize)

    @staticmethod
    def kept_bytes(n_elements: int, itemsize: int) -> int:
        """What :meth:`evaluate` keeps of the last point evaluated: a copy of it, and the
        boolean temporary (one byte a number) of the comparison with the next point."""
        return n_elements * itemsize + n_elements


def _same_point(a, b) -> bool:
    """``a`` and ``b`` are the same point: same array module, shape, dtype and elements."""
    xp = get_array_module(a)
    return (xp is get_array_module(b) and a.shape == b.shape and a.dtype == b.dtype
            and bool(xp.array_equal(a, b)))
