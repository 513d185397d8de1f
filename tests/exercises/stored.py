"""The teacher's values on seeded inputs: what the checks of a student version compare with.

In the teacher's tree an exercise check may compare the student's function with an independent
implementation (the Numba kernels of the losses; lesson 12's equations written as loops in the
teacher's own ``tests/test_temporal_loops.py``). A student version holds none: those kernels
call the student's own function there (``Exercise.routes``), and the teacher's tests are not
copied, so comparing with them would prove nothing or be impossible. For those comparisons the
checks read :func:`teacher_values`:

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
import importlib.util
import sys
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


def _video_flows(seed: int, H: int, W: int, dtype: str = "f4"):
    """A forward and a backward flow ``(2, H, W)``: a pan, a block moving faster, small noise and
    inconsistent pixels -- so that each of (C1), (C2) holds at some pixels and not at others."""
    rng = _rng(seed)
    backward = np.stack([np.full((H, W), -1.5), np.full((H, W), 0.5)])
    backward += 0.02 * rng.standard_normal((2, H, W))
    backward[0, H // 4 : H // 2 + 1, W // 3 : W // 3 + 3] = -4.0
    forward = -backward + 0.05 * rng.standard_normal((2, H, W))
    forward[:, rng.uniform(size=(H, W)) < 0.2] += 1.2
    return forward.astype(dtype), backward.astype(dtype)


def _warp_case(seed: int, C: int, H: int, W: int, dtype: str, reach: float):
    """An image ``(1, C, H, W)`` and a backward flow whose points land up to ``reach`` px away
    (some outside the frame)."""
    rng = _rng(seed)
    return (rng.uniform(size=(1, C, H, W)).astype(dtype),
            rng.uniform(-reach, reach, (2, H, W)).astype(dtype))


def _bilinear_case(seed: int, C: int, H: int, W: int):
    rng = _rng(seed)
    return (rng.uniform(size=(1, C, H, W)), rng.uniform(-1, H, (H, W)), rng.uniform(-1, W, (H, W)))


def _temporal_case(seed: int, C: int, H: int, W: int, dtype: str):
    """``x``, ``warped`` (float64) and weights in [0, 1] with zeros (float64)."""
    rng = _rng(seed)
    x = rng.uniform(size=(1, C, H, W)).astype(dtype)
    weights = rng.uniform(size=(H, W)) * (rng.uniform(size=(H, W)) > 0.3)
    return x, rng.uniform(size=(1, C, H, W)), weights


# The video exercises (lesson 12) compare with the equations written as loops, in the teacher's
# own tests/test_temporal_loops.py (no student version holds it).
LOOPS = "tests.test_temporal_loops"

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
    "ex_warp": {
        "warp": (f"{LOOPS}:warp_loops", [
            _warp_case(seed, C, H, W, dtype, reach) for seed, C, H, W, dtype, reach in (
                (0, 3, 3, 5, "f8", 1.5), (1, 1, 1, 4, "f8", 2.0), (2, 2, 6, 6, "f4", 2.5),
                (3, 3, 5, 7, "f8", 0.6))]),
        "sample_bilinear": (f"{LOOPS}:bilinear_loops", [
            _bilinear_case(seed, C, H, W) for seed, C, H, W in ((4, 1, 3, 5), (5, 3, 4, 4))]),
    },
    "ex_consistency": {
        "consistency": (f"{LOOPS}:consistency_loops", [
            _video_flows(seed, H, W, dtype) for seed, H, W, dtype in (
                (0, 5, 7, "f4"), (1, 9, 11, "f4"), (2, 8, 6, "f8"))]),
    },
    "ex_temporal_loss": {
        "temporal_loss": (f"{LOOPS}:temporal_loss_loops", [
            _temporal_case(seed, C, H, W, dtype) for seed, C, H, W, dtype in (
                (0, 3, 3, 5, "f8"), (1, 1, 1, 1, "f8"), (2, 3, 6, 4, "f4"), (3, 2, 4, 7, "f8"))]),
    },
}


def _tests_module(name: str):
    """``tests/<name>.py`` of this tree, loaded by its path (``tests/`` need not be on
    ``sys.path``: make_student_version.py loads this file on its own)."""
    key = f"_minist_tests_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "tests" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def _resolve(spec: str) -> Callable:
    module, qualname = spec.split(":")
    if module == "tests.exercises.stored":
        return globals()[qualname]
    if module.startswith("tests."):  # a teacher's module of tests/ (never in a student version)
        obj = _tests_module(module.removeprefix("tests."))
    else:
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
