"""The teacher's grading run, ``tutorials/grade.py``, on synthetic submissions.

Seven student copies (made by ``make_student_version.py``, then filled in) are graded on
``ex_gram`` and ``ex_tv_loss``: a correct one; one whose Gram has a wrong factor; one whose Gram
raises; one whose Gram never returns; one whose Gram ends the process (``os._exit``); one that
replaces ``numpy.testing.assert_allclose`` when its module is imported (which fails both); one
with no ``minist`` folder at all. The first five write ``tv_loss`` correctly, so a wrong Gram
must fail ``ex_gram`` alone (the exercises are graded in isolation). The table must be exactly
right, the report written, and the hanging worker killed at the time limit (none of its
processes left); a guard fails the test if grading hangs, no wall-clock limit is asserted.
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
import threading
from pathlib import Path

import pytest
from student_copies import msv, restore

ROOT = Path(__file__).resolve().parents[1]
GRAM, TV = "minist.losses.reference:gram_matrix", "minist.losses.reference:tv_loss"
TIMEOUT_S = 30.0

spec = importlib.util.spec_from_file_location("_minist_grade", ROOT / "tutorials" / "grade.py")
grade = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grade)

if (ROOT / msv.STUDENT_MARKER).exists():
    pytest.skip("this is a student version: grading belongs to the teacher's repository",
                allow_module_level=True)

SUBMISSIONS = {  # student -> (edits of the teacher's gram_matrix, ex_gram, ex_tv_loss, words)
    "alice": ((), "pass", "pass", ""),
    "bob": (((" / M  #", " / (2 * M)  #"),), "fail", "pass",
            "your G is 0.500x the expected one (off by a factor of 1/2)"),
    "carol": ((("F = feature_matrix(F)", "raise RuntimeError('oops')"),), "fail", "pass",
              "raised RuntimeError: oops (at minist/losses/reference.py:"),
    "dave": ((("F = feature_matrix(F)", "while True:\n        pass"),), "fail", "pass",
             "timed out"),
    "erin": ((("F = feature_matrix(F)", "import os\n    os._exit(3)"),), "fail", "pass",
             "the process ended (status 3) before reporting"),
    "frank": ((), "fail", "fail", "changed the checks' tools: numpy.testing.assert_allclose"),
    "gina": (None, "fail", "fail", "minist/losses/reference.py: not in the submission"),
}


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    template = folder / ".template"
    msv.make_student_version(template, quiet=True)
    for student, (edits, *_) in SUBMISSIONS.items():
        if edits is None:
            continue
        copy = folder / student
        shutil.copytree(template, copy)
        restore(copy, TV)
        restore(copy, GRAM, edits)
    with open(folder / "frank" / "minist" / "losses" / "reference.py", "a") as f:
        f.write("\nimport numpy.testing\n\nnumpy.testing.assert_allclose = lambda *a, **k: None\n")
    (folder / "gina").mkdir()  # handed in nothing useful
    (folder / "gina" / "notes.txt").write_text("I did not get to it")
    shutil.rmtree(template)
    return folder


def _processes_naming(folder: Path) -> list[str]:
    """The command lines of this machine's processes that name ``folder`` (from /proc)."""
    found = []
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            command = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8",
                                                                                     "replace")
        except OSError:  # ended while we looked
            continue
        if str(folder) in command:
            found.append(command)
    return found


@pytest.mark.slow
def test_grading_gives_the_right_table_and_kills_the_endless_loop(submissions, tmp_path):
    if not Path("/proc/self/cmdline").is_file():
        pytest.skip("no /proc: cannot see whether the timed-out worker was killed")
    report = tmp_path / "report"
    result = []
    grading = threading.Thread(target=lambda: result.append(grade.main(
        [str(submissions), "-o", str(report), "--only", "ex_gram,ex_tv_loss",
         "--timeout", str(TIMEOUT_S), "--jobs", "2"])), daemon=True)
    grading.start()
    grading.join(1800)  # a guard against a hang (14 workers of seconds, one of TIMEOUT_S)
    assert not grading.is_alive(), "grading hung: a worker past its time limit was not killed"
    assert result == [0]
    assert _processes_naming(submissions / "dave") == []  # the endless loop is gone, group too

    with open(report / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", "ex_gram", "ex_tv_loss"]
    expected = {student: [gram, tv] for student, (_, gram, tv, _) in SUBMISSIONS.items()}
    assert {row[0]: row[1:] for row in rows[1:]} == expected
    assert [row[0] for row in rows[1:]] == sorted(expected)  # one row per student, sorted

    markdown = (report / "grades.md").read_text()
    assert "| student | ex_gram | ex_tv_loss |" in markdown
    lines = {line.split(" | ")[0].removeprefix("| "): line for line in markdown.splitlines()
             if line.startswith("| ") and not line.startswith("| student")}
    for student, (_, gram, tv, words) in SUBMISSIONS.items():
        assert lines[student].count("**fail**") == [gram, tv].count("fail"), lines[student]
        assert words in lines[student], (student, lines[student])
    assert f"timed out after {TIMEOUT_S:g} s" in lines["dave"]  # killed at the limit given
    assert (report / "logs" / "bob" / "ex_gram.log").read_text().strip()


def test_verdict_needs_every_check_to_run_to_the_end():
    passed = {"name": "a", "outcome": "passed", "when": "call", "words": ""}
    gpu = {"name": "b", "outcome": "skipped", "when": "setup", "words": ""}
    skipped_by_code = {"name": "c", "outcome": "skipped", "when": "call",
                       "words": "the check was skipped from inside the submission's code"}
    ok = {"status": 0, "checks": [passed, gpu], "error": "", "tampered": []}
    assert grade.verdict(ok, 0) == (True, "")
    assert grade.verdict({**ok, "checks": [passed, skipped_by_code]}, 0)[0] is False
    assert grade.verdict({**ok, "checks": [gpu]}, 0)[0] is False  # nothing ran
    assert grade.verdict({**ok, "status": 2}, 0)[0] is False  # interrupted
    assert grade.verdict(None, -25)[1].startswith("stopped: wrote more than")
    assert "status 7" in grade.verdict(None, 7, "last words\n")[1]
