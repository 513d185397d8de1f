"""Helpers for tests that work on student versions: fill exercises in, share the Numba cache.

* :func:`restore` puts the teacher's definition of one function back into a student's copy,
  optionally edited (a synthetic submission with a wrong factor, an endless loop, ...);
* :func:`fill_in` does it for every function of an exercise -- what a student who solved it has;
* :func:`share_numba_cache` copies this repository's compiled Numba kernels into a copy, so
  that lessons run there without compiling them again (the files the student version leaves
  unchanged keep their source stamp, which is what Numba's cache checks).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_minist_{name}", ROOT / "tutorials" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exercises = _load("exercises")
msv = _load("make_student_version")


def _span(source: str, qualname: str) -> tuple[int, int]:
    node = msv.find_function(ast.parse(source), qualname)
    return min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno


def restore(copy: Path, spec: str, edits: tuple[tuple[str, str], ...] = ()) -> None:
    """Copy the teacher's whole definition of ``spec`` over the student's, applying ``edits``
    (``(old, new)`` text replacements inside that definition)."""
    _, qualname = exercises.split(spec)
    teacher = exercises.source_path(spec, ROOT).read_text(encoding="utf-8")
    student_file = exercises.source_path(spec, copy)
    student = student_file.read_text(encoding="utf-8").splitlines(keepends=True)
    t0, t1 = _span(teacher, qualname)
    s0, s1 = _span("".join(student), qualname)
    definition = "".join(teacher.splitlines(keepends=True)[t0 - 1 : t1])
    for old, new in edits:
        if old not in definition:
            raise ValueError(f"{spec}: {old!r} is not in the teacher's definition")
        definition = definition.replace(old, new)
    student[s0 - 1 : s1] = [definition]
    student_file.write_text("".join(student), encoding="utf-8")


def fill_in(copy: Path, marker: str) -> None:
    """Write every function of exercise ``marker`` in the copy, as the teacher did."""
    for spec in exercises.get(marker).functions:
        restore(copy, spec)


def share_numba_cache(copy: Path, root: Path = ROOT) -> int:
    """Copy ``root``'s Numba cache files (``minist/**/__pycache__/*.nbi|nbc``) into ``copy``."""
    copied = 0
    for cached in (root / "minist").rglob("__pycache__/*.nb[ic]"):
        target = copy / cached.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, target)
        copied += 1
    return copied


def lesson_env(copy: Path, weights: Path) -> dict[str, str]:
    """The environment a lesson runs in from ``copy``, as a student runs it: none of this
    session's MINIST_ switches, fast mode at 48 px on the network in ``weights``, figures to
    files, and the copy's own minist first on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MINIST_")}
    return env | {"MINIST_LESSON_FAST": "1", "MINIST_LESSON_SIZE": "48",
                  "MINIST_WEIGHTS": str(weights), "MPLBACKEND": "Agg", "PYTHONPATH": str(copy)}
