r"""What the student version of minist needs from the engine: stand-ins until a lesson is reached.

``tutorials/make_student_version.py`` replaces the body of every exercise function with a
``NotImplementedError`` naming the exercise. A few of those functions are plumbing that earlier
lessons already run through the engine: ``VGG`` moves its weights with
:func:`minist.backend.to_device` (exercise ``ex_to_device``, lesson 08) and L-BFGS, the optimizer
of lessons 04--06, takes its direction from :func:`minist.optim.lbfgs.two_loop` (exercise
``ex_two_loop``, lesson 07). For such functions the registry (``tutorials/exercises.py``) names
a *stand-in*: another implementation of the same mathematics, and the generated body is::

    from minist.classroom import stand_in

    return stand_in(
        "Exercise ex_two_loop: write two_loop (...); check it with: ...",
        "minist.classroom:two_loop_compact",
    )(g, history)

A lesson switches stand-ins on for its run by entering :func:`stand_ins_on` (``lesson_utils.lesson``
does), so it runs before the student has reached the exercise, and says once which stand-in it
uses. Everything else -- the
exercise checks, the teacher's grading, the command line -- leaves them off, and there the body
raises the same ``NotImplementedError`` as any other unwritten exercise: a check never passes on
a stand-in.

Only these two exercises have a stand-in: no other exercise function is needed before its own
lesson, and a student version holds no working implementation of an exercise it hands out
(``tutorials/make_student_version.py``; a lesson that needs an unwritten exercise says so and
skips what needs it). Each is another algorithm, and only half the answer or none of its
lines: while ``ex_to_device`` or ``ex_two_loop`` is checked, a student function that calls its
stand-in fails the check (``tests/other_implementations.py``).

* :func:`to_device_on_cpu` -- :func:`minist.backend.to_device` for the CPU only;
* :func:`two_loop_compact` -- :math:`H g` from the compact representation of the L-BFGS matrix
  (Byrd, Nocedal & Schnabel 1994) instead of the two-loop recursion.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from minist.backend import get_array_module, to_numpy

STUB_PREFIX = "Exercise ex_"  # every generated body's message starts so: "Exercise ex_gram: ..."

_enabled = False
_announced: set[str] = set()


def use_stand_ins(enabled: bool = True) -> None:
    """Let unwritten exercise functions that have a stand-in run it (the lessons do this)."""
    global _enabled
    _enabled = bool(enabled)


def stand_ins_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def stand_ins_on() -> Iterator[None]:
    """Stand-ins on inside the ``with`` block (a lesson's run), as they were after it."""
    global _enabled
    before, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = before


def stand_in(message: str, spec: str):
    """The body of an unwritten exercise function that has a stand-in.

    Returns the stand-in named by ``spec`` (``"module:qualname"``) when stand-ins are on, after
    saying once which function it stands in for; raises ``NotImplementedError(message)``
    otherwise, exactly like an exercise without a stand-in.
    """
    if not _enabled:
        raise NotImplementedError(message)
    if message not in _announced:
        _announced.add(message)
        found = re.match(r"Exercise (\S+): write (\S+)", message)
        what = f"{found[2]} (exercise {found[1]})" if found else message.split(";")[0]
        print(f"[stand-in] {what} is not written yet: minist runs {spec} in its place until you "
              "write it (the exercise checks never do)", file=sys.stdout, flush=True)
    module, _, qualname = spec.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def is_written(function) -> bool:
    """False while ``function``'s body is still the student version's generated stub.

    The stub's message (a constant of its code, ``"Exercise ex_...: write ..."``) is the sign;
    a written function does not carry it.
    """
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None:
        return True
    return not any(isinstance(c, str) and c.startswith(STUB_PREFIX) for c in code.co_consts)


# ------------------------------------------------------------------------------ stand-ins


def to_device_on_cpu(array: Any, device: str, dtype=None):
    """Stand-in for :func:`minist.backend.to_device` that knows the CPU only (lessons 01--07)."""
    if device != "cpu":
        raise NotImplementedError(
            f"to_device(..., {device!r}): minist's stand-in moves arrays to the CPU only; "
            "write exercise ex_to_device (tutorials/08_gpu.py) for the rest"
        )
    out = to_numpy(array)
    return out if dtype is None or out.dtype == dtype else out.astype(dtype)


def two_loop_compact(g: Any, history) -> Any:
    r""":math:`H g` for the L-BFGS matrix of ``history`` (oldest first), in compact form.

    The same :math:`H_k` as the two-loop recursion (:func:`minist.optim.lbfgs.two_loop`), written
    with the pairs as the columns of :math:`S = [s_i]`, :math:`Y = [y_i]` (Byrd, Nocedal &
    Schnabel 1994; Nocedal & Wright, Eq. 7.24):

    .. math::

        H = \gamma I + \begin{bmatrix} S & \gamma Y \end{bmatrix}
            \begin{bmatrix} R^{-\top} (D + \gamma Y^\top Y) R^{-1} & -R^{-\top} \\
                            -R^{-1} & 0 \end{bmatrix}
            \begin{bmatrix} S^\top \\ \gamma Y^\top \end{bmatrix},

    with :math:`R` the upper triangle of :math:`S^\top Y` (:math:`R_{ij} = s_i^\top y_j`,
    :math:`i \le j`), :math:`D` its diagonal and :math:`\gamma` the newest pair's scale
    (:math:`H = I` without pairs). Here, with :math:`u = R^{-1} S^\top g`:
    :math:`H g = \gamma g + S R^{-\top}\big((D + \gamma Y^\top Y) u - \gamma Y^\top g\big)
    - \gamma Y u`. The :math:`m \times m` solves run in float64; the result has ``g``'s dtype.
    """
    xp = get_array_module(g)
    if not history:
        return g.copy()
    gamma = float(history[-1].gamma)
    S = xp.stack([pair.s.reshape(-1) for pair in history])  # (m, n): row i is s_i
    Y = xp.stack([pair.y.reshape(-1) for pair in history])
    flat = g.reshape(-1)
    SY = to_numpy(S @ Y.T).astype(np.float64)  # (S^T Y)_ij = s_i^T y_j
    YY = to_numpy(Y @ Y.T).astype(np.float64)
    R = np.triu(SY)
    D = np.diag(np.diag(SY))
    u = np.linalg.solve(R, to_numpy(S @ flat).astype(np.float64))  # R^{-1} S^T g
    Yg = to_numpy(Y @ flat).astype(np.float64)
    p = np.linalg.solve(R.T, (D + gamma * YY) @ u - gamma * Yg)
    p, u = (xp.asarray(v, dtype=g.dtype) for v in (p, u))
    r = gamma * flat + S.T @ p - gamma * (Y.T @ u)
    return r.reshape(g.shape).astype(g.dtype, copy=False)
