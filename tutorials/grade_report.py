"""The reports of ``tutorials/grade.py``: scores, and the files a teacher and their tools read.

A student's score on an exercise is its weight (1 unless ``--weights`` says otherwise) times the
fraction of its checks that pass; their score is the sum over the exercises they were handed.
A check that could not run here (one that needs a GPU, on a machine without one) counts
neither way. From a list of :class:`Grade` this module writes, into the report folder:

* ``grades.csv`` -- the gradebook, one row per student: ``student`` (the submission's folder
  name), the roster's columns (``--roster``: ids, e-mails), ``score``, ``max_score``, then the
  points of each exercise (empty where the student was not handed that exercise). Numbers
  only, so that a spreadsheet or an LMS gradebook imports it;
* ``checks.csv`` -- one row per student and exercise: checks passed, checks in all, weight,
  points, result and the first failure in words;
* ``grades.md`` -- the class at a glance: checks passed / checks per exercise, and the score;
* ``students/<student>.md`` -- every check of every exercise, passed or failed and why;
* with ``--gradescope FILE`` (one submission): Gradescope's autograder ``results.json``.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from exercises import EXERCISES, get


class Check(NamedTuple):
    name: str  # in words: "gradient matches finite differences [3-5]"
    passed: bool
    words: str  # why it failed, in one line ("" when passed)


class Grade(NamedTuple):
    student: str
    marker: str
    checks: tuple[Check, ...]  # every check of the exercise that could run here, in order
    words: str  # what went wrong with the exercise as a whole ("" when nothing did)
    seconds: float

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def passed_checks(self) -> int:
        return sum(check.passed for check in self.checks)

    @property
    def passed(self) -> bool:
        """Every check passes."""
        return self.total > 0 and self.passed_checks == self.total

    @property
    def fraction(self) -> float:
        return self.passed_checks / self.total if self.total else 0.0

    @property
    def first_failure(self) -> str:
        failed = next((c for c in self.checks if not c.passed), None)
        if failed is None:
            return self.words or ("" if self.total else "no check of this exercise could run")
        return f"{failed.name}: {failed.words}"

    @property
    def result(self) -> str:
        """``pass`` (every check), ``partial`` (some) or ``fail`` (none)."""
        if self.passed:
            return "pass"
        return "partial" if self.passed_checks else "fail"


class Student(NamedTuple):
    """One submission and what it is graded on."""

    name: str  # the submission's folder name
    exercises: tuple[str, ...]  # the markers it is graded on, in lesson order
    source: str  # where that list comes from, in words
    ids: Mapping[str, str]  # the roster's columns for this student ({} without a roster)
    copy_at: str = ""  # where in the submission the copy was found ("" = the folder itself)

    @property
    def copy_words(self) -> str:
        """The sentence saying where the copy graded was found, or ""."""
        if not self.copy_at:
            return ""
        return (f"The copy graded is the folder {self.copy_at}/ inside the submission (no "
                "minist/ folder at its top).")


def points(grade: Grade, weights: Mapping[str, float]) -> float:
    return weights.get(grade.marker, 1.0) * grade.fraction


def max_points(student: Student, weights: Mapping[str, float]) -> float:
    return sum(weights.get(m, 1.0) for m in student.exercises)


def score(student: Student, grades: Sequence[Grade], weights: Mapping[str, float]) -> float:
    return sum(points(g, weights) for g in grades if g.student == student.name)


def number(x: float) -> str:
    """``0.875``, ``2``, ``1.3333``: at most 4 decimals, no trailing zeros."""
    text = f"{round(x, 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _cell(text: str) -> str:
    """A text cell a spreadsheet shows as text (a leading = + - @ would start a formula)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _by_student(grades: Sequence[Grade]) -> dict[tuple[str, str], Grade]:
    return {(g.student, g.marker): g for g in grades}


def markers_of(students: Sequence[Student]) -> list[str]:
    """The exercises any student is graded on, in lesson order."""
    used = {m for s in students for m in s.exercises}
    return [ex.marker for ex in EXERCISES if ex.marker in used]


# ------------------------------------------------------------------------------- files


def write_gradebook(path: Path, students: Sequence[Student], grades: Sequence[Grade],
                    weights: Mapping[str, float], id_columns: Sequence[str] = ()) -> None:
    """``grades.csv``: one row per student, numbers a gradebook imports (module docstring)."""
    cells, markers = _by_student(grades), markers_of(students)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", *id_columns, "score", "max_score", *markers])
    for s in students:
        row = [_cell(s.name), *(_cell(s.ids.get(c, "")) for c in id_columns),
               number(score(s, grades, weights)), number(max_points(s, weights))]
        row += [number(points(cells[s.name, m], weights)) if (s.name, m) in cells else ""
                for m in markers]
        writer.writerow(row)
    write_atomically(path, out.getvalue())


CHECKS_COLUMNS = ["student", "exercise", "checks_passed", "checks_total", "weight", "points",
                  "result", "first_failure"]


def write_checks_table(path: Path, students: Sequence[Student], grades: Sequence[Grade],
                       weights: Mapping[str, float]) -> None:
    """``checks.csv``: one row per student and exercise graded."""
    cells = _by_student(grades)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CHECKS_COLUMNS)
    for s in students:
        for m in s.exercises:
            g = cells[s.name, m]
            writer.writerow([_cell(s.name), m, g.passed_checks, g.total,
                             number(weights.get(m, 1.0)), number(points(g, weights)), g.result,
                             _cell(g.first_failure)])
    write_atomically(path, out.getvalue())


def write_summary(path: Path, students: Sequence[Student], grades: Sequence[Grade],
                  weights: Mapping[str, float], timeout: float) -> None:
    """``grades.md``: checks passed / checks of each exercise per student, and the score."""
    cells, markers = _by_student(grades), markers_of(students)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    weighted = [m for m in markers if weights.get(m, 1.0) != 1.0]
    weight_words = ("; weights " + ", ".join(f"{m} {number(weights[m])}" for m in weighted)
                    if weighted else "")
    lines = [
        "# Grades",
        "",
        f"Graded {when} by `tutorials/grade.py`: {len(students)} students, at most "
        f"{timeout:g} s per exercise. A cell is checks passed / checks of the exercise (`·`: "
        "not handed out to that student); an exercise is worth its weight (1 unless set"
        f"{weight_words}) times the fraction of its checks that pass. Every check, with the "
        "reason of each failure: `students/<student>.md`; the numbers for a gradebook: "
        "`grades.csv` (per student) and `checks.csv` (per student and exercise).",
        "",
        "| student | score | " + " | ".join(markers) + " |",
        "|---|---|" + "---|" * len(markers),
    ]
    for s in students:
        row = [f"[{_md(s.name)}](students/{_link(s.name)}.md)",
               f"{number(score(s, grades, weights))} / {number(max_points(s, weights))}"]
        for m in markers:
            g = cells.get((s.name, m))
            row.append("·" if g is None else
                       f"{g.passed_checks}/{g.total}" if g.passed else
                       f"**{g.passed_checks}/{g.total}**")
        lines.append("| " + " | ".join(row) + " |")
    sources = sorted({s.source for s in students})
    lines += ["", "Exercises graded: " + "; ".join(
        f"{source} ({', '.join(s.name for s in students if s.source == source)})"
        for source in sources) + "."]
    write_atomically(path, "\n".join(lines) + "\n")


def student_report(student: Student, grades: Sequence[Grade], weights: Mapping[str, float],
                   timeout: float, logs: str = "logs") -> str:
    """``students/<student>.md``: every check of every exercise, and why each failure failed."""
    cells = _by_student(grades)
    total, best = score(student, grades, weights), max_points(student, weights)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"# {student.name}: {number(total)} of {number(best)} "
        f"{'point' if number(best) == '1' else 'points'}",
        "",
        f"Graded {when} by `tutorials/grade.py` on {student.source}; at most {timeout:g} s per "
        "exercise. Each exercise is worth its weight times the fraction of its checks that pass."
        + (f" {_md(student.copy_words)}" if student.copy_at else ""),
        "",
        "| exercise | checks passed | points |",
        "|---|---|---|",
    ]
    for m in student.exercises:
        g = cells[student.name, m]
        lines.append(f"| {m} | {g.passed_checks} / {g.total} | {number(points(g, weights))} / "
                     f"{number(weights.get(m, 1.0))} |")
    for m in student.exercises:
        g, ex = cells[student.name, m], get(m)
        worth = number(weights.get(m, 1.0))
        lines += ["", f"## {m}: {ex.summary}", "",
                  f"{g.passed_checks} of {g.total} checks pass: {number(points(g, weights))} of "
                  f"{worth} {'point' if worth == '1' else 'points'}. Derived in {ex.where}; the "
                  f"checks' output: `{logs}/{student.name}/{m}.log`.", ""]
        if g.words:
            lines += [f"**{_md(g.words)}**", ""]
        for check in g.checks:
            lines.append(f"- pass: {_md(check.name)}" if check.passed else
                         f"- **FAIL**: {_md(check.name)}: {_md(check.words)}")
        if not g.checks:
            lines.append("- no check of this exercise could run here")
    return "\n".join(lines) + "\n"


def write_student_reports(folder: Path, students: Sequence[Student], grades: Sequence[Grade],
                          weights: Mapping[str, float], timeout: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in students:
        write_atomically(folder / f"{s.name}.md", student_report(s, grades, weights, timeout))


def gradescope_results(student: Student, grades: Sequence[Grade],
                       weights: Mapping[str, float]) -> dict:
    """Gradescope's autograder ``results.json`` for one submission.

    One test per exercise (``name``, ``score``, ``max_score``, ``status``, ``output``: every
    check, the failed ones with their reason), the total ``score``, ``execution_time`` and an
    ``output`` that says what was graded (the format: Gradescope's "Autograder
    Specifications").
    """
    cells = _by_student(grades)
    tests = []
    for k, m in enumerate(student.exercises, 1):
        g = cells[student.name, m]
        lines = [f"{g.passed_checks} of {g.total} checks pass."]
        if g.words:
            lines.append(g.words)
        lines += [f"PASS {c.name}" if c.passed else f"FAIL {c.name}: {c.words}"
                  for c in g.checks]
        lines.append(f"Derived in {get(m).where}; check it with: python tutorials/check.py {m}")
        tests.append({
            "name": f"{m}: {get(m).summary}",
            "number": str(k),
            "score": round(points(g, weights), 4),
            "max_score": weights.get(m, 1.0),
            "status": "passed" if g.passed else "failed",
            "output": "\n".join(lines),
        })
    return {
        "score": round(score(student, grades, weights), 4),
        "execution_time": round(sum(g.seconds for g in grades if g.student == student.name)),
        "output": f"Graded on {student.source}: {_count(len(student.exercises), 'exercise')}, "
                  "each worth its weight times the fraction of its checks that pass."
                  + (f" {student.copy_words}" if student.copy_at else ""),
        "tests": tests,
    }


def write_gradescope(path: Path, student: Student, grades: Sequence[Grade],
                     weights: Mapping[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(gradescope_results(student, grades, weights), indent=1))


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _md(text: str) -> str:
    """One line of text for Markdown: no line breaks, no table pipes."""
    return " ".join(text.split()).replace("|", "\\|")


def _link(name: str) -> str:
    return name.replace(" ", "%20")


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
