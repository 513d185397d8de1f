"""The teacher's values on seeded inputs: what the checks of a student version compare with.

In the teacher's tree an exercise check may compare the student's function with an independent
implementation (the Numba kernels of the losses). A student version holds none: those kernels
call the student's own function there (``Exercise.routes``), so comparing with them would prove
nothing. For those comparisons the checks read :func:`teacher_values`:

* in the teacher's tree, computed now by the teacher's independent implementation (``CASES``:
  each exercise's named cases, a function and seeded inputs);
* in a student version, read from ``tests/exercises/stored/<marker>.npz``, which
  ``tutorials/make_student_version.py`` writes into the copy (:func:`write`) -- inputs and
  outputs both, so the copy needs neither the implementation nor the same NumPy.

The rest of each check (finite differences, properties) needs no answer and runs the same
everywhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STORE = Path("tests") / "exercises" / "stored"
STUDENT_MARKER = Path("tutorials") / "STUDENT_VERSION.txt"


def in_student_version(root: Path = ROOT) -> bool:
    return (root / STUDENT_MARKER).exists()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _gram_target(N: int, rng: np.random.Generator) -> np.ndarray:
    """A style Gram (symmetric positive semi-definite) from random features."""
    S = rng.standard_normal((N, 2 * N + 1))
    return S @ S.T / S.shape[1]


def _guided_problem(N: int, M: int, seed: int):
    rng = _rng(seed)
    F = rng.standard_normal((N, M))
    T = rng.uniform(0.2, 1.5, M) * (rng.uniform(size=M) >= 0.3)
    return F, _gram_target(N, rng), T


def _guided_gram_by_kernels(F, A, T):
    """The guided Gram and style loss of ``F`` as the Numba kernels' plain ones of F o T."""
    from minist.losses import kernels_numba

    E, dFT = kernels_numba.style_layer_loss(F * T, A)
    return kernels_numba.gram_matrix_numba(F * T), E, dFT * T


# marker -> case name -> (the teacher's implementation "module:qualname", [inputs, ...]).
# Sizes whose factors cannot be confused (3 x 5) come first: the diagnoses name a factor.
CASES: dict[str, dict[str, tuple[str, list[tuple]]]] = {
    "ex_gram": {
        "gram_matrix": ("minist.losses.kernels_numba:gram_matrix_numba", [
            (_rng(seed).standard_normal(shape).astype(dtype),)
            for seed, shape, dtype in ((0, (3, 5), "f8"), (1, (1, 1), "f8"), (2, (8, 30), "f8"),
                                       (3, (6, 2), "f8"), (4, (4, 16), "f4"))]),
    },
    "ex_style_loss": {
        "style_layer_loss": ("minist.losses.kernels_numba:style_layer_loss", [
            (_rng(seed).standard_normal((N, M)), _gram_target(N, _rng(seed + 100)))
            for seed, N, M in ((0, 3, 5), (1, 1, 1), (2, 8, 40), (3, 5, 2))]),
    },
    "ex_content_loss": {
        "content_loss": ("minist.losses.kernels_numba:content_loss", [
            tuple(_rng(seed).standard_normal((2,) + shape).astype(dtype))
            for seed, shape, dtype in ((0, (3, 5), "f8"), (1, (1, 4, 3, 2), "f8"),
                                       (2, (6, 7), "f4"))]),
    },
    "ex_tv_loss": {
        "tv_loss": ("minist.losses.kernels_numba:tv_loss", [
            (_rng(seed).uniform(0, 1, shape).astype(dtype),)
            for seed, shape, dtype in ((0, (1, 2, 3, 5), "f8"), (1, (2, 3, 1, 4), "f8"),
                                       (2, (1, 3, 6, 6), "f4"), (3, (1, 1, 1, 1), "f8"))]),
    },
    "ex_guided_gram": {
        "guided": ("tests.exercises.stored:_guided_gram_by_kernels", [
            _guided_problem(N, M, seed) for seed, N, M in ((0, 3, 5), (1, 1, 1), (2, 6, 20))]),
    },
}


def _resolve(spec: str) -> Callable:
    module, qualname = spec.split(":")
    if module == "tests.exercises.stored":
        return globals()[qualname]
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _as_tuple(out) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(o) for o in (out if isinstance(out, tuple) else (out,)))


def teacher_values(marker: str, name: str, root: Path = ROOT) -> list[tuple[tuple, tuple]]:
    """``[(inputs, outputs)]`` of case ``name`` of exercise ``marker``, outputs a tuple."""
    if not in_student_version(root):
        spec, inputs = CASES[marker][name]
        function = _resolve(spec)
        return [(args, _as_tuple(function(*args))) for args in inputs]
    path = root / STORE / f"{marker}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(root).as_posix()}: the teacher's values for "
                                f"{marker} are missing from this student version (remake it with "
                                "tutorials/make_student_version.py)")
    with np.load(path) as data:
        values = {key: data[key] for key in data.files}
    cases = []
    for k in range(int(values[f"{name}/count"])):
        args = tuple(values[f"{name}/{k}/in{i}"] for i in range(int(values[f"{name}/{k}/nin"])))
        outs = tuple(values[f"{name}/{k}/out{j}"]
                     for j in range(int(values[f"{name}/{k}/nout"])))
        cases.append((args, outs))
    return cases


def write(root: Path, marker: str) -> Path:
    """Store ``marker``'s cases, computed here (the teacher's tree), into the copy at ``root``."""
    arrays: dict[str, np.ndarray] = {}
    for name, (spec, inputs) in CASES[marker].items():
        function = _resolve(spec)
        arrays[f"{name}/count"] = np.asarray(len(inputs))
        for k, args in enumerate(inputs):
            outs = _as_tuple(function(*args))
            arrays[f"{name}/{k}/nin"] = np.asarray(len(args))
            arrays[f"{name}/{k}/nout"] = np.asarray(len(outs))
            arrays |= {f"{name}/{k}/in{i}": np.asarray(a) for i, a in enumerate(args)}
            arrays |= {f"{name}/{k}/out{j}": o for j, o in enumerate(outs)}
    path = root / STORE / f"{marker}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
