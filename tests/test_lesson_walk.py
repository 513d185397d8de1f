"""The lessons in order, as a class meets them: each runs in a student's copy in which only the
exercises of the lessons before it are written.

One student version (every exercise stripped) is made; then, lesson by lesson: the lesson runs
(``MINIST_LESSON_FAST=1``, tiny random weights through ``MINIST_WEIGHTS``, small images) and must
exit 0 -- ``to_device`` and ``two_loop`` run on their stand-ins until lessons 07-08, the
lesson's own exercises are skipped (or the lesson stops at the first that it needs) with one
line, never a traceback; the lesson's exercise checks run and fail with "not written yet"
(not with an import or collection error); then the student "writes" the lesson's exercises (the
teacher's bodies are put back) and the class moves on. At the end every check passes. Generic
over the lessons in ``tutorials/`` and the exercises of ``tutorials/exercises.py``.

The copy gets this repository's compiled Numba kernels (``student_copies.share_numba_cache``),
so the walk costs a few seconds per lesson, not a first run's compilation.
``MINIST_LESSON_TIMEOUT`` (seconds, default 240) limits each lesson.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_random_vgg
from student_copies import exercises, fill_in, lesson_env, msv, share_numba_cache

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = int(os.environ.get("MINIST_LESSON_TIMEOUT", "240"))


def _run(args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        out = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                      for part in (err.stdout, err.stderr))
        pytest.fail(f"{' '.join(args)} ran longer than {TIMEOUT_S} s:\n{out[-3000:]}")


@pytest.mark.lesson
@pytest.mark.slow
def test_each_lesson_runs_when_only_the_earlier_lessons_exercises_are_written(tmp_path):
    pytest.importorskip("matplotlib", reason="the lessons need the 'tutorials' extra")
    copy = tmp_path / "class-copy"
    msv.make_student_version(copy, quiet=True)
    share_numba_cache(copy)
    weights = write_random_vgg(tmp_path / "tiny-vgg19.h5", "vgg19")
    env = lesson_env(copy, weights)

    lessons = sorted(p.stem for p in (copy / "tutorials").glob("[0-9][0-9]_*.py"))
    assert {ex.lesson for ex in exercises.EXERCISES} <= set(lessons)
    for lesson in lessons:
        result = _run([f"tutorials/{lesson}.py"], copy, env)
        output = (result.stdout + result.stderr)[-4000:]
        assert result.returncode == 0, (
            f"{lesson} fails in a student's copy where only the exercises of earlier lessons "
            f"are written:\n{output}")
        assert "Traceback" not in result.stdout + result.stderr, f"{lesson}:\n{output}"
        markers = [ex.marker for ex in exercises.EXERCISES if ex.lesson == lesson]
        if not markers:
            continue
        checks = _run(["-m", "pytest", "tests/exercises", "-q", "-p", "no:cacheprovider",
                       "-m", " or ".join(markers)], copy, env)
        summary = checks.stdout.strip().splitlines()[-1]
        assert checks.returncode == 1 and " error" not in summary, (
            f"{lesson}'s checks ({', '.join(markers)}) must run and fail before the student "
            f"writes them:\n{checks.stdout[-3000:]}")
        for marker in markers:
            assert f"FAIL {marker}: " in checks.stdout and "not written yet" in checks.stdout
            fill_in(copy, marker)  # the student writes this lesson's exercises

    checks = _run(["-m", "pytest", "tests/exercises", "-q", "-p", "no:cacheprovider"], copy, env)
    assert checks.returncode == 0, checks.stdout[-3000:]
