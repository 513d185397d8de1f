"""The teacher's grading run: every exercise of every student, in isolation, with a time limit.

Usage (from the teacher's repository)::

    python tutorials/grade.py SUBMISSIONS/ -o REPORT_DIR [--manifest FILE_OR_FOLDER ...]
                              [--only ex_gram,ex_tv_loss] [--weights ex_gram=2,... | FILE]
                              [--roster roster.csv] [--gradescope results.json]
                              [--timeout 120] [--jobs 1]

``SUBMISSIONS`` holds one folder per student, named after the student: a copy made by
``tutorials/make_student_version.py`` and filled in -- or a folder holding that copy one or two
levels down (``erin/class-copy/minist/...``, as an unpacked archive often is). A
``SUBMISSIONS`` that is itself a copy is one student's submission (as Gradescope hands it over).

**Which exercises.** Each student is graded on the exercises their copy was handed out with:
``make_student_version.py`` writes the teacher a manifest beside the copy
(``class-copy.manifest.json``), and ``--manifest`` gives it here (a file, or a folder of them; a
submission takes the manifest of the handout named like its folder, or its roster ``handout``,
or the only one given). Without a manifest the copy's ``tutorials/STUDENT_VERSION.txt`` says,
which the student could have edited (the reports say so); without either, every exercise.
``--only`` grades every student on those of the exercises listed that their copy was handed
out with: an exercise not handed out never counts (the teacher's code is still in the copy),
and the reports name the ones left out.

**Grades.** For each student and each of their exercises one worker process runs this
repository's checks (``tests/exercises/test_<marker>.py``) against the student's functions.
An exercise is worth its weight (``--weights``; 1 each by default) times the fraction of its
checks that pass, so 7 of 8 checks give 7/8 of it; a student's score is the sum. Which checks
exist is decided here, before any student code runs, so a submission cannot drop one.
``REPORT_DIR`` gets ``grades.csv`` (a gradebook: one row per student, ``--roster`` ids and
e-mails, score, max score, points per exercise), ``checks.csv`` (per student and exercise),
``grades.md`` (the class at a glance), ``students/<student>.md`` (every check and why each
failure failed) and ``logs/<student>/<marker>.log`` (pytest's output); ``--gradescope FILE``
writes Gradescope's autograder ``results.json`` for a single submission
(:mod:`grade_report`).

**What the worker runs.** This repository's ``minist``, with only the exercise's functions taken
from the student's copy: each is read from the student's source file (loaded as a module of its
own, whose imports resolve to this repository's ``minist``) and put in place of the teacher's
function before the checks import it -- everywhere minist holds it: the module attribute, the
names other modules imported (``from minist.backend import to_device``), dispatch tables
(``minist.color._TRANSFORMS``), closures (:func:`reroute`). The other exercises' functions in
the same file are the teacher's too, so a wrong Gram matrix fails ``ex_gram`` only, not
``ex_style_loss`` as well; and the checks, the independent implementations they compare with
(the Numba kernels, the fast layers) and the test helpers are all the teacher's: a student
cannot change them by editing their copy.

**Isolation.** Each worker is a process of its own, in a process group of its own, in an empty
temporary folder, with one thread for BLAS and Numba and files limited to 64 MiB. A worker that
runs past ``--timeout`` seconds is killed with its group; one that exits early (``sys.exit``,
``os._exit``, a crash), prints too much, or never reports fails the checks it had not finished,
with the reason (the checks it finished before count); none of that stops the other workers. A
check passes only when pytest ran it to the end: a skip called by the student's code is a
failure, a collection error or an interrupted session fails every check. Tampering that is easy
to do by accident or on a whim -- replacing ``numpy.testing``'s assertions, the checks' helpers
or pytest's functions from the student's module -- is detected (the worker compares them after
every check) and fails the whole exercise. This is *not* a security sandbox: the student's code
runs with the teacher's permissions and could, deliberately, read or write files, use the
network, or forge a result. Grade submissions you would run yourself, or run this inside a
container or a throw-away account (Gradescope runs each submission in a container of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

TUTORIALS = Path(__file__).resolve().parent
ROOT = TUTORIALS.parent
for path in (str(TUTORIALS), str(ROOT)):  # the teacher's minist and registry come first
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)

from exercises import EXERCISES, MARKERS, Exercise, get, source_path, split  # noqa: E402
from grade_report import (  # noqa: E402
    Check,
    Grade,
    Student,
    write_atomically,
    write_checks_table,
    write_gradebook,
    write_gradescope,
    write_student_reports,
    write_summary,
)

DEFAULT_TIMEOUT_S = 120.0
FILE_LIMIT = 64 * 2**20  # bytes: the largest file a worker may write (its log included)
LOG_TAIL = 4000  # characters of a worker's log kept for the reason of a failure
STUDENT_VERSION = Path("tutorials") / "STUDENT_VERSION.txt"  # make_student_version's marker
MANIFEST_FORMAT = "minist-handout-manifest"  # make_student_version.MANIFEST_FORMAT
MANIFEST_SUFFIX = ".manifest.json"
NOT_COPIES = {"__MACOSX"}  # folders an archive tool adds beside the files


class SetupError(Exception):
    """A problem with the command line or the teacher's files: one line, exit status 2."""


# ------------------------------------------------------------------- finding the copies


class Submission(NamedTuple):
    name: str  # the folder's name: the student
    folder: Path  # what was handed in
    copy: Path | None  # the copy inside it (the folder itself, or one or two levels down)
    problem: str  # why no copy was found ("" when one was)


def _is_copy(folder: Path) -> bool:
    return (folder / "minist").is_dir()


def _subfolders(folder: Path) -> list[Path]:
    with contextlib.suppress(OSError):
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p.name not in NOT_COPIES)
    return []


def find_copy(folder: Path) -> tuple[Path | None, str]:
    """``(copy, "")``: the folder with ``minist/`` in ``folder`` or one or two levels down;
    ``(None, why)`` when there is none, or more than one at the same depth."""
    if _is_copy(folder):
        return folder, ""
    level = [folder]
    for _ in range(2):
        level = [sub for parent in level for sub in _subfolders(parent)]
        found = [sub for sub in level if _is_copy(sub)]
        if len(found) == 1:
            return found[0], ""
        if found:
            names = ", ".join(p.relative_to(folder).as_posix() for p in found)
            return None, f"the submission holds several copies ({names}): hand in one"
    return None, "no minist/ folder in the submission (looked two folders down)"


def submissions_in(folder: Path, single: bool = False) -> list[Submission]:
    """The submissions of ``folder``: one per student folder (sorted, hidden ones skipped), or
    ``folder`` itself when it is a copy or ``single`` says so."""
    folders = [folder] if single or _is_copy(folder) else _subfolders(folder)
    return [Submission(p.name, p, *find_copy(p)) for p in folders]


# ------------------------------------------------------ which exercises each student gets


def read_manifests(paths: Sequence[Path]) -> dict[str, tuple[str, ...]]:
    """``{handout: markers}`` from manifest files and folders of them (``*.manifest.json``)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob(f"*{MANIFEST_SUFFIX}"))
            if not found:
                raise SetupError(f"--manifest {path}: no *{MANIFEST_SUFFIX} in that folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise SetupError(f"--manifest {path}: no such file or folder")
    manifests: dict[str, tuple[str, ...]] = {}
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            if record.get("format") != MANIFEST_FORMAT:
                raise ValueError("not a manifest of make_student_version.py")
            handout, markers = str(record["handout"]), tuple(record["exercises"])
            unknown = [m for m in markers if m not in MARKERS]
            if unknown or not markers:
                raise ValueError(f"unknown exercises {unknown}" if unknown else "no exercises")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise SetupError(f"--manifest {file}: {err}") from None
        if handout in manifests and manifests[handout] != markers:
            raise SetupError(f"--manifest {file}: a second manifest for handout {handout!r}")
        manifests[handout] = markers
    return manifests


def markers_in_student_version(copy: Path) -> tuple[str, ...]:
    """The exercises the copy's ``tutorials/STUDENT_VERSION.txt`` lists (none if it has none)."""
    try:
        text = (copy / STUDENT_VERSION).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    listed = {line.split()[0] for line in text.splitlines() if line.strip()}
    return tuple(m for m in MARKERS if m in listed)


def exercises_for(sub: Submission, only: Sequence[str], manifests: Mapping[str, Sequence[str]],
                  handout: str = "") -> tuple[tuple[str, ...], str]:
    """``(markers, where they come from in words)`` for one submission (module docstring):
    the exercises its copy was handed out with (:func:`handed_out`), and of those only the ones
    ``only`` lists when it lists any -- an exercise not handed out never counts (the words name
    the ones left out)."""
    handed, source = handed_out(sub, manifests, handout)
    if not only:
        return handed, source
    chosen = tuple(m for m in only if m in handed)
    skipped = [m for m in only if m not in handed]
    words = f"the exercises given with --only, of {source}"
    if skipped:
        words += f"; not graded, not handed out to this copy: {', '.join(skipped)}"
    return chosen, words


def handed_out(sub: Submission, manifests: Mapping[str, Sequence[str]],
               handout: str = "") -> tuple[tuple[str, ...], str]:
    """``(markers, where they come from in words)``: what the submission's copy was handed out
    with -- its manifest, else its ``STUDENT_VERSION.txt``, else every exercise."""
    if manifests:
        key = handout or sub.name
        if key in manifests:
            return tuple(manifests[key]), f"the exercises of handout {key!r} (its manifest)"
        if handout:
            raise SetupError(f"--roster: {sub.name}'s handout {handout!r} has no manifest among "
                             f"{', '.join(sorted(manifests))}")
        if len(manifests) == 1:
            (name, markers), = manifests.items()
            return tuple(markers), f"the exercises of handout {name!r} (its manifest)"
        raise SetupError(f"{sub.name}: which handout? no manifest is named {sub.name!r} among "
                         f"{', '.join(sorted(manifests))}; add a 'handout' column to --roster")
    listed = markers_in_student_version(sub.copy) if sub.copy is not None else ()
    if listed:
        return listed, ("the exercises its tutorials/STUDENT_VERSION.txt lists (no manifest "
                        "given; the student could have edited that file)")
    return MARKERS, "every exercise (no manifest given, and no tutorials/STUDENT_VERSION.txt)"


def read_roster(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``({folder: {column: value}}, id columns)`` from a roster CSV with a ``folder`` column.

    Every other column (``id``, ``email``, ``name``, ...) goes into ``grades.csv`` beside the
    folder name, except ``handout``: the handout (manifest) that student's copy was made as.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            columns = list(rows[0].keys()) if rows else []
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise SetupError(f"--roster {path}: {err}") from None
    if "folder" not in columns:
        raise SetupError(f"--roster {path}: needs a 'folder' column (the submission folder's "
                         f"name); it has {', '.join(columns) or 'no header'}")
    roster = {}
    for row in rows:
        name = (row.get("folder") or "").strip()
        if name in roster:
            raise SetupError(f"--roster {path}: folder {name!r} is listed twice")
        if name:
            roster[name] = {k: (v or "").strip() for k, v in row.items() if k is not None}
    return roster, [c for c in columns if c not in ("folder", "handout")]


def read_weights(text: str) -> dict[str, float]:
    """``{marker: weight}`` from ``ex_gram=2,ex_tv_loss=0.5`` or a file of such lines."""
    path = Path(text)
    if text and path.is_file():
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    weights = {}
    for item in text.replace("\n", ",").split(","):
        if not item.strip():
            continue
        marker, sep, value = item.replace(":", "=").partition("=")
        marker = marker.strip()
        try:
            get(marker)
            weight = float(value) if sep else float("nan")
        except KeyError as err:
            raise SetupError(f"--weights: {err.args[0]}") from None
        except ValueError:
            weight = float("nan")
        if not weight >= 0:
            raise SetupError(f"--weights: {item.strip()!r}: expected exercise=weight, a weight "
                             ">= 0")
        weights[marker] = weight
    return weights


# ------------------------------------------------------------------- the checks there are


def collect_checks(markers: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """``{marker: [(node id, name in words), ...]}``: the checks of each exercise that run on
    this machine (a GPU check without a GPU does not), collected from the teacher's files in
    a process of their own before any student code runs."""
    with tempfile.TemporaryDirectory(prefix="grade-collect-") as tmp:
        out = Path(tmp) / "checks.json"
        command = [sys.executable, "-I", str(Path(__file__).resolve()), "--collect", str(out),
                   *markers]
        proc = subprocess.run(command, cwd=tmp, env=_worker_env(), capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        record = _read_result(out)
    if proc.returncode != 0 or record is None:
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise SetupError(f"could not collect the checks of {', '.join(markers)}: {last[0]}")
    missing = [m for m in markers if not record.get(m)]
    if missing:
        raise SetupError(f"no checks found for {', '.join(missing)}")
    return {m: [tuple(check) for check in record[m]] for m in markers}


def collector(out: str, markers: Sequence[str]) -> int:
    """``grade.py --collect OUT markers...``: write :func:`collect_checks`' record to OUT."""
    import pytest

    sys.path.insert(0, str(ROOT / "tests"))

    class Collector:
        """Each exercise check's node id and name in words, unless it is skipped here (after
        ``tests/conftest.py`` has marked what needs a GPU)."""

        def __init__(self):
            self.checks: dict[str, list[tuple[str, str]]] = {}

        @pytest.hookimpl(trylast=True)
        def pytest_collection_modifyitems(self, items):
            from diagnose import check_name_of

            for item in items:
                markers = [m.name for m in item.iter_markers() if m.name in MARKERS]
                if markers and not skipped_here(item):
                    self.checks.setdefault(markers[0], []).append((item.nodeid,
                                                                   check_name_of(item)))

    plugin = Collector()
    files = [str(ROOT / get(m).check_file) for m in markers]
    status = pytest.main([*files, "--collect-only", "-q", "-m", " or ".join(markers),
                          "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                          "-c", str(ROOT / "pyproject.toml")], plugins=[plugin])
    write_atomically(Path(out), json.dumps(plugin.checks))
    return int(status)


def skipped_here(item) -> bool:
    """Whether pytest will skip ``item`` at its setup: a ``skip`` mark, or a ``skipif`` whose
    condition is already ``True``."""
    if item.get_closest_marker("skip") is not None:
        return True
    return any(arg is True for mark in item.iter_markers("skipif") for arg in mark.args)


# ------------------------------------------------------------------------------ the parent


def grade_one(sub: Submission, ex: Exercise, checks: Sequence[tuple[str, str]], timeout: float,
              logs: Path | None = None) -> Grade:
    """Run one worker for ``sub`` and ``ex``; never raises for what the student did."""
    start = time.monotonic()
    if sub.copy is None:
        return grade_from(sub.name, ex.marker, checks, None, 0, "", sub.problem, 0.0)
    with tempfile.TemporaryDirectory(prefix=f"grade-{ex.marker}-") as tmp:
        work = Path(tmp)
        result_file, log_file = work / "result.json", work / "worker.log"
        command = [sys.executable, "-I", str(Path(__file__).resolve()), "--worker",
                   str(sub.copy.resolve()), ex.marker, str(result_file)]
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(command, cwd=work, env=_worker_env(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    **_isolation())
            stopped = ""
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stopped = f"timed out after {timeout:g} s (an endless loop, or far too slow)"
                _kill_group(proc)
                code = proc.wait()
        tail = _tail(log_file)
        if logs is not None:
            target = logs / sub.name / f"{ex.marker}.log"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log_file, target)
        record = _read_result(result_file)
        return grade_from(sub.name, ex.marker, checks, record, code, tail, stopped,
                          time.monotonic() - start)


def grade_from(student: str, marker: str, checks: Sequence[tuple[str, str]], record: dict | None,
               code: int, tail: str = "", stopped: str = "", seconds: float = 0.0) -> Grade:
    """The :class:`Grade` of one exercise from the worker's record and how the worker ended.

    ``checks`` are the exercise's checks (:func:`collect_checks`); each passes only when the
    record says pytest ran it to the end and it passed. ``stopped`` says why the worker did not
    finish (a time limit, no copy to grade); otherwise a record that is missing or unfinished
    means the process ended early, and the checks it did not finish fail with that reason.
    """
    words = ""
    if record is None or not record.get("finished"):
        words = stopped or _ended_early(code, tail)
    elif record.get("status") not in (0, 1):  # 0: all passed, 1: some failed
        words = f"the checks did not finish normally (pytest exit status {record.get('status')})"
    if record is not None and record.get("error"):
        words = record["error"]
        record = None
    elif record is not None and record.get("tampered"):
        words = "the submission changed the checks' tools: " + ", ".join(record["tampered"][:5])
        record = None
    done = (record or {}).get("checks", {})
    result = []
    for nodeid, name in checks:
        entry = done.get(nodeid)
        if entry is None:
            result.append(Check(name, False, f"did not run: {words or 'pytest did not run it'}"))
        elif entry["outcome"] == "skipped" and entry.get("when") == "setup":
            continue  # not on this machine (a GPU check without a GPU): counts neither way
        elif entry["outcome"] == "passed" and entry.get("when") == "call":
            result.append(Check(name, True, ""))
        elif entry["outcome"] == "passed":  # set up, never called or never finished
            result.append(Check(name, False, "did not run to the end: "
                                             f"{words or 'pytest did not call it'}"))
        elif entry["outcome"] == "skipped":
            result.append(Check(name, False, "the check was skipped from inside the "
                                             "submission's code"))
        else:
            result.append(Check(name, False, entry.get("words") or "failed"))
    return Grade(student, marker, tuple(result), words, seconds)


def _ended_early(code: int, tail: str) -> str:
    if code == -getattr(signal, "SIGXFSZ", 25):
        return f"stopped: wrote more than {FILE_LIMIT // 2**20} MiB of output"
    last = [line for line in tail.splitlines() if line.strip()][-1:] or ["(no output)"]
    return (f"the process ended (status {code}) before the checks finished -- sys.exit, "
            f"os._exit or a crash in the submission? last output: {last[0][:200]}")


def grade_all(subs: Sequence[Submission], students: Sequence[Student], timeout: float,
              jobs: int = 1, logs: Path | None = None, progress=print) -> list[Grade]:
    """Grade every submission on its exercises (``students[k]`` is ``subs[k]``'s)."""
    markers = [m for m in MARKERS if any(m in s.exercises for s in students)]
    checks = collect_checks(markers) if markers else {}
    tasks = [(sub, get(m)) for sub, student in zip(subs, students, strict=True)
             for m in student.exercises]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(grade_one, sub, ex, checks[ex.marker], timeout, logs)
                   for sub, ex in tasks]
        grades = []
        for future in futures:
            grade = future.result()
            grades.append(grade)
            if progress:
                words = "" if grade.passed else f" -- {grade.first_failure}"
                progress(f"{grade.student}: {grade.marker} {grade.passed_checks}/{grade.total} "
                         f"checks ({grade.seconds:.1f} s){words}")
    return grades


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


def reroute(old, new) -> list[str]:
    """Put ``new`` wherever this process holds ``old``; return the places, in words.

    The checks reach a function not only through its module (``minist.color.pca_transform``)
    but through whatever else holds it: a dispatch table (``minist.color._TRANSFORMS["pca"]``),
    the name another module imported (``minist.vgg.to_device``), a closure's cell, a class
    attribute, a namespace of functions. :func:`gc.get_referrers` finds every one; dicts
    (module namespaces, tables, objects' attributes), lists and cells get ``new`` in place,
    classes get it with ``setattr``. What cannot change in place (a tuple, a
    ``functools.partial``) is reported as ``"not rerouted: ..."``.
    """
    # No comprehension or lambda here may use old or new: that would make them cells of this
    # function, which gc.get_referrers would find (and this loop rewrite) as "a closure".
    holders = gc.get_referrers(old)
    module_names = {}
    for module in list(sys.modules.values()):
        if isinstance(module, types.ModuleType):
            module_names[id(vars(module))] = module.__name__
    places = []
    for holder in holders:
        if isinstance(holder, dict):
            owner = _class_of(holder)
            for key, value in list(holder.items()):
                if value is not old:
                    continue
                if owner is not None:  # a class's namespace: only setattr keeps its caches right
                    setattr(owner, key, new)
                    places.append(f"{owner.__module__}.{owner.__qualname__}.{key}")
                else:
                    holder[key] = new
                    places.append(_describe(holder, key, module_names))
        elif isinstance(holder, list):
            for k, value in enumerate(holder):
                if value is old:
                    holder[k] = new
            places.append("a list")
        elif isinstance(holder, types.CellType):
            holder.cell_contents = new
            places.append("a closure")
        elif not isinstance(holder, types.FrameType):
            places.append(f"not rerouted: a {type(holder).__name__}")
    return places


def _class_of(namespace: dict) -> type | None:
    """The class whose ``__dict__`` is ``namespace``, or None."""
    for owner in gc.get_referrers(namespace):
        if isinstance(owner, type) and any(d is namespace for d in gc.get_referents(vars(owner))):
            return owner
    return None


def _describe(holder: dict, key, module_names: Mapping[int, str]) -> str:
    """``minist.color.pca_transform`` or ``minist.color._TRANSFORMS['pca']``."""
    if id(holder) in module_names:
        return f"{module_names[id(holder)]}.{key}"
    for module_name in sorted(set(module_names.values())):
        module = sys.modules.get(module_name)
        for name, value in list(vars(module).items()) if module else ():
            if value is holder:
                return f"{module_name}.{name}[{key!r}]"
    return f"a dict[{key!r}]"


def install_submission(copy: Path, ex: Exercise) -> list[str]:
    """Put the student's functions of ``ex`` in place of the teacher's, before the checks run:
    everywhere the teacher's minist holds them (:func:`reroute`); returns where, in words.

    In the student's modules, every *other* exercise's function is the teacher's again: each
    exercise is graded on its own; so are the exercise's alternatives and routes (another
    algorithm the engine keeps, as ``conv2d_forward`` beside ``conv2d_forward_loops``), which
    the checks then forbid the student's function to call, as ``check.py`` does.
    """
    loaded: dict = {}
    for spec in ex.functions:
        module, _ = split(spec)
        load_submission(copy, module, loaded)
    for other in EXERCISES:  # isolation: other exercises' functions are the teacher's
        if other.marker == ex.marker:
            continue
        for spec in other.functions:
            module, qualname = split(spec)
            if module in loaded:
                owner, name = _lookup(loaded[module], qualname)
                teacher, _ = _lookup(importlib.import_module(module), qualname)
                setattr(owner, name, getattr(teacher, name))
    for spec in (*ex.alternatives, *ex.routes):  # the teacher's too, so that the checks'
        module, _, qualname = spec.partition(":")  # guard of them (tests/other_implementations)
        if qualname and module in loaded:  # fails a student's function that calls one
            owner, name = _lookup(loaded[module], qualname)
            teacher, _ = _lookup(importlib.import_module(module), qualname)
            if hasattr(owner, name):
                setattr(owner, name, getattr(teacher, name))
    places = []
    for spec in ex.functions:
        module, qualname = split(spec)
        owner, name = _lookup(loaded[module], qualname)
        target, _ = _lookup(importlib.import_module(module), qualname)
        function = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        teachers = target.__dict__[name] if isinstance(target, type) else getattr(target, name)
        places += [f"{spec} -> {place}" for place in reroute(teachers, function)]
        setattr(target, name, function)
    return places


class Recorder:
    """A pytest plugin: each check's outcome and, when it failed, its line in words -- written
    to the record after every check, with a look for tampering, so that a worker stopped later
    (a time limit, a crash) still reports the checks it finished."""

    def __init__(self, result: str, record: dict, before: dict[str, int]):
        self.result, self.record, self.before = result, record, before
        self.errors: list[str] = []

    def pytest_configure(self, config):
        from check import use_quiet_hypothesis

        use_quiet_hypothesis(database=False)

    def pytest_collectreport(self, report):
        if report.failed:
            from check import collection_error_words

            self.errors.append(collection_error_words(str(report.longrepr)))

    def pytest_runtest_logreport(self, report):
        entry = self.record["checks"].setdefault(report.nodeid, {"outcome": "passed",
                                                                 "when": "", "words": ""})
        if entry["outcome"] != "failed":
            if report.failed:
                said = [v for k, v in report.user_properties if k == "diagnosis"]  # conftest
                last = str(report.longrepr).strip().splitlines()[-1:] or ["(no message)"]
                entry.update(outcome="failed", when=report.when, words=(said or last)[0])
            elif report.skipped:
                entry.update(outcome="skipped", when=report.when)
            elif report.when == "call":
                entry.update(outcome="passed", when="call")
        if report.when == "teardown":
            self.record["tampered"] = _changed(self.before)
            _write_record(self.result, self.record)


def worker(copy: str, marker: str, result: str) -> int:
    """Grade ``marker`` for the copy at ``copy``; write the record to ``result`` (JSON) as the
    checks run: ``{"checks": {node id: {"outcome", "when", "words"}}, "status", "error",
    "tampered", "finished"}``."""
    import pytest

    sys.path.insert(0, str(ROOT / "tests"))  # the teacher's test helpers, before any student code
    import diagnose

    record: dict = {"marker": marker, "status": None, "checks": {}, "error": "", "tampered": [],
                    "finished": False}
    before = _tool_snapshot()
    ex = get(marker)
    try:
        places = install_submission(Path(copy), ex)
    except BaseException as err:  # SyntaxError, ImportError, SystemExit, ... at import time
        where = source_path(ex.functions[0], Path(copy)).relative_to(Path(copy))
        record["error"] = f"{where.as_posix()} could not be loaded: {diagnose.diagnose(err)}"
        record["finished"] = True
        _write_record(result, record)
        return 0
    for place in places:
        print(f"[grade] the submission's function is also at: {place}", flush=True)
    _write_record(result, record)
    recorder = Recorder(result, record, before)
    args = [str(ROOT / ex.check_file), "-m", marker, "-q", "--tb=short", "-rN",
            "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    try:
        status = pytest.main(args, plugins=[recorder])
    except BaseException as err:  # a SystemExit or KeyboardInterrupt that escaped pytest
        record["error"] = f"the checks were interrupted: {diagnose.diagnose(err)}"
        record["finished"] = True
        _write_record(result, record)
        return 0
    record["status"] = int(status)
    if recorder.errors:
        record["error"] = recorder.errors[0]
    record["tampered"] = _changed(before)
    record["finished"] = True
    _write_record(result, record)
    return 0


def _write_record(path: str, record: dict) -> None:
    write_atomically(Path(path), json.dumps(record, indent=1))


# ------------------------------------------------------------------------------ command line


class Setup(NamedTuple):
    subs: list[Submission]
    students: list[Student]
    weights: dict[str, float]
    id_columns: list[str]


def prepare(args) -> Setup:
    """Who is graded on what, from the command line; :class:`SetupError` for a bad one."""
    try:
        only = [get(m.strip()).marker for m in args.only.split(",") if m.strip()]
    except KeyError as err:
        raise SetupError(f"--only: {err.args[0]}") from None
    if not args.submissions.is_dir():
        raise SetupError(f"{args.submissions}: not a folder")
    if args.timeout <= 0 or args.jobs < 1:
        raise SetupError("--timeout must be > 0 and --jobs >= 1")
    subs = submissions_in(args.submissions, single=args.gradescope is not None)
    if not subs:
        raise SetupError(f"{args.submissions}: no student folders in it")
    manifests = read_manifests(args.manifest or [])
    roster, id_columns = read_roster(args.roster) if args.roster else ({}, [])
    if roster:
        unknown = [s.name for s in subs if s.name not in roster]
        absent = [name for name in roster if name not in {s.name for s in subs}]
        if unknown:
            print(f"grade.py: not in the roster (no ids in grades.csv): {', '.join(unknown)}",
                  file=sys.stderr)
        if absent:
            print(f"grade.py: in the roster, no submission: {', '.join(absent)}",
                  file=sys.stderr)
    students = []
    for sub in subs:
        ids = roster.get(sub.name, {})
        markers, source = exercises_for(sub, only, manifests, ids.get("handout", ""))
        left_out = [m for m in only if m not in markers]
        if left_out:
            print(f"grade.py: {sub.name}: not graded on {', '.join(left_out)} (not handed out to "
                  "that copy)", file=sys.stderr)
        copy_at = ""
        if sub.copy is not None and sub.copy != sub.folder:
            copy_at = sub.copy.relative_to(sub.folder).as_posix()
        students.append(Student(sub.name, markers, source, ids, copy_at))
    return Setup(subs, students, read_weights(args.weights), id_columns)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker(*argv[1:4])
    if argv[:1] == ["--collect"]:
        return collector(argv[1], argv[2:])
    parser = argparse.ArgumentParser(
        prog="python tutorials/grade.py",
        description="Grade a folder of student copies, each exercise in its own process.",
        epilog="exercises: " + ", ".join(ex.marker for ex in EXERCISES),
    )
    parser.add_argument("submissions", type=Path,
                        help="one sub-folder per student (or one student's copy)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="folder for grades.csv, checks.csv, grades.md, students/, logs/")
    parser.add_argument("--manifest", type=Path, action="append",
                        help="the manifest make_student_version.py wrote beside a copy, or a "
                             "folder of them (repeatable): grade each student on what their "
                             "copy was handed out with")
    parser.add_argument("--only", default="",
                        help="comma-separated exercises to grade every student on (default: "
                             "each copy's handout)")
    parser.add_argument("--weights", default="",
                        help="points per exercise, 'ex_gram=2,ex_tv_loss=0.5' or a file of "
                             "'ex_gram=2' lines (default: 1 each)")
    parser.add_argument("--roster", type=Path,
                        help="CSV with a 'folder' column (the submission folders' names) and "
                             "the ids, e-mails ... to put in grades.csv; optional column "
                             "'handout' names each student's manifest")
    parser.add_argument("--gradescope", type=Path, metavar="RESULTS_JSON",
                        help="SUBMISSIONS is one submission: also write Gradescope's "
                             "results.json there")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per exercise and student (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--jobs", type=int, default=1, help="workers at once (default 1)")
    args = parser.parse_args(argv)
    try:
        setup = prepare(args)
        args.output.mkdir(parents=True, exist_ok=True)
        grades = grade_all(setup.subs, setup.students, args.timeout, args.jobs,
                           logs=args.output / "logs")
    except SetupError as err:
        print(f"grade.py: {err}", file=sys.stderr)
        return 2
    write_gradebook(args.output / "grades.csv", setup.students, grades, setup.weights,
                    setup.id_columns)
    write_checks_table(args.output / "checks.csv", setup.students, grades, setup.weights)
    write_summary(args.output / "grades.md", setup.students, grades, setup.weights, args.timeout)
    write_student_reports(args.output / "students", setup.students, grades, setup.weights,
                          args.timeout)
    written = ["grades.csv", "checks.csv", "grades.md", "students/"]
    print(f"wrote {', '.join(str(args.output / name) for name in written)}")
    if args.gradescope is not None:
        write_gradescope(args.gradescope, setup.students[0], grades, setup.weights)
        print(f"wrote {args.gradescope}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
