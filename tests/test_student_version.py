"""The exercise machinery: the registry, the student-version script, and the student version.

* Every registered exercise names functions that exist, a marker registered in pyproject.toml,
  a check file ``tests/exercises/test_<marker>.py`` marked with it, and a lesson that names
  the command ``pytest -m <marker>``.
* ``tutorials/make_student_version.py`` replaces exactly the bodies (signature and decorators
  kept), states each function without its answer (no docstring of the student version states a
  gradient: the test walks every exercise), refuses to overwrite or to write inside the
  repository, copies git's files.
* Stand-ins: an unwritten function with one raises like any other, except where the lessons
  switch stand-ins on.
* End to end: the generated student version imports (its own ``minist``, not this one), every
  exercise check fails there with ``NotImplementedError``, and putting the teacher's body of one
  function back makes that exercise's checks pass.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from student_copies import exercises, msv, restore

from minist import classroom
from minist.errors import MinistError

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"


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


def test_strip_source_keeps_signature_and_decorator_and_states_the_function():
    ex = exercises.Exercise("ex_demo", "99_demo", ("demo:Optimizer.step", "demo:helper"), "")
    source = SAMPLE.replace("\n", "\r\n")  # line endings are kept
    new, done = msv.strip_source(source, [(ex, "Optimizer.step"), (ex, "helper")])
    assert [q for q, _, _ in done] == ["Optimizer.step", "helper"]
    assert "\r\n" in new and "\n" not in new.replace("\r\n", "")
    new = new.replace("\r\n", "\n")
    assert "the solution" not in new and "return x - grad" not in new and "2 * x" not in new
    for kept in ("@functools.wraps(print)", "grad):  # a signature over two lines",
                 "x <- x - grad", "def other(self):\n        return 1", "def helper(x):",
                 "check it with ``python tutorials/check.py ex_demo``"):
        assert kept in new
    namespace = {}
    exec(compile(new, "demo", "exec"), namespace)
    with pytest.raises(NotImplementedError) as err:
        namespace["helper"](1)
    assert str(err.value) == (
        "Exercise ex_demo: write helper (tutorials/99_demo.py); "
        "check it with: python tutorials/check.py ex_demo"
    )
    assert not classroom.is_written(namespace["helper"])
    with pytest.raises(NotImplementedError, match="write Optimizer.step "):
        namespace["Optimizer"]().step(1, 2)
    assert namespace["Optimizer"]().other() == 1
    assert classroom.is_written(namespace["Optimizer"].other)


def test_a_stand_in_runs_only_where_the_lessons_switch_it_on(capsys):
    ex = exercises.Exercise("ex_demo", "99_demo", ("demo:helper",), "", section="3. Helping",
                            stand_ins={"demo:helper": "operator:neg"})
    new, _ = msv.strip_source(SAMPLE, [(ex, "helper")], "demo.py", module="demo")
    namespace = {}
    exec(compile(new, "demo", "exec"), namespace)
    helper = namespace["helper"]
    assert not classroom.is_written(helper)
    with pytest.raises(NotImplementedError, match=r"write helper \(tutorials/99_demo.py, "
                                                   r"section 3\)"):
        helper(5)
    classroom.use_stand_ins(True)
    try:
        assert helper(5) == -5 and helper(7) == -7
    finally:
        classroom.use_stand_ins(False)
    said = capsys.readouterr().out
    assert said.count("[stand-in] helper (exercise ex_demo) is not written yet") == 1
    assert "operator:neg" in said
    with pytest.raises(NotImplementedError):
        helper(5)


def test_redact_drops_what_states_or_derives_a_gradient():
    doc = """Loss of F against P.

    .. math::

        L = \\tfrac12 \\sum (F - P)^2, \\qquad \\frac{\\partial L}{\\partial F} = F - P

    Each term depends on one entry. *Gradient, key step.* differentiate term by term.

    Returns ``L``, a 0-d array of F's dtype.
    """
    assert msv.redact(doc) == "Loss of F against P.\n\nReturns ``L``, a 0-d array of F's dtype."
    kept = msv.redact("Value only.\n\n    .. math::\n\n        y = max(x, 0)\n")
    assert kept == "Value only.\n\n.. math::\n\n    y = max(x, 0)"


# ---------------------------------------------- what the student's docstrings state, and not

# A derivative on the left of "=" (or "+="): \partial, or d<x> as in dx, dw, dF, d\tilde x.
DERIVATIVE = re.compile(r"\\partial|(?<![A-Za-z\\])d(?:x|w|b|y|E|F|G|L|\\tilde\s*x)(?![a-z])")


def _math(doc: str) -> list[str]:
    """The equations of a docstring: inline :math:`...` and display blocks, split at \\qquad."""
    pieces = re.findall(r":math:`([^`]*)`", doc)
    lines = doc.splitlines()
    for k, line in enumerate(lines):
        if line.strip() == ".. math::":
            indent = len(line) - len(line.lstrip())
            block = []
            for below in lines[k + 1 :]:
                if below.strip() and len(below) - len(below.lstrip()) <= indent:
                    break  # the block ends where the text comes back to the directive's indent
                block.append(below)
            pieces += re.split(r"\\qquad|,\s*\n", "\n".join(block))
    return [" ".join(p.split()) for p in pieces if p.strip()]


def gradient_equations(doc: str) -> list[str]:
    """Every equation of ``doc`` whose left-hand side is a derivative: a gradient, stated."""
    found = []
    for piece in _math(doc):
        lhs, eq, rhs = piece.partition("=")
        if eq and DERIVATIVE.search(lhs) and rhs.strip(" .,"):
            found.append(piece)
    return found


def _normalised(text: str) -> str:
    return re.sub(r"\s+|\\[,;!]", "", text)


@pytest.fixture(scope="module")
def full_student_version(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "class-copy"
    msv.make_student_version(out, quiet=True)
    return out


def _docstrings(root: Path, spec: str) -> tuple[str, str]:
    """(module docstring, function docstring) of ``spec`` in the copy at ``root``."""
    tree = ast.parse(exercises.source_path(spec, root).read_text(encoding="utf-8"))
    node = msv.find_function(tree, exercises.split(spec)[1])
    return ast.get_docstring(tree, clean=False) or "", ast.get_docstring(node, clean=False) or ""


SPECS = [(ex, spec) for ex in EXERCISES for spec in ex.functions]


def test_the_teachers_docstrings_state_gradients_that_the_students_must_not_see():
    """Not vacuous: the teacher's docstrings state the gradients the next test looks for."""
    stated = {spec for _, spec in SPECS if gradient_equations(_docstrings(ROOT, spec)[1])}
    assert len(stated) >= 5, stated
    assert "minist.losses.reference:style_layer_loss" in stated


@pytest.mark.parametrize(("ex", "spec"), SPECS, ids=[spec for _, spec in SPECS])
def test_student_docstring_states_the_function_not_its_gradient(full_student_version, ex, spec):
    teacher_module, teacher = _docstrings(ROOT, spec)
    student_module, student = _docstrings(full_student_version, spec)
    assert student.strip(), f"{spec}: no statement in the student version"
    # the pointer: the lesson section to derive it in, and the command that checks it
    assert f"check it with ``python tutorials/check.py {ex.marker}``" in " ".join(student.split())
    if ex.section:
        assert f'section "{ex.section}"' in " ".join(student.split())
    # no gradient stated, in the function's docstring or its module's
    for where, text in (("docstring", student), ("module docstring", student_module)):
        assert not gradient_equations(text), f"{spec}: the student's {where} states a gradient"
    # and none of the teacher's gradient formulas, in any notation of theirs
    seen = _normalised(student + student_module)
    gradients = gradient_equations(teacher) + gradient_equations(teacher_module)
    values = " ".join(_normalised(m) for m in _math(teacher) if m not in gradients)
    for equation in gradients:
        rhs = equation.partition("=")[2].split("\\in")[0].strip(" .,")
        formula = re.search(r".[-+*/\\(]", rhs) and _normalised(rhs) not in values
        pieces = [equation] + ([rhs] if formula else [])  # a formula not part of the value
        for piece in pieces:
            assert _normalised(piece) not in seen, (
                f"{spec}: the student version still holds the gradient {equation!r}")


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.marker)
def test_statements_sections_and_stand_ins_are_wired_up(ex):
    lesson = (ROOT / ex.lesson_file).read_text(encoding="utf-8")
    if ex.section:
        assert f"# ## {ex.section}\n" in lesson, f"{ex.lesson_file} has no section {ex.section!r}"
    modules = {exercises.split(spec)[0] for spec in ex.functions}
    for spec in ex.statements:
        assert spec in ex.functions or spec in modules, f"{ex.marker}: statement for {spec}?"
    for spec, stand_in in ex.stand_ins.items():
        assert spec in ex.functions, f"{ex.marker}: stand-in for {spec}, not one of its functions"
        parameters = list(inspect.signature(exercises.resolve(spec)).parameters)
        inspect.signature(exercises.resolve(stand_in)).bind(*parameters)  # same call works
    for spec, target in ex.routes.items():
        if ":" not in spec:  # a module whose docstring is cut to its first paragraph
            assert exercises.source_path(f"{spec}:x").is_file(), spec
            continue
        route = exercises.resolve(spec)
        if target:  # the route calls the student's function with its own arguments
            assert target in ex.functions, f"{ex.marker}: {spec} routes to {target}?"
            parameters = list(inspect.signature(route).parameters)
            inspect.signature(exercises.resolve(target)).bind(*parameters)
        else:
            assert isinstance(route, str) or callable(route), spec
    for spec in ex.alternatives:
        assert callable(exercises.resolve(spec)), spec


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


GRADING_LEFTOVERS = (  # what `grade.py submissions/ -o report/` leaves in the repository
    "submissions/alice/class-copy/minist/a.py", "submissions/alice/class-copy/tutorials/"
    "STUDENT_VERSION.txt", "submissions/bob/minist/a.py", "submissions/bob/README.md",
    "report/grades.csv", "report/students/bob.md", "report/logs/bob/ex_gram.log",
    "roster.csv", "week1.manifest.json")


def test_grading_leftovers_are_never_copied_tracked_or_not(tmp_path):
    repo = tmp_path / "repo"
    for rel in ("minist/a.py", "minist/layers/b.py", "README.md", "tutorials/01_x.py",
                *GRADING_LEFTOVERS):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x")
    ours = ["README.md", "minist/a.py", "minist/layers/b.py", "tutorials/01_x.py"]
    assert sorted(map(str, msv.repository_files(repo))) == ours  # no git: the walk
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "minist", "README.md", "tutorials"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    (repo / "notes.txt").write_text("untracked")
    assert sorted(map(str, msv.repository_files(repo))) == ours  # git: what it tracks
    assert "notes.txt" in map(str, msv.untracked_files(repo))
    subprocess.run(git + ["add", "-f", "."], check=True)  # even committed by mistake
    subprocess.run(git + ["commit", "-qm", "y"], check=True)
    assert sorted(map(str, msv.repository_files(repo))) == sorted(ours + ["notes.txt"])
    assert msv.grading_material([Path(p) for p in GRADING_LEFTOVERS]) == {
        Path("submissions"), Path("report"), Path("submissions/alice/class-copy")}


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
    # the teacher's manifest of what was handed out: beside the copy, not inside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "copy.manifest.json"]
    manifest = json.loads((tmp_path / "copy.manifest.json").read_text())
    assert manifest["format"] == "minist-handout-manifest" and manifest["handout"] == "copy"
    assert manifest["exercises"] == ["ex_relu"]
    assert manifest["functions"] == {"ex_relu": ["minist.layers.relu:relu_forward",
                                                 "minist.layers.relu:relu_backward"]}
    with pytest.raises(MinistError, match="inside the copy, where the student could edit it"):
        msv.make_student_version(out, ["ex_relu"], force=True, quiet=True,
                                 manifest=out / "tutorials" / "m.json")
    elsewhere = tmp_path / "teacher" / "week2.json"
    msv.make_student_version(out, ["ex_relu", "ex_gram"], force=True, quiet=True,
                             manifest=elsewhere)
    assert json.loads(elsewhere.read_text())["exercises"] == ["ex_relu", "ex_gram"]
    # the teacher's own tests (reference answers written out) stay home; the checks go
    assert not list((out / "tests").glob("test_*.py")) and not (out / "tests" / "data").exists()
    for kept in ("conftest.py", "diagnose.py", "gradcheck.py", "exercises/test_ex_relu.py"):
        assert (out / "tests" / kept).is_file(), kept


# exercise -> (file, what it states of the exercise's answer) in the teacher's Markdown
MARKDOWN_ANSWERS = {
    "ex_style_loss": [("README.md", "`∂E_l/∂F = (G−A)F/(N_l² M_l)`"),
                      ("tutorials/README.md", "`∂E_l/∂F = (G − A) F / (N_l² M_l)`")],
    "ex_guided_gram": [("README.md", "`∂E/∂F = T∘((G_T−A)(F∘T))/(N_l² M_l)`"),
                       ("tutorials/README.md", "`T ∘ ((G_T − A)(F∘T)) / (N_l² M_l)`")],
    "ex_content_loss": [("README.md", "`∂L/∂F = F − P`"),
                        ("tutorials/README.md", "`∂L_content/∂F = F − P`")],
    "ex_conv_backward": [("tutorials/README.md", "`dw = Σ dY X_colᵀ`, `db = Σ dy`")],
    "ex_relu": [("README.md", "`dx = dy·[x > 0]`"), ("tutorials/README.md", "`dx = dy ⊙ [x > 0]`")],
}


def test_markdown_answer_spans_become_pointers_for_the_exercises_handed_out():
    text = ("| Eq. 6 its gradient <!-- answer: ex_style_loss -->`dE = x`<!-- /answer --> |\n"
            "| content <!-- answer: ex_content_loss, ex_nope -->`F - P`<!-- /answer --> |\n")
    with pytest.raises(MinistError, match="x.md: answer span names unknown exercise 'ex_nope'"):
        msv.redact_markdown(text, [exercises.get("ex_style_loss")], "x.md")
    text = text.replace(", ex_nope", "")
    assert msv.redact_markdown(text, [exercises.get("ex_style_loss")]) == (
        "| Eq. 6 its gradient (derive it in `tutorials/05_gram_and_style.py`, section 2: "
        "exercise `ex_style_loss`) |\n"
        "| content <!-- answer: ex_content_loss -->`F - P`<!-- /answer --> |\n")
    # the teacher's files: every span names known exercises and covers the answers listed
    for marker, places in MARKDOWN_ANSWERS.items():
        for rel, answer in places:
            teacher = (ROOT / rel).read_text(encoding="utf-8")
            assert answer in teacher, (rel, answer)
            handed = msv.redact_markdown(teacher, [exercises.get(marker)], rel)
            assert answer not in handed, f"{rel}: {answer} left for {marker}"
            assert f"exercise `{marker}`)" in handed
            others = [ex for ex in EXERCISES if ex.marker != marker and not (
                marker == "ex_guided_gram" and ex.marker == "ex_style_loss")]
            assert answer in msv.redact_markdown(teacher, others, rel), (rel, answer)


def test_a_student_versions_readmes_state_no_gradient_of_its_exercises(full_student_version):
    for places in MARKDOWN_ANSWERS.values():
        for rel, answer in places:
            text = (full_student_version / rel).read_text(encoding="utf-8")
            assert answer not in text, f"{rel}: {answer}"
            assert not msv.ANSWER_SPAN.search(text), rel  # every span was one handed out


def test_student_version_txt_lines_its_columns_up():
    """Every row of STUDENT_VERSION.txt starts its lesson and its functions in the same columns,
    the longest marker (ex_color_transform, 18 characters) included."""
    rows = [line for line in msv._marker_text(EXERCISES).splitlines()
            if line.split(" ")[0] in exercises.MARKERS]
    assert len(rows) == len(EXERCISES)
    starts = {tuple(m.start() for m in re.finditer(r"\S+", row))[1:3] for row in rows}
    assert len(starts) == 1, rows  # the lesson and the first function: one column each
    color = next(row for row in rows if row.startswith("ex_color_transform"))
    assert color.split() == ["ex_color_transform", "tutorials/09_color_control.py",
                             "spd_power,", "pca_transform"]


# ------------------------------------------------------------------------ end to end


def _run(args, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, **kwargs)


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
    assert "not written yet: write content_loss" in result.stdout

    # the student fills in content_loss: the command they are told to run now passes (it
    # collects the whole suite of the student version, so nothing there may fail to import)
    restore(out, "minist.losses.reference:content_loss")
    result = _run(["-m", "pytest", "-m", "ex_content_loss", "-q", "-p", "no:cacheprovider"], out)
    assert result.returncode == 0, result.stdout[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


# ------------------------------------------- no working implementation in a student version

# Run in a student version (its own minist): call every route to each exercise function with
# placeholder arguments -- a stub raises before it reads them -- and print what happened.
PROBE = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path.cwd() / "tutorials"))
import numpy as np
import exercises
import lesson_utils  # importing the lessons' helpers switches nothing on
from minist import classroom

marker = sys.argv[1]
ex = exercises.get(marker)
DUMMY = object()
results = {}

def outcome(function, n=None):
    import inspect
    if n is None:
        n = len([p for p in inspect.signature(function).parameters.values()
                 if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                        p.POSITIONAL_OR_KEYWORD)])
    try:
        function(*[DUMMY] * n)
    except NotImplementedError as err:
        return "stub " + str(err).split(":")[0]
    except Exception as err:  # it ran on the placeholders: some working code was reached
        return "ran: " + type(err).__name__
    return "ran"

for spec in ex.functions:
    results[spec] = outcome(exercises.resolve(spec))
    results[spec + " is_written"] = str(classroom.is_written(exercises.resolve(spec)))
for spec, target in ex.routes.items():
    if ":" in spec and target is not None:
        obj = exercises.resolve(spec)
        if isinstance(obj, str):
            results[spec] = "constant " + repr(obj)
        elif hasattr(obj, "py_func"):  # a compiled kernel: its Python body
            results[spec] = outcome(obj.py_func)
        else:
            results[spec] = outcome(obj)
from minist.losses import dispatch
import minist.losses as losses
for spec in ex.functions:
    name = spec.split(":")[1]
    if name in dispatch.FUNCTIONS:
        for prefer in (None, "reference", "numba"):
            backend = dispatch.get_loss_backend(np.zeros(1), prefer)
            results[f"get_loss_backend(prefer={prefer}).{name}"] = outcome(getattr(backend, name))
        results[f"minist.losses.{name}"] = outcome(getattr(losses, name))
    if name.startswith("guided_"):
        results[f"minist.losses.{name}"] = outcome(getattr(losses, name))
for spec, stand_in in ex.stand_ins.items():  # a stand-in runs only inside a lesson's context
    results[spec + " outside a lesson"] = outcome(exercises.resolve(spec))
print(json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.marker)
def test_a_student_version_holds_no_working_implementation_of_its_exercise(tmp_path, ex):
    import json

    out = tmp_path / "copy"
    msv.make_student_version(out, [ex.marker], quiet=True)
    probe = _run(["-c", PROBE, ex.marker], out)
    assert probe.returncode == 0, probe.stderr[-3000:]
    results = json.loads(probe.stdout.strip().splitlines()[-1])
    routes = [spec for spec in ex.routes if ":" in spec]
    expected = len(ex.functions) * 2 + len(routes) + len(ex.stand_ins)
    assert len(results) >= expected, results
    for route, what in results.items():
        if route.endswith(" is_written"):
            assert what == "False", route
        elif what.startswith("constant"):
            assert what == "constant ''", route
        else:
            assert what == f"stub Exercise {ex.marker}", f"{route}: {what}"
    # the gradients are in no docstring of what the engine keeps beside the exercise
    for spec in ex.alternatives:
        _, doc = _docstrings(out, spec)
        assert not gradient_equations(doc), f"{spec}: the student's docstring states a gradient"
    for spec in routes:  # and the routes' teacher code is gone
        module, name = spec.split(":")
        teacher = exercises.source_path(spec).read_text(encoding="utf-8")
        student = exercises.source_path(spec, out).read_text(encoding="utf-8")
        node = next(n for n in ast.parse(teacher).body if getattr(n, "name", None) == name
                    or any(getattr(t, "id", None) == name for t in getattr(n, "targets", [])))
        if isinstance(node, ast.Assign):
            body = ast.get_source_segment(teacher, node.value)
        else:  # its statements after the docstring, as the teacher wrote them
            code = node.body[1:] if ast.get_docstring(node) else node.body
            lines = teacher.splitlines(keepends=True)
            body = "".join(lines[code[0].lineno - 1 : node.end_lineno])
        assert body not in student, f"{spec}: its code is still in the student version"
    # and no other function of the copy's minist computes the exercise's answer
    if ex.marker in STORED_MARKERS:
        found = leaks(out, ex.marker)
        assert len(found) > 100, found  # the probe reached minist's functions
        assert not [where for where, what in found.items() if what == "LEAK"], found


STORED_MARKERS = ("ex_gram", "ex_style_loss", "ex_content_loss", "ex_tv_loss", "ex_guided_gram",
                  "ex_warp", "ex_consistency", "ex_temporal_loss")

# Run in a student version (its own minist): call every function of its minist -- module
# functions, static and class methods, and methods called unbound -- from inside a stand-in for
# the student's function (the checks' guard of the exercise's alternatives and routes on, as
# while the exercise is checked), on the exercise's seeded inputs (the stored teacher's values;
# a 2-D F also as its (1, N, M, 1) activation), a missing argument or two given as a guide of
# ones. A function that returns the teacher's answer (a non-scalar output: a Gram, a gradient)
# is a working implementation the student could call: a leak.
LEAK_PROBE = r"""
import importlib, inspect, json, os, pkgutil, signal, sys
from pathlib import Path
sys.path[:0] = [str(Path.cwd() / "tutorials"), str(Path.cwd() / "tests"),
                str(Path.cwd() / "tests" / "exercises")]
import numpy as np
import pytest
import exercises, other_implementations, stored
import minist

ex = exercises.get(sys.argv[1])
for info in pkgutil.walk_packages(minist.__path__, "minist."):
    if not info.name.endswith("__main__"):
        try:
            importlib.import_module(info.name)
        except Exception:
            pass

def students_function(candidate, args):  # stands for the student's function
    return candidate(*args)

class Slow(Exception):
    pass

def too_slow(*_):
    raise Slow()

signal.signal(signal.SIGALRM, too_slow)

def candidates():
    seen, found = set(), []
    for name, module in sorted(sys.modules.items()):
        if module is None or not (name == "minist" or name.startswith("minist.")):
            continue
        for attr, value in sorted(vars(module).items()):
            if inspect.isfunction(value) and id(value) not in seen:
                seen.add(id(value))
                found.append((f"{value.__module__}.{value.__qualname__}", value))
            elif inspect.isclass(value) and value.__module__ == name:
                for key, member in sorted(vars(value).items()):
                    function = (getattr(value, key) if isinstance(member, classmethod) else
                                member.__func__ if isinstance(member, staticmethod) else member)
                    if inspect.isroutine(function) and id(member) not in seen:
                        seen.add(id(member))
                        found.append((f"{name}.{value.__qualname__}.{key}", function))
    return found

def arity(function):
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in parameters):
        return None
    required = sum(p.default is p.empty for p in positional)
    varargs = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    return required, (10**6 if varargs else len(positional))

def outcome(function, args, answers):
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        result = students_function(function, args)
    except BaseException as err:
        return type(err).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    for value in (result if isinstance(result, (tuple, list)) else (result,)):
        try:
            value = np.asarray(value, dtype=np.float64).ravel()
        except Exception:
            continue
        for answer in answers:
            if value.size == answer.size and np.allclose(value, answer.ravel(), rtol=1e-6,
                                                         atol=1e-9):
                return "LEAK"
    return "ran"

codes = {students_function.__code__: ex.functions[0].split(":")[1]}
cases = [case for name in stored.CASES[ex.marker]
         for case in stored.teacher_values(ex.marker, name)[:2]]
results = {}
with pytest.MonkeyPatch.context() as patch:
    other_implementations.guard(ex, codes, patch)
    for where, function in candidates():
        shape = arity(function)
        if shape is None:
            continue
        required, most = shape
        seen = []
        for args, outs in cases:
            answers = [np.asarray(o, dtype=np.float64) for o in outs if np.size(o) > 1]
            forms = [args]
            if args[0].ndim == 2:
                forms.append((args[0].reshape(1, *args[0].shape, 1), *args[1:]))
            for form in forms:
                n = len(form)
                if n < required <= n + 2:
                    form = (*form, *[np.ones(args[0].shape[-1])] * (required - n))
                elif not required <= n <= most:
                    continue
                seen.append(outcome(function, form, answers))
        if seen:
            results[where] = "LEAK" if "LEAK" in seen else seen[0]
print(json.dumps(results))
sys.stdout.flush()
os._exit(0)
"""


def leaks(copy: Path, marker: str) -> dict[str, str]:
    """``{function: outcome}`` of :data:`LEAK_PROBE` for exercise ``marker`` in ``copy``."""
    probe = _run(["-c", LEAK_PROBE, marker], copy)
    assert probe.returncode == 0, probe.stderr[-3000:]
    return json.loads(probe.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_leak_probe_finds_a_working_implementation_and_the_guarded_routes(tmp_path):
    """Not vacuous: in a copy that does not hand out ex_gram the teacher's Gram is a leak for
    the probe; the guided Gram, another algorithm for it, fails while ex_gram is checked."""
    out = tmp_path / "copy"
    msv.make_student_version(out, ["ex_tv_loss"], quiet=True)
    found = leaks(out, "ex_gram")
    assert found["minist.losses.reference.gram_matrix"] == "LEAK", found
    assert found["minist.losses.reference.guided_gram_matrix"] == "CheckError", found
    assert found["minist.losses.guided_gram_matrix"] == "CheckError", found
    assert "minist.bench_torch.TorchStep.gram" in found, found


@pytest.mark.slow
def test_check_in_a_student_version_passes_the_teachers_answers_and_fails_a_wrong_one(tmp_path):
    """The stored values are right (the teacher's answers pass against them) and are used (a
    Gram without its 1/M fails on them, in words)."""
    from student_copies import fill_in

    out = tmp_path / "copy"
    msv.make_student_version(out, list(STORED_MARKERS), quiet=True)
    for marker in STORED_MARKERS:
        assert (out / "tests" / "exercises" / "stored" / f"{marker}.npz").is_file(), marker
        fill_in(out, marker)
    for marker in STORED_MARKERS:
        result = _run(["tutorials/check.py", marker], out)
        assert result.returncode == 0, result.stdout[-3000:]
        assert f"{marker}: all " in result.stdout and "checks pass" in result.stdout
    restore(out, "minist.losses.reference:gram_matrix", (("/ M", ""),))
    result = _run(["tutorials/check.py", "ex_gram"], out)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "vs the teacher's G, on F (3, 5) float64: your G is 5.000x the expected one" in (
        " ".join(result.stdout.split()))


@pytest.mark.slow
def test_a_copy_lists_what_it_hands_out_and_checks_every_exercise(tmp_path):
    """A copy for ex_gram alone: ``check.py --list`` marks ex_gram; ex_tv_loss, not handed out,
    checks there too (the teacher's values of every exercise are stored); a failure's verdict
    also says why a check was skipped, and its line reads "teacher's"."""
    out = tmp_path / "copy"
    msv.make_student_version(out, ["ex_gram"], quiet=True)
    listing = _run(["tutorials/check.py", "--list"], out)
    assert listing.returncode == 0, listing.stderr
    marked = [line.split()[1] for line in listing.stdout.splitlines() if line.startswith("* ")]
    assert marked == ["ex_gram"], listing.stdout
    assert "\n  ex_tv_loss " in listing.stdout
    stored = {p.stem for p in (out / "tests" / "exercises" / "stored").glob("*.npz")}
    assert set(STORED_MARKERS) <= stored, stored  # every exercise's, not only ex_gram's
    result = _run(["tutorials/check.py", "ex_tv_loss"], out)
    skipped = "(1 skipped here: the teacher's kernels are not in a student version"
    assert result.returncode == 0, result.stdout[-3000:]
    assert "ex_tv_loss: all 4 checks pass " + skipped in result.stdout
    restore(out, "minist.losses.reference:tv_loss",
            (("grad[:, :, 1:, :] += 2 * dv", "grad[:, :, 1:, :] += 4 * dv"),))
    result = _run(["tutorials/check.py", "ex_tv_loss"], out)
    assert result.returncode == 1, result.stdout[-3000:]
    said = " ".join(result.stdout.split())
    assert "checks fail (the lines in words above) " + skipped in said, said[-3000:]
    assert "FAIL ex_tv_loss: equals the teacher's values on seeded inputs: " in said


def test_a_student_function_that_calls_the_engines_other_algorithm_fails_its_check(tmp_path):
    out = tmp_path / "copy"
    msv.make_student_version(out, ["ex_max_pool"], quiet=True)
    restore(out, "minist.layers.pool:max_pool_backward_loops")
    pool = out / "minist" / "layers" / "pool.py"
    source = pool.read_text(encoding="utf-8")
    forward = "def max_pool_forward_loops(x, kernel: int = 2, stride: int = 2):\n"
    assert forward in source
    pool.write_text(source.replace(forward, forward + "    return max_pool_forward(x, kernel, "
                                   "stride)\n"), encoding="utf-8")
    result = _run(["tutorials/check.py", "ex_max_pool"], out)
    assert result.returncode == 1, result.stdout[-3000:]
    assert ("your max_pool_forward_loops calls minist.layers.pool.max_pool_forward, another "
            "implementation that minist keeps") in " ".join(result.stdout.split())


# -------------------------------------------------- pytest in an uninstalled student version


def test_pytest_in_an_uninstalled_copy_tests_that_copy_or_refuses(tmp_path):
    """Another minist is importable here (the environment's, or this checkout's through
    PYTHONPATH): from inside the copy, both `python -m pytest` and the environment's `pytest`
    script must test the copy's unwritten function -- fail -- or refuse in one line."""
    out = tmp_path / "copy"
    msv.make_student_version(out, ["ex_tv_loss"], quiet=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = Path(sys.executable).parent / "pytest"
    commands = [[sys.executable, "-m", "pytest"]] + ([[str(script)]] if script.is_file() else [])
    assert commands[-1] != commands[0] or not script.is_file()
    for command in commands:
        result = subprocess.run([*command, "-m", "ex_tv_loss", "-q", "-p", "no:cacheprovider"],
                                cwd=out, env=env, capture_output=True, text=True, timeout=300)
        said = result.stdout + result.stderr
        if result.returncode == 4:  # refused: one line naming the other minist
            assert "not this copy's" in said, said[-2000:]
            continue
        assert result.returncode == 1, f"{command}: {said[-3000:]}"
        assert "not written yet: write tv_loss" in said and " passed" not in said.splitlines()[-1]
    # refused where another minist was imported before pytest started (here: this checkout's)
    start = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import minist, pytest; "
             "sys.exit(pytest.main(['-m', 'ex_tv_loss', '-q', '-p', 'no:cacheprovider']))")
    result = subprocess.run([sys.executable, "-c", start], cwd=out, env=env, capture_output=True,
                            text=True, timeout=300)
    said = (result.stdout + result.stderr).strip()
    assert result.returncode == 4, said[-3000:]
    assert f"not this copy's ({out.resolve() / 'minist'})" in said


# ------------------------------------------------------- a lesson before its exercises


@pytest.mark.slow
def test_lesson_05_in_a_class_copy_without_vgg_backward_says_so_in_one_line(tmp_path):
    pytest.importorskip("matplotlib", reason="the lessons need the 'tutorials' extra")
    from conftest import write_random_vgg
    from student_copies import fill_in, lesson_env, share_numba_cache

    out = tmp_path / "class-copy"
    msv.make_student_version(out, quiet=True)
    share_numba_cache(out)
    for marker in ("ex_relu", "ex_gram", "ex_style_loss"):  # lesson 05's own, not lesson 03's
        fill_in(out, marker)
    weights = write_random_vgg(tmp_path / "tiny.h5", "vgg19")
    env = lesson_env(out, weights)
    result = subprocess.run([sys.executable, "tutorials/05_gram_and_style.py"], cwd=out, env=env,
                            capture_output=True, text=True, timeout=600)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    lines = [line for line in said.splitlines() if line.startswith("[exercise ex_vgg_backward]")]
    assert len(lines) == 1, said[-3000:]
    assert "section 4's texture synthesis" in lines[0]
    assert 'tutorials/03_vgg_features.py, section "5.' in lines[0]
    assert "gradient check over 20 entries" in said  # sections 1-3 ran
