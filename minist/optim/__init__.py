"""Optimizers for the image: projected gradient descent (with momentum), Adam, L-BFGS.

All share one contract (:class:`~minist.optim.base.Optimizer`)::

    x_new = opt.step(x, f)          # f(x) -> (loss, grad)

The optimizer evaluates ``f`` where it needs to, at most once per point
(:meth:`~minist.optim.base.Optimizer.evaluate`, which a caller also asks for the value at the
current iterate), and keeps the image in its box, [0, 1] by default, by projecting after every
update. Pick one by name with :func:`make_optimizer`, as the ``--optimizer``/``--lr`` options
do. Tutorial ``tutorials/07_optimizers`` compares them on style transfer.
"""

from __future__ import annotations

from minist.errors import MinistError
from minist.optim.adam import Adam
from minist.optim.base import Optimizer, project_
from minist.optim.gd import GradientDescent
from minist.optim.lbfgs import LBFGS, two_loop

OPTIMIZERS = ("gd", "adam", "lbfgs")
DEFAULT_OPTIMIZER = "lbfgs"  # the paper's choice

# Default initial step per optimizer. L-BFGS: a unit step along -H g (its own scale). Adam: each
# pixel moves about lr per step, so 0.01 is ~2.5 grey levels of 255. GD: the step is lr * grad,
# so its lr depends on the scale of the loss; 1.0 is only a starting point to tune.
DEFAULT_LR = {"gd": 1.0, "adam": 0.01, "lbfgs": 1.0}

_CLASSES = {"gd": GradientDescent, "adam": Adam, "lbfgs": LBFGS}
# Options make_optimizer accepts for each optimizer (besides lr), as keyword arguments.
OPTIONS = {
    "gd": ("momentum", "lower", "upper"),
    "adam": ("beta1", "beta2", "eps", "lower", "upper"),
    "lbfgs": ("history", "c1", "max_trials", "curvature_eps", "lower", "upper"),
}


def make_optimizer(name: str, lr: float | None = None, **options) -> Optimizer:
    """Build the optimizer called ``name`` (one of :data:`OPTIMIZERS`).

    ``lr=None`` takes :data:`DEFAULT_LR`; ``options`` are the keyword settings in
    :data:`OPTIONS`. An unknown name or option, or a bad value, raises :class:`MinistError`
    with one line naming ``--optimizer`` or ``--lr``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _CLASSES:
        raise MinistError(
            f"--optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    unknown = sorted(set(options) - set(OPTIONS[key]))
    if unknown:
        raise MinistError(
            f"--optimizer {key}: unknown option {unknown[0]!r}; "
            f"valid options are {', '.join(OPTIONS[key])}"
        )
    return _CLASSES[key](lr=DEFAULT_LR[key] if lr is None else lr, **options)


__all__ = [
    "DEFAULT_LR",
    "DEFAULT_OPTIMIZER",
    "LBFGS",
    "OPTIMIZERS",
    "OPTIONS",
    "Adam",
    "GradientDescent",
    "Optimizer",
    "make_optimizer",
    "project_",
    "two_loop",
]
