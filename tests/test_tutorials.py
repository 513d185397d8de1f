"""Every lesson in ``tutorials/`` runs top to bottom, as a script, at its small CI size.

Each lesson ``tutorials/NN_name.py`` runs in a fresh interpreter from the repository root with
``MINIST_LESSON_FAST=1`` (small images, few iterations; see ``tutorials/lesson_utils.py``) and
must exit 0 and write at least one figure under ``tutorials/figures/NN_name/`` during the run
(``lesson_utils.save_figure`` announces each one it writes).
The lessons use whatever weights are there: real ones in ``weights/`` or ``../shared``, else
random ones (and then say what they cannot show). Select them with ``pytest -m lesson``;
``MINIST_LESSON_TIMEOUT`` (seconds, default 240) sets the time limit per lesson.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
LESSONS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
TIMEOUT_S = int(os.environ.get("MINIST_LESSON_TIMEOUT", "240"))  # seconds per lesson


def test_lessons_are_numbered_in_order():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(1, len(LESSONS) + 1)), [p.name for p in LESSONS]


@pytest.mark.lesson
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_and_makes_its_figures(lesson: Path):
    pytest.importorskip("matplotlib", reason="the lessons need the 'tutorials' extra")
    figures = TUTORIALS / "figures" / lesson.stem
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "MINIST_LESSON_FAST": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path}
    start = time.time() - 1.0  # file times may be rounded down to the second
    try:
        result = subprocess.run([sys.executable, str(lesson.relative_to(ROOT))], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        partial = "".join(_text(part) for part in (err.stdout, err.stderr))[-4000:]
        pytest.fail(f"{lesson.name} ran longer than {TIMEOUT_S} s with MINIST_LESSON_FAST=1 "
                    f"(MINIST_LESSON_TIMEOUT sets the limit); its output so far:\n{partial}")
    output = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, f"{lesson.name} exited with {result.returncode}:\n{output}"
    # save_figure prints "[figure] tutorials/figures/<lesson>/<name>.png" for each figure
    announced = [ROOT / line.split("]", 1)[1].strip() for line in result.stdout.splitlines()
                 if line.startswith("[figure] ")]
    made = [p for p in announced if p.is_relative_to(figures) and p.is_file()
            and p.stat().st_mtime >= start]
    assert made, f"{lesson.name} wrote no figure under {figures.relative_to(ROOT)}:\n{output}"


def _text(part) -> str:
    if part is None:
        return ""
    return part.decode(errors="replace") if isinstance(part, bytes) else part
