"""Checks that fail with one line in words: what was compared, on what input, and why it differs.

The exercise checks compare a student's function with finite differences, with an independent
implementation or with a property. When they disagree a student needs to know *how*: "your
gradient is 2.000x the finite-difference one: off by a factor of 2" says more than "relative
error 0.333", and "returned float64 for float32 input: cast the target A to F's dtype" more
than ``assert dtype('float64') == float32``. The helpers here raise :class:`CheckError` with
such a line; :func:`diagnose` turns any exception a check ends with (a ``CheckError``, the
exercise's ``NotImplementedError``, an error raised inside the student's code, a plain
assertion) into one line. ``tests/conftest.py`` keeps that line on each failed exercise check's
report and prints them after the run; ``tutorials/check.py`` and ``tutorials/grade.py`` read
them there.

A diagnosis is a cheap guess, made only when it is cheap to be sure of it: a constant ratio
between two arrays (a missing or extra factor, a wrong sign), a transpose, all zeros, NaN.
"""

from __future__ import annotations

import itertools
import math
import re
import traceback
from collections.abc import Mapping

import numpy as np

from minist.backend import get_array_module


class CheckError(AssertionError):
    """A failed check, explained in one line."""


# ------------------------------------------------------------------------------ describing


def describe_inputs(inputs: Mapping[str, object] | None) -> str:
    """``"F (3, 5) float64, A (3, 3) float64"``: what a check ran on, briefly."""
    if not inputs:
        return ""
    parts = []
    for name, value in inputs.items():
        shape = getattr(value, "shape", None)
        if shape is None:
            parts.append(f"{name}={value!r}")
        else:
            parts.append(f"{name} {tuple(shape)} {getattr(value, 'dtype', '')}".rstrip())
    return ", ".join(parts)


def _on(inputs) -> str:
    text = describe_inputs(inputs)
    return f", on {text}" if text else ""


def _numpy(a) -> np.ndarray:
    a = a.get() if get_array_module(a) is not np else a
    return np.asarray(a, dtype=np.float64)


def _ratio_candidates(factors: Mapping[str, float] | None):
    """``[(value, description)]``: named factors, their powers and products, and 2 and 4."""
    named = [(name, float(v)) for name, v in (factors or {}).items() if float(v) not in (0, 1)]
    out = []
    powers = (-2, -1, 1, 2)
    for r in (1, 2):
        for combo in itertools.combinations(named, r):
            for exps in itertools.product(powers, repeat=r):
                value = math.prod(v**e for (_, v), e in zip(combo, exps, strict=True))
                text = " ".join(_power(n, e) for (n, _), e in zip(combo, exps, strict=True))
                equals = f"{abs(value):g}" if value >= 1 else f"1/{1 / abs(value):g}"
                out.append((value, f"{text} = {equals}", r))
    for c in (2.0, 4.0, 0.5, 0.25):
        out.append((c, f"{c:g}" if c > 1 else f"1/{1 / c:g}", 3))
    return out


def _power(name: str, e: int) -> str:
    if e == 1:
        return name
    if e == -1:
        return f"1/{name}"
    return f"{name}^{e}" if e > 0 else f"1/{name}^{-e}"


def explain_factor(c: float, factors: Mapping[str, float] | None = None) -> str:
    """``" (off by a factor of M = 5)"`` when ``c`` is a factor the test named, else ``""``."""
    size = abs(c)
    hits = sorted({(rank, text) for value, text, rank in _ratio_candidates(factors)
                   if math.isclose(size, value, rel_tol=1e-3)})
    if not hits:
        return ""
    best = hits[0][0]
    texts = [text for rank, text in hits if rank == best][:3]
    return f" (off by a factor of {' or '.join(texts)})"


def compare(got, want, *, rtol: float, atol: float, factors=None) -> str | None:
    """``None`` when ``got`` matches ``want`` within ``rtol``, ``atol``; else why not, in words.

    The words finish the sentence "your <thing> ...": "is 2.000x the expected one (off by a
    factor of 2)", "has the wrong sign", "is the transpose of the expected one", "is all zeros",
    "contains NaN", "differs: max relative error 0.12 at index (0, 1) (got 0.5, expected 0.45)"
    ("max absolute error" when the tolerance is ``atol`` alone, ``rtol=0``).
    """
    g, w = _numpy(got), _numpy(want)
    if g.shape != w.shape:
        hint = " (transposed?)" if g.shape == w.shape[::-1] and g.ndim == 2 else ""
        return f"has shape {g.shape}, expected {w.shape}{hint}"
    if not np.all(np.isfinite(g)):
        bad = "NaN" if np.isnan(g).any() else "inf"
        return f"contains {bad}"
    if np.allclose(g, w, rtol=rtol, atol=atol):
        return None
    scale = max(float(np.max(np.abs(w), initial=0.0)), 1e-300)
    if not np.any(g) and np.any(w):
        return "is all zeros"
    ww = float(np.vdot(w, w))
    if ww > 0:
        c = float(np.vdot(g, w)) / ww
        rest = float(np.max(np.abs(g - c * w), initial=0.0))
        if rest <= 1e-6 * max(abs(c), 1.0) * scale + atol and not math.isclose(c, 1.0,
                                                                                 rel_tol=rtol):
            if math.isclose(c, -1.0, rel_tol=1e-3):
                return "has the wrong sign"
            sign = "" if c > 0 else " (and the wrong sign)"
            return f"is {c:.3f}x the expected one{explain_factor(c, factors)}{sign}"
    if g.ndim == 2 and g.shape[0] == g.shape[1] and np.allclose(g, w.T, rtol=rtol, atol=atol):
        return "is the transpose of the expected one"
    error = np.abs(g - w)
    k = np.unravel_index(int(np.argmax(error - atol - rtol * np.abs(w))), g.shape)
    where = f" at index {tuple(int(i) for i in k)}" if g.ndim else ""
    if rtol > 0 and w[k] == 0:  # nothing to be relative to: the error itself
        return (f"differs: absolute error {float(error[k]):.3g}{where}, where it should be 0 "
                f"(got {g[k]:.6g}, expected {w[k]:.6g})")
    if rtol > 0:  # relative to the expected value, where there is one (not 0)
        nonzero = w != 0
        relative = error[nonzero] / (np.abs(w[nonzero]) + atol / rtol)
        size = f"max relative error {float(np.max(relative)):.3g}"
    else:  # an absolute tolerance only: a relative error would divide by atol / 0
        size = f"max absolute error {float(np.max(error)):.3g} (allowed {atol:.3g})"
    return f"differs: {size}{where} (got {g[k]:.6g}, expected {w[k]:.6g})"


# ------------------------------------------------------------------------------ the checks


def expect_close(got, want, *, what: str, against: str, inputs=None, rtol: float = 1e-7,
                 atol: float = 0.0, factors=None) -> None:
    """``got`` must equal ``want`` (from ``against``) within the tolerances.

    Fails with "<what> vs <against>, on <inputs>: your <what> <how it differs>".
    """
    __tracebackhide__ = True
    why = compare(got, want, rtol=rtol, atol=atol, factors=factors)
    if why is not None:
        raise CheckError(f"{what} vs {against}{_on(inputs)}: your {what} {why}")


def expect_gradient(got, numeric, *, what: str, inputs=None, tol: float = 1e-7,
                    factors=None) -> None:
    """An analytic gradient must match central finite differences (``relative_error < tol``).

    Fails with "<what> vs finite differences, on <inputs>: your gradient is 2.000x the
    finite-difference one (off by a factor of 2)".
    """
    __tracebackhide__ = True
    g, n = _numpy(got), _numpy(numeric)
    if g.shape == n.shape:
        scale = max(float(np.max(np.abs(g) + np.abs(n), initial=0.0)), 1e-300)
        if float(np.max(np.abs(g - n), initial=0.0)) / scale < tol:
            return
    why = compare(g, n, rtol=tol, atol=tol * float(np.max(np.abs(n), initial=0.0)),
                  factors=factors) or "differs from finite differences"
    why = why.replace("the expected one", "the finite-difference one")
    why = why.replace("expected ", "finite differences ")
    raise CheckError(f"{what} vs finite differences{_on(inputs)}: your gradient {why}")


def expect_dtype(got, dtype, *, what: str, input_name: str, hint: str = "") -> None:
    """``got`` must have ``dtype`` (the input's): "returned float64 for float32 F: <hint>"."""
    __tracebackhide__ = True
    have = np.dtype(getattr(got, "dtype", type(got)))
    if have != np.dtype(dtype):
        advice = f": {hint}" if hint else ""
        raise CheckError(f"{what} is {have} for {np.dtype(dtype)} {input_name}{advice}")


def expect_shape(got, shape, *, what: str, inputs=None) -> None:
    __tracebackhide__ = True
    have = tuple(getattr(got, "shape", ()))
    if have != tuple(shape):
        hint = " (transposed?)" if have == tuple(shape)[::-1] and len(have) == 2 else ""
        raise CheckError(f"{what} has shape {have}, expected {tuple(shape)}{_on(inputs)}{hint}")


def expect_scalar(got, dtype, *, what: str, input_name: str, hint: str = "") -> None:
    """A loss value: a 0-d array of the input's dtype."""
    __tracebackhide__ = True
    if np.ndim(got) != 0 or not hasattr(got, "dtype"):
        raise CheckError(f"{what} is {type(got).__name__} of shape {np.shape(got)}; expected "
                           "a 0-d array (xp.asarray(value, dtype=...))")
    expect_dtype(got, dtype, what=what, input_name=input_name, hint=hint)


def expect(condition: bool, message: str) -> None:
    """A property that must hold: fail with ``message`` (one line, in words)."""
    __tracebackhide__ = True
    if not condition:
        raise CheckError(message)


# ------------------------------------------------------------------------------ diagnosis


def diagnose(error: BaseException, tb=None, source_root: str = "minist") -> str:
    """One line in words for the exception a check ended with."""
    group = getattr(error, "exceptions", None)  # an exception group: several distinct failures
    if isinstance(group, tuple) and group and isinstance(group[0], BaseException):
        return diagnose(group[0], group[0].__traceback__, source_root)
    message = str(error).strip()
    first = message.splitlines()[0] if message else ""
    if isinstance(error, CheckError):
        return first
    if isinstance(error, NotImplementedError) and first.startswith("Exercise "):
        return "not written yet: " + first.split(": ", 1)[-1].split("; ")[0]
    name = type(error).__name__
    if name in ("Flaky", "FlakyFailure", "FlakyStrategyDefinition"):
        return ("gave different results on the same input: does the function keep state between "
                "calls, or modify its inputs?")
    if isinstance(error, AssertionError):
        return "assertion failed: " + _numpy_message(message)
    where = _student_frame(tb if tb is not None else error.__traceback__, source_root)
    text = f"{name}: {first}" if first else name
    return f"raised {text}{where}"


def _numpy_message(message: str) -> str:
    """numpy.testing's many-line report as one line; a plain assert's first line otherwise."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    mismatch = next((line for line in lines if line.startswith("Mismatched elements")), None)
    worst = next((line for line in lines if line.startswith("Max relative difference")), None)
    if mismatch:
        return f"{lines[0]}; {mismatch}" + (f"; {worst}" if worst else "")
    return lines[0]


def _student_frame(tb, source_root: str) -> str:
    """``" (at minist/losses/reference.py:97, in gram_matrix)"``: the innermost minist frame."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    pattern = re.compile(rf"(?:^|[\\/]){re.escape(source_root)}[\\/]")
    for frame in reversed(frames):
        match = pattern.search(frame.filename)
        if match:
            rel = frame.filename[match.start():].lstrip("\\/").replace("\\", "/")
            return f" (at {rel}:{frame.lineno}, in {frame.name})"
    return ""


# ----------------------------------------------------------------------- naming a check

# Words that an identifier spells in lower case: a check's name gives them back their case.
PROPER_WORDS = {
    "gram": "Gram", "numba": "Numba", "bfgs": "BFGS", "ntsc": "NTSC", "cupy": "CuPy",
    "cuda": "CUDA", "gpu": "GPU", "cpu": "CPU", "vgg": "VGG", "yiq": "YIQ", "rgb": "RGB",
    "adam": "Adam", "relu": "ReLU", "spd": "SPD",
}
PROPER_PHRASES = {"denman beavers": "Denman-Beavers", "the teachers": "the teacher's"}


def named(title: str):
    """Give a check the name a student reads when the identifier cannot spell it (apostrophes,
    symbols): ``@named("zero when the target is the features' own Gram")`` over the test."""

    def mark(test):
        test.check_name = title
        return test

    return mark


def check_name(test_name: str, *, title: str | None = None, identifiers=()) -> str:
    """A check's name in words, from its test's name (``"test_gradient_matches_..."``).

    ``title`` (a test's :func:`named`) replaces the identifier's words; otherwise runs of
    words that spell one of ``identifiers`` keep their underscores (``spd_power``, the
    functions the check file imports from minist) and :data:`PROPER_WORDS` get their case.
    Parameters stay: ``"... [1-2]"``.
    """
    base, _, params = test_name.partition("[")
    words = title or _words(base.removeprefix("test_"), set(identifiers))
    return f"{words} [{params}" if params else words


def _words(snake: str, identifiers: set[str]) -> str:
    parts, out, i = snake.split("_"), [], 0
    while i < len(parts):
        for j in range(len(parts), i + 1, -1):  # the longest run that is an identifier
            if "_".join(parts[i:j]) in identifiers:
                out.append("_".join(parts[i:j]))
                i = j
                break
        else:
            out.append(PROPER_WORDS.get(parts[i], parts[i]))
            i += 1
    text = " ".join(out)
    for plain, proper in PROPER_PHRASES.items():
        text = re.sub(rf"\b{plain}\b", proper, text)
    return text


def check_name_of(item) -> str:
    """The name in words of the check ``item`` (a pytest item: its test's :func:`named`, or its
    name with the identifiers its module imports from minist)."""
    module = getattr(item, "module", None)
    title = getattr(getattr(item, "function", None), "check_name", None)
    return check_name(item.name, title=title,
                      identifiers=minist_identifiers(vars(module)) if module else ())


def minist_identifiers(namespace: Mapping[str, object]) -> list[str]:
    """The names with an underscore that ``namespace`` (a check module's globals) takes from
    minist: the functions a check's name may mention (``rgb_to_yiq``)."""
    return [name for name, value in namespace.items()
            if "_" in name.strip("_") and str(getattr(value, "__module__", "") or "")
            .startswith("minist")]
