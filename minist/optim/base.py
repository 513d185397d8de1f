"""What every optimizer shares: the ``step`` contract, the box projection, state bookkeeping.

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
from typing import Any

from minist.backend import get_array_module
from minist.errors import MinistError

# evaluate(x) -> (loss, grad): the loss as a Python float (or 0-d array) and dL/dx shaped like x.
Evaluate = Callable[[Any], tuple[Any, Any]]


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
    """Base class: ``x_new = opt.step(x, loss, grad, evaluate)``.

    * ``x`` is the current iterate (any shape, NumPy or CuPy, float32 or float64); ``loss`` and
      ``grad`` are the loss and its gradient at ``x``, already computed by the caller.
    * ``evaluate(x) -> (loss, grad)`` lets an optimizer ask for more points (L-BFGS's line
      search); ``self.evaluations`` counts those calls.
    * ``step`` returns a new array, never modifies ``x`` or ``grad``, and keeps ``x``'s dtype and
      device. When it evaluated the point it returns, it returns that very array object, so a
      caller that memoises ``evaluate`` on object identity does not compute it twice.
    * Internal state (moments, curvature pairs) is reset by :meth:`reset`, and automatically
      when ``x`` changes shape, dtype or device (e.g. the next scale of a multi-scale run).
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

    def step(self, x, loss, grad, evaluate: Evaluate | None = None):
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state built up by earlier steps (not the evaluation count)."""
        self._state_key = None

    def _prepare(self, x) -> bool:
        """Reset the state when ``x`` is not like the last iterate; True when state was reset."""
        key = (get_array_module(x).__name__, tuple(x.shape), str(x.dtype))
        if key != self._state_key:
            self.reset()
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
        :mod:`minist.memory`, counts it). An optimizer that does not say: four copies."""
        return 4 * n_elements * itemsize
