"""The teacher's grading run: every exercise of every student, in isolation, with a time limit.

Usage (from the teacher's repository)::

    python tutorials/grade.py SUBMISSIONS/ -o REPORT_DIR [--only ex_gram,ex_tv_loss]
                              [--timeout 120] [--jobs 1]

``SUBMISSIONS`` holds one folder per student, named after the student: a copy made by
``tutorials/make_student_version.py`` and filled in. For each student and each exercise (all of
``tutorials/exercises.py``, or ``--only``) one worker process runs this repository's checks
(``tests/exercises/test_<marker>.py``) against the student's functions, and writes

* ``REPORT_DIR/grades.csv`` -- first column ``student``, then one column per exercise marker,
  each cell ``pass`` or ``fail``;
* ``REPORT_DIR/grades.md`` -- the same table, each ``fail`` followed by the first failure in
  words (what was compared, on what input, the diagnosis);
* ``REPORT_DIR/logs/<student>/<marker>.log`` -- the worker's output (pytest's, short
  tracebacks), to read when a line in words is not enough.

**What the worker runs.** This repository's ``minist``, with only the exercise's functions taken
from the student's copy: each is read from the student's source file (loaded as a module of its
own, whose imports resolve to this repository's ``minist``) and put in place of the teacher's
function before the checks import it. The other exercises' functions in the same file are the
teacher's too, so a wrong Gram matrix fails ``ex_gram`` only, not ``ex_style_loss`` as well; and
the checks, the independent implementations they compare with (the Numba kernels, the fast
layers) and the test helpers are all the teacher's: a student cannot change them by editing
their copy.

**Isolation.** Each worker is a process of its own, in a process group of its own, in an empty
temporary folder, with one thread for BLAS and Numba and files limited to 64 MiB. A worker that
runs past ``--timeout`` seconds is killed with its group; one that exits early (``sys.exit``,
``os._exit``, a crash), prints too much, or never reports is a ``fail`` with the reason; none of
that stops the other workers. A check passes only when pytest ran it to the end: a skip called
by the student's code, a collection error or an interrupted session is a ``fail``. Tampering
that is easy to do by accident or on a whim -- replacing ``numpy.testing``'s assertions, the
checks' helpers or pytest's functions from the student's module -- is detected (the worker
compares them before and after) and fails the exercise. This is *not* a security sandbox: the
student's code runs with the teacher's permissions and could, deliberately, read or write files,
use the network, or forge a result. Grade submissions you would run yourself, or run this inside
a container or a throw-away account.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import importlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

TUTORIALS = Path(__file__).resolve().parent
ROOT = TUTORIALS.parent
for path in (str(TUTORIALS), str(ROOT)):  # the teacher's minist and registry come first
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)

from exercises import EXERCISES, Exercise, get, source_path, split  # noqa: E402

DEFAULT_TIMEOUT_S = 120.0
FILE_LIMIT = 64 * 2**20  # bytes: the largest file a worker may write (its log included)
LOG_TAIL = 4000  # characters of a worker's log kept for the reason of a failure


class Grade(NamedTuple):
    student: str
    marker: str
    passed: bool
    words: str  # the first failure in words ("" when passed)
    seconds: float


# ------------------------------------------------------------------------------ the parent


def students_in(folder: Path) -> list[Path]:
    """The student folders of ``folder``, sorted by name (hidden folders skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def grade_one(student: Path, ex: Exercise, timeout: float, logs: Path | None = None) -> Grade:
    """Run one worker for ``student`` and ``ex``; never raises for what the student did."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"grade-{ex.marker}-") as tmp:
        work = Path(tmp)
        result_file, log_file = work / "result.json", work / "worker.log"
        command = [sys.executable, "-I", str(Path(__file__).resolve()), "--worker",
                   str(student.resolve()), ex.marker, str(result_file)]
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(command, cwd=work, env=_worker_env(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    **_isolation())
            timed_out = False
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                code = proc.wait()
        tail = _tail(log_file)
        if logs is not None:
            target = logs / student.name / f"{ex.marker}.log"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log_file, target)
        seconds = time.monotonic() - start
        if timed_out:
            return Grade(student.name, ex.marker, False,
                         f"timed out after {timeout:g} s (an endless loop, or far too slow)",
                         seconds)
        record = _read_result(result_file)
        passed, words = verdict(record, code, tail)
        return Grade(student.name, ex.marker, passed, words, seconds)


def verdict(record: dict | None, code: int, tail: str = "") -> tuple[bool, str]:
    """``(passed, first failure in words)`` from a worker's record and exit status."""
    if record is None:
        if code == -getattr(signal, "SIGXFSZ", 25):
            return False, f"stopped: wrote more than {FILE_LIMIT // 2**20} MiB of output"
        last = [line for line in tail.splitlines() if line.strip()][-1:] or ["(no output)"]
        return False, (f"the process ended (status {code}) before reporting its results -- "
                       f"sys.exit, os._exit or a crash in the submission? last output: "
                       f"{last[0][:200]}")
    if record.get("error"):
        return False, record["error"]
    if record.get("tampered"):
        return False, ("the submission changed the checks' tools: "
                       + ", ".join(record["tampered"][:5]))
    checks = record.get("checks", [])
    for check in checks:
        if check["outcome"] != "passed" and not (check["outcome"] == "skipped"
                                                  and check.get("when") == "setup"):
            return False, f"{check['name']}: {check['words']}"
    if not any(check["outcome"] == "passed" for check in checks):
        return False, f"no check ran to the end (pytest exit status {record.get('status')})"
    if record.get("status") != 0:
        return False, f"the checks did not finish normally (pytest exit status {record['status']})"
    return True, ""


def _worker_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MINIST_", "PYTHON", "HYPOTHESIS"))}
    env |= {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1"}
    return env


def _isolation() -> dict:
    """Popen options: a process group of its own, and limits on files and core dumps."""
    if os.name != "posix":  # pragma: no cover - Windows: a new process group, no limits
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return {"start_new_session": True, "preexec_fn": limit}


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the worker and everything it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover
            proc.kill()


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - LOG_TAIL))
        return f.read().decode(errors="replace")
    return ""


def _read_result(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def grade_all(submissions: Path, exercises: Sequence[Exercise], timeout: float, jobs: int = 1,
              logs: Path | None = None, progress=print) -> list[Grade]:
    """Grade every student folder of ``submissions`` on ``exercises``."""
    students = students_in(submissions)
    tasks = [(student, ex) for student in students for ex in exercises]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(grade_one, student, ex, timeout, logs) for student, ex in tasks]
        grades = []
        for future in futures:
            grade = future.result()
            grades.append(grade)
            if progress:
                words = f" -- {grade.words}" if grade.words else ""
                progress(f"{grade.student}: {grade.marker} {'pass' if grade.passed else 'fail'} "
                         f"({grade.seconds:.1f} s){words}")
    return grades


# ------------------------------------------------------------------------------ the report


def table(grades: Sequence[Grade]) -> tuple[list[str], list[str], dict]:
    """``(students, markers, {(student, marker): grade})`` in the order graded."""
    students = list(dict.fromkeys(g.student for g in grades))
    markers = list(dict.fromkeys(g.marker for g in grades))
    return students, markers, {(g.student, g.marker): g for g in grades}


def write_csv(path: Path, grades: Sequence[Grade]) -> None:
    students, markers, cells = table(grades)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", *markers])
    for student in students:
        writer.writerow([student, *("pass" if cells[student, m].passed else "fail"
                                    for m in markers)])
    _write_atomically(path, out.getvalue())


def write_markdown(path: Path, grades: Sequence[Grade], timeout: float) -> None:
    students, markers, cells = table(grades)

    def cell(g: Grade) -> str:
        if g.passed:
            return "pass"
        words = " ".join(g.words.split()).replace("|", "\\|")
        return f"**fail**: {words}"

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    passed = sum(g.passed for g in grades)
    lines = [
        "# Grades",
        "",
        f"Graded {when} by `tutorials/grade.py`: {len(students)} students, {len(markers)} "
        f"exercises, at most {timeout:g} s per exercise; {passed} of {len(grades)} pass. Each "
        "fail gives its first failed check in words; `logs/<student>/<exercise>.log` has the "
        "whole output.",
        "",
        "| student | " + " | ".join(markers) + " |",
        "|---|" + "---|" * len(markers),
    ]
    for student in students:
        lines.append(f"| {student} | " + " | ".join(cell(cells[student, m]) for m in markers)
                     + " |")
    _write_atomically(path, "\n".join(lines) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ the worker


def _tool_snapshot() -> dict[str, int]:
    """Identities of what the checks rely on, taken before any of the student's code runs."""
    import _pytest.python
    import _pytest.runner
    import diagnose
    import gradcheck
    import numpy
    import numpy.testing
    import pytest

    watched = {
        "numpy.testing": numpy.testing, "numpy": numpy, "pytest": pytest, "diagnose": diagnose,
        "gradcheck": gradcheck, "_pytest.runner": _pytest.runner,
        "_pytest.python": _pytest.python,
    }
    snapshot = {f"sys.modules[{name!r}]": id(module) for name, module in watched.items()}
    for prefix, module in watched.items():
        names = (vars(module) if prefix in ("diagnose", "gradcheck") else
                 [n for n in ("assert_allclose", "assert_array_equal", "assert_equal", "allclose",
                              "array_equal", "isclose", "fail", "skip", "main", "raises",
                              "call_and_report", "runtestprotocol", "pytest_pyfunc_call")
                  if hasattr(module, n)])
        for name in names:
            value = getattr(module, name)
            if callable(value):
                snapshot[f"{prefix}.{name}"] = id(value)
    return snapshot


def _changed(before: dict[str, int]) -> list[str]:
    after = _tool_snapshot()
    return [name for name, ident in before.items() if after.get(name) != ident]


def load_submission(student: Path, module: str, cache: dict):
    """The student's version of ``module``: their source file, run as a module of its own.

    Its imports resolve to the teacher's ``minist`` (only this one file is the student's).
    """
    if module in cache:
        return cache[module]
    path = source_path(f"{module}:x", student)
    real = path.resolve()
    if not real.is_file() or not real.is_relative_to(student.resolve()):
        raise FileNotFoundError(f"{path.relative_to(student)}: not in the submission")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    name = f"{module}.__submission__"
    spec = importlib.util.spec_from_file_location(name, real)
    loaded = importlib.util.module_from_spec(spec)
    loaded.__package__ = package
    sys.modules[name] = loaded  # as an import would (dataclasses, pickling look it up there)
    spec.loader.exec_module(loaded)
    cache[module] = loaded
    return loaded


def _lookup(obj, qualname: str):
    *parents, name = qualname.split(".")
    for part in parents:
        obj = getattr(obj, part)
    return obj, name


def install_submission(student: Path, ex: Exercise) -> None:
    """Put the student's functions of ``ex`` in place of the teacher's, before the checks run.

    In the student's modules, every *other* exercise's function is the teacher's again: each
    exercise is graded on its own.
    """
    loaded: dict = {}
    for spec in ex.functions:
        module, _ = split(spec)
        load_submission(student, module, loaded)
    for other in EXERCISES:  # isolation: other exercises' functions are the teacher's
        if other.marker == ex.marker:
            continue
        for spec in other.functions:
            module, qualname = split(spec)
            if module in loaded:
                owner, name = _lookup(loaded[module], qualname)
                teacher, _ = _lookup(importlib.import_module(module), qualname)
                setattr(owner, name, getattr(teacher, name))
    for spec in ex.functions:
        module, qualname = split(spec)
        owner, name = _lookup(loaded[module], qualname)
        target, _ = _lookup(importlib.import_module(module), qualname)
        function = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(target, name, function)


class Recorder:
    """A pytest plugin: each check's outcome and, when it failed, its line in words."""

    def __init__(self):
        self.checks: dict[str, dict] = {}
        self.errors: list[str] = []

    def pytest_configure(self, config):
        from check import use_quiet_hypothesis

        use_quiet_hypothesis(database=False)

    def pytest_collectreport(self, report):
        if report.failed:
            from check import collection_error_words

            self.errors.append(collection_error_words(str(report.longrepr)))

    def pytest_runtest_logreport(self, report):
        from diagnose import check_name

        name = check_name(report.nodeid.rsplit("::", 1)[-1])
        entry = self.checks.setdefault(report.nodeid, {"name": name, "outcome": "passed",
                                                       "when": "", "words": ""})
        if entry["outcome"] == "failed":
            return
        if report.failed:
            said = [v for k, v in report.user_properties if k == "diagnosis"]  # tests/conftest.py
            last = str(report.longrepr).strip().splitlines()[-1:] or ["(no message)"]
            entry.update(outcome="failed", when=report.when, words=(said or last)[0])
        elif report.skipped:
            entry.update(outcome="skipped", when=report.when,
                         words="" if report.when == "setup" else
                         "the check was skipped from inside the submission's code")
        elif report.when == "call":
            entry.update(outcome="passed", when="call")


def worker(student: str, marker: str, result: str) -> int:
    """Grade ``marker`` for the copy at ``student``; write the record to ``result`` (JSON)."""
    import pytest

    sys.path.insert(0, str(ROOT / "tests"))  # the teacher's test helpers, before any student code
    import diagnose

    record: dict = {"marker": marker, "status": None, "checks": [], "error": "", "tampered": []}
    before = _tool_snapshot()
    ex = get(marker)
    try:
        install_submission(Path(student), ex)
    except BaseException as err:  # SyntaxError, ImportError, SystemExit, ... at import time
        where = source_path(ex.functions[0], Path(student)).relative_to(Path(student))
        record["error"] = f"{where.as_posix()} could not be loaded: {diagnose.diagnose(err)}"
        _write_record(result, record)
        return 0
    recorder = Recorder()
    args = [str(ROOT / ex.check_file), "-m", marker, "-q", "--tb=short", "-rN",
            "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    try:
        status = pytest.main(args, plugins=[recorder])
    except BaseException as err:  # a SystemExit or KeyboardInterrupt that escaped pytest
        record["error"] = f"the checks were interrupted: {diagnose.diagnose(err)}"
        _write_record(result, record)
        return 0
    record["status"] = int(status)
    record["checks"] = list(recorder.checks.values())
    if recorder.errors:
        record["error"] = recorder.errors[0]
    record["tampered"] = _changed(before)
    _write_record(result, record)
    return 0


def _write_record(path: str, record: dict) -> None:
    _write_atomically(Path(path), json.dumps(record, indent=1))


# ------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker(*argv[1:4])
    parser = argparse.ArgumentParser(
        prog="python tutorials/grade.py",
        description="Grade a folder of student copies, each exercise in its own process.",
        epilog="exercises: " + ", ".join(ex.marker for ex in EXERCISES),
    )
    parser.add_argument("submissions", type=Path, help="one sub-folder per student")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="folder for grades.csv, grades.md and logs/")
    parser.add_argument("--only", default="", help="comma-separated exercises (default: all)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per exercise and student (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--jobs", type=int, default=1, help="workers at once (default 1)")
    args = parser.parse_args(argv)
    try:
        exercises = [get(m.strip()) for m in args.only.split(",") if m.strip()] or list(EXERCISES)
    except KeyError as err:
        print(f"grade.py: --only: {err.args[0]}", file=sys.stderr)
        return 2
    if not args.submissions.is_dir():
        print(f"grade.py: {args.submissions}: not a folder", file=sys.stderr)
        return 2
    if not students_in(args.submissions):
        print(f"grade.py: {args.submissions}: no student folders in it", file=sys.stderr)
        return 2
    if args.timeout <= 0 or args.jobs < 1:
        print("grade.py: --timeout must be > 0 and --jobs >= 1", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    grades = grade_all(args.submissions, exercises, args.timeout, args.jobs,
                       logs=args.output / "logs")
    write_csv(args.output / "grades.csv", grades)
    write_markdown(args.output / "grades.md", grades, args.timeout)
    print(f"wrote {args.output / 'grades.csv'} and {args.output / 'grades.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
