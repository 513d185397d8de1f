"""The exercise machinery: the registry, the student-version script, and the student version.

* Every registered exercise names functions that exist, a marker registered in pyproject.toml,
  a check file ``tests/exercises/test_<marker>.py`` marked with it, and a lesson that names
  the command ``pytest -m <marker>``.
* ``tutorials/make_student_version.py`` replaces exactly the bodies (signature, decorators and
  docstring kept), refuses to overwrite or to write inside the repository, copies git's files.
* End to end: the generated student version imports (its own ``minist``, not this one), every
  exercise check fails there with ``NotImplementedError``, and putting the teacher's body of one
  function back makes that exercise's checks pass.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from minist.errors import MinistError

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_minist_{name}", TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


msv = _load("make_student_version")
exercises = _load("exercises")
EXERCISES = exercises.EXERCISES

if (ROOT / msv.STUDENT_MARKER).exists():
    pytest.skip("this is a student version: these checks belong to the teacher's repository",
                allow_module_level=True)


# ---------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.marker)
def test_exercise_is_wired_up(ex, pytestconfig):
    for spec in ex.functions:
        assert callable(exercises.resolve(spec)), spec
        assert exercises.source_path(spec).is_file(), spec
    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert ex.marker in registered, f"{ex.marker} is not in pyproject's pytest markers"

    check = ROOT / ex.check_file
    assert check.is_file(), f"no checks for {ex.marker}: {ex.check_file} is missing"
    tree = ast.parse(check.read_text(encoding="utf-8"))
    marks = [
        ast.unparse(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
    ]
    assert marks == [f"pytest.mark.{ex.marker}"], f"{ex.check_file}: pytestmark is {marks}"
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    assert tests, f"{ex.check_file} has no test functions"

    lesson = ROOT / ex.lesson_file
    assert lesson.is_file(), f"{ex.marker}: lesson {ex.lesson_file} is missing"
    assert f"pytest -m {ex.marker}" in lesson.read_text(encoding="utf-8"), (
        f"{ex.lesson_file} does not tell the student to run `pytest -m {ex.marker}`"
    )


def test_every_exercise_marker_is_registered_once_and_no_other_ex_marker(pytestconfig):
    names = [line.split(":")[0].strip() for line in pytestconfig.getini("markers")]
    ex_names = [n for n in names if n.startswith("ex_")]
    assert sorted(ex_names) == sorted(exercises.MARKERS)
    assert len(set(exercises.MARKERS)) == len(exercises.MARKERS)
    checks = {p.stem for p in (ROOT / "tests" / "exercises").glob("test_*.py")}
    assert checks == {f"test_{m}" for m in exercises.MARKERS}


# ------------------------------------------------------------------- stripping, in process

SAMPLE = '''\
import functools


class Optimizer:
    """An optimizer."""

    @functools.wraps(print)
    def step(self, x,
             grad):  # a signature over two lines
        """Take one step.

        x <- x - grad
        """
        # the solution, in a comment
        return x - grad

    def other(self):
        return 1


def helper(x):
    return 2 * x
'''


def test_strip_source_keeps_signature_decorator_and_docstring():
    ex = exercises.Exercise("ex_demo", "99_demo", ("demo:Optimizer.step", "demo:helper"), "")
    source = SAMPLE.replace("\n", "\r\n")  # line endings are kept
    new, done = msv.strip_source(source, [(ex, "Optimizer.step"), (ex, "helper")])
    assert [q for q, _, _ in done] == ["Optimizer.step", "helper"]
    assert "\r\n" in new and "\n" not in new.replace("\r\n", "")
    new = new.replace("\r\n", "\n")
    assert "the solution" not in new and "return x - grad" not in new and "2 * x" not in new
    for kept in ("@functools.wraps(print)", "grad):  # a signature over two lines",
                 "x <- x - grad", "def other(self):\n        return 1", "def helper(x):"):
        assert kept in new
    namespace = {}
    exec(compile(new, "demo", "exec"), namespace)
    with pytest.raises(NotImplementedError) as err:
        namespace["helper"](1)
    assert str(err.value) == (
        "Exercise ex_demo: implement helper (tutorials/99_demo.py); check with: pytest -m ex_demo"
    )
    with pytest.raises(NotImplementedError, match="implement Optimizer.step "):
        namespace["Optimizer"]().step(1, 2)
    assert namespace["Optimizer"]().other() == 1


def test_strip_source_names_a_missing_function():
    ex = exercises.Exercise("ex_demo", "99_demo", ("demo:nothing",), "")
    with pytest.raises(MinistError, match="demo.py: nothing: no definition"):
        msv.strip_source(SAMPLE, [(ex, "nothing")], "demo.py")


def test_walk_skips_environments_caches_figures_and_weights(tmp_path):
    for rel in ("minist/a.py", "README.md", ".venv/lib/x.py", "minist/__pycache__/a.pyc",
                "tutorials/figures/01/a.png", "tutorials/01_x.py", "weights/vgg16.h5",
                "weights/README.md", "x.egg-info/PKG-INFO", ".git/config"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert sorted(map(str, msv.repository_files(tmp_path))) == [
        "README.md", "minist/a.py", "tutorials/01_x.py", "weights/README.md"]


def test_refuses_unsafe_or_unknown_targets(tmp_path):
    with pytest.raises(MinistError, match="inside the repository"):
        msv.make_student_version(ROOT / "class-copy", quiet=True)
    with pytest.raises(MinistError, match="the repository itself"):
        msv.make_student_version(ROOT.parent, force=True, quiet=True)
    with pytest.raises(MinistError, match="--only: unknown exercise 'ex_nope'"):
        msv.make_student_version(tmp_path / "out", ["ex_nope"], quiet=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(MinistError, match="not empty.*--force"):
        msv.make_student_version(tmp_path / "full", quiet=True)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert msv.main([str(tmp_path / "full")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no temporary left behind


def test_only_strips_the_chosen_exercises_and_force_replaces(tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "old.txt").write_text("old")
    stripped = msv.make_student_version(out, ["ex_relu"], force=True, quiet=True)
    assert [(s.marker, s.qualname) for s in stripped] == [
        ("ex_relu", "relu_forward"), ("ex_relu", "relu_backward")]
    assert not (out / "old.txt").exists()
    relu = (out / "minist/layers/relu.py").read_text()
    assert relu.count("raise NotImplementedError(") == 2
    for name in ("conv", "pool"):  # untouched files are byte-for-byte copies
        rel = f"minist/layers/{name}.py"
        assert (out / rel).read_bytes() == (ROOT / rel).read_bytes()
    assert "ex_relu" in (out / msv.STUDENT_MARKER).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


# ------------------------------------------------------------------------ end to end


def _run(args, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, **kwargs)


def _restore(student_file: Path, teacher_file: Path, qualname: str) -> None:
    """Copy the teacher's whole definition of ``qualname`` over the student's."""

    def span(source):
        node = msv.find_function(ast.parse(source), qualname)
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        return first, node.end_lineno

    teacher = teacher_file.read_text(encoding="utf-8").splitlines(keepends=True)
    student = student_file.read_text(encoding="utf-8").splitlines(keepends=True)
    t0, t1 = span("".join(teacher))
    s0, s1 = span("".join(student))
    student[s0 - 1 : s1] = teacher[t0 - 1 : t1]
    student_file.write_text("".join(student), encoding="utf-8")


def test_student_version_imports_fails_every_check_and_passes_when_filled_in(tmp_path):
    out = tmp_path / "class-copy"
    stripped = msv.make_student_version(out, quiet=True)
    assert {s.marker for s in stripped} == set(exercises.MARKERS)
    assert len(stripped) == sum(len(ex.functions) for ex in EXERCISES)

    probe = _run(["-c", "import minist, minist.vgg, minist.losses, minist.optim; "
                        "print(minist.__file__)"], out)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).resolve() == (out / "minist" / "__init__.py").resolve()

    # every exercise check fails (none passes) until the student writes the functions
    report = tmp_path / "report.xml"
    every = " or ".join(exercises.MARKERS)
    result = _run(["-m", "pytest", "tests/exercises", "-m", every, "-q", "-p",
                   "no:cacheprovider", f"--junitxml={report}"], out)
    assert result.returncode == 1, result.stdout[-3000:]
    outcomes: dict[str, list[str]] = {m: [] for m in exercises.MARKERS}
    for case in ET.parse(report).iter("testcase"):
        marker = case.get("classname").rsplit(".", 1)[-1].removeprefix("test_")
        children = {child.tag: child for child in case}
        if "skipped" in children:
            continue
        failure = children.get("failure", children.get("error"))
        assert failure is not None, f"{case.get('classname')}::{case.get('name')} passed"
        assert "NotImplementedError" in (failure.get("message", "") + (failure.text or ""))
        outcomes[marker].append(case.get("name"))
    assert all(outcomes.values()), {m: n for m, n in outcomes.items() if not n}
    assert "Exercise ex_content_loss: implement content_loss" in result.stdout

    # the student fills in content_loss: the command they are told to run now passes (it
    # collects the whole suite of the student version, so nothing there may fail to import)
    rel = "minist/losses/reference.py"
    _restore(out / rel, ROOT / rel, "content_loss")
    result = _run(["-m", "pytest", "-m", "ex_content_loss", "-q", "-p", "no:cacheprovider"], out)
    assert result.returncode == 0, result.stdout[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
