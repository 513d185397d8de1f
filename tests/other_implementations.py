"""While an exercise is checked, the student's function may not call another implementation.

(A fixture of ``tests/conftest.py``, autouse for the modules marked ``ex_...``.)

minist keeps, beside some exercises, a fast implementation of the same quantity by another
algorithm (the im2col/Winograd convolution beside the loops, the vectorised pooling, the
stand-ins of ``to_device`` and ``two_loop``), and in the teacher's tree the kernels of the losses
(``Exercise.alternatives`` and ``Exercise.routes``, ``tutorials/exercises.py``). For the checks
of a module marked ``ex_...`` each of them is replaced by a wrapper that raises a
:class:`diagnose.CheckError` when it is called from inside one of the exercise's functions --
and runs as before for everyone else (the checks' own references, the rest of the engine).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from pathlib import Path

import pytest
from diagnose import CheckError

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def _registry():
    if str(TUTORIALS) not in sys.path:
        sys.path.insert(0, str(TUTORIALS))
    import exercises

    return exercises


def _owner(spec: str):
    module, qualname = spec.split(":")
    *parents, name = qualname.split(".")
    obj = importlib.import_module(module)
    for part in parents:
        obj = getattr(obj, part)
    return obj, name


def _code(function):
    return getattr(inspect.unwrap(function), "__code__", None)


def forbidding(original, spec: str, codes: dict, marker: str):
    """``original``, raising when one of the code objects ``codes`` is on the caller's stack."""

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code in codes:
                raise CheckError(
                    f"your {codes[frame.f_code]} calls {spec.replace(':', '.')}, another "
                    f"implementation that minist keeps: exercise {marker} is to write it "
                    "yourself")
            frame = frame.f_back
        return original(*args, **kwargs)

    guarded.__wrapped_original__ = original
    return guarded


def guard(ex, codes: dict, patch: pytest.MonkeyPatch) -> None:
    """Patch, with ``patch``, every alternative and route of the exercise ``ex`` into a
    :func:`forbidding` wrapper of the code objects ``codes`` ({code: the student's function's
    name}): where it is defined, in every module of minist that imported it by name
    (``minist.losses`` re-exports the losses), and in the namespaces of ``ex``'s functions."""
    students = [_registry().resolve(spec) for spec in ex.functions]
    others = [spec for spec in (*ex.alternatives, *ex.routes) if ":" in spec]
    for spec in others:
        owner, name = _owner(spec)
        original = getattr(owner, name)
        if not inspect.isfunction(original):  # a constant, or a compiled kernel
            continue
        guarded = forbidding(original, spec, codes, ex.marker)
        patch.setattr(owner, name, guarded)
        namespaces = [getattr(f, "__globals__", {}) for f in students]
        namespaces += [vars(m) for key, m in list(sys.modules.items())
                       if (key == "minist" or key.startswith("minist.")) and m is not None]
        for namespace in namespaces:  # a name imported elsewhere stays guarded
            for key, value in list(namespace.items()):
                if value is original:
                    patch.setitem(namespace, key, guarded)


@pytest.fixture(scope="module", autouse=True)
def no_other_implementation(request):
    """Guard the alternatives and routes of the module's exercise (its ``pytestmark``)."""
    marks = getattr(request.module, "pytestmark", None)
    markers = [m.name for m in (marks if isinstance(marks, list) else [marks])
               if m is not None and m.name.startswith("ex_")]
    if not markers:
        yield
        return
    registry = _registry()
    ex = registry.get(markers[0])
    students = [registry.resolve(spec) for spec in ex.functions]
    codes = {_code(f): spec.split(":")[1] for f, spec in zip(students, ex.functions, strict=True)
             if _code(f) is not None}
    with pytest.MonkeyPatch.context() as patch:
        guard(ex, codes, patch)
        yield
