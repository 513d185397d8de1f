"""The teacher's grading run, ``tutorials/grade.py``, on synthetic submissions.

* A class: seven student copies (made by ``make_student_version.py``, then filled in) graded
  on ``ex_gram`` and ``ex_tv_loss`` with ``--only``: a correct one, handed in one folder down
  (``alice/class-copy/...``); one whose Gram has a wrong factor; one whose Gram raises; one
  whose Gram never returns; one whose Gram ends the process (``os._exit``); one that replaces
  ``numpy.testing.assert_allclose`` when its module is imported (which fails both); one with no
  ``minist`` folder at all. The first five write ``tv_loss`` correctly, so a wrong Gram must
  fail ``ex_gram`` alone (the exercises are graded in isolation). The gradebook, the table per
  exercise and each student's reasons must be exactly right, and the hanging worker killed at
  the time limit (none of its processes left); a guard fails the test if grading hangs, no
  wall-clock limit is asserted.
* What each copy was handed out with: copies with different exercises in one class are graded
  on their own exercises, from the teacher's manifests (or, without them, from each copy's
  STUDENT_VERSION.txt); weights, a roster, partial credit (1 of 8 checks failing scores 7/8,
  an untouched copy 0) and Gradescope's ``results.json``.
* Correct answers written differently -- equal in exact arithmetic, not in rounding -- pass in
  ``check.py`` and in ``grade.py`` alike, and the 3-decimal YIQ inverse fails both.
* The pieces: finding a copy, choosing the exercises, weights, the roster, rerouting a function
  through everything that holds it, the grade of a worker's record, the checks' names.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from student_copies import fill_in, msv, restore, share_numba_cache

ROOT = Path(__file__).resolve().parents[1]
GRAM, TV = "minist.losses.reference:gram_matrix", "minist.losses.reference:tv_loss"
SPD, PCA = "minist.color:spd_power", "minist.color:pca_transform"
TIMEOUT_S = 30.0

spec = importlib.util.spec_from_file_location("_minist_grade", ROOT / "tutorials" / "grade.py")
grade = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grade)
report = sys.modules["grade_report"]  # grade.py's own reports module

if (ROOT / msv.STUDENT_MARKER).exists():
    pytest.skip("this is a student version: grading belongs to the teacher's repository",
                allow_module_level=True)

SUBMISSIONS = {  # student -> (edits of the teacher's gram_matrix, ex_gram checks, words)
    "alice": ((), "5/5", ""),
    # a wrong factor passes what a factor cannot change (symmetric, positive semi-definite,
    # the positions' statistics, -2.5 F -> 6.25 G) and fails every comparison of values
    "bob": (((" / M  #", " / (2 * M)  #"),), "2/5",
            "your G is 0.500x the expected one (off by a factor of 1/2)"),
    "carol": ((("F = feature_matrix(F)", "raise RuntimeError('oops')"),), "0/5",
              "raised RuntimeError: oops (at minist/losses/reference.py:"),
    "dave": ((("F = feature_matrix(F)", "while True:\n        pass"),), "0/5", "timed out"),
    "erin": ((("F = feature_matrix(F)", "import os\n    os._exit(3)"),), "0/5",
             "the process ended (status 3) before the checks finished"),
    "frank": ((), "0/5", "changed the checks' tools: numpy.testing.assert_allclose"),
    "gina": (None, "0/5", "no minist/ folder in the submission"),
}
TV_CHECKS = 5  # tests/exercises/test_ex_tv_loss.py


def _copy_of(template: Path, to: Path) -> Path:
    shutil.copytree(template, to)
    share_numba_cache(to)
    return to


@pytest.fixture(scope="module")
def handouts(tmp_path_factory):
    """Copies as the teacher made them, each with its manifest beside it: ``class-copy`` (every
    exercise), ``week5`` (ex_gram), ``week6`` (ex_tv_loss), ``week9`` (the colour exercises, the
    losses and the temporal loss)."""
    folder = tmp_path_factory.mktemp("handouts")
    msv.make_student_version(folder / "class-copy", quiet=True)
    msv.make_student_version(folder / "week5", ["ex_gram"], quiet=True)
    msv.make_student_version(folder / "week6", ["ex_tv_loss"], quiet=True)
    msv.make_student_version(folder / "week9", ["ex_gram", "ex_content_loss", "ex_tv_loss",
                                                "ex_yiq", "ex_color_transform",
                                                "ex_temporal_loss"], quiet=True)
    return folder


@pytest.fixture(scope="module")
def submissions(handouts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    template = handouts / "class-copy"
    for student, (edits, *_) in SUBMISSIONS.items():
        if edits is None:
            continue
        copy = folder / student / "class-copy" if student == "alice" else folder / student
        _copy_of(template, copy)
        restore(copy, TV)
        restore(copy, GRAM, edits)
    with open(folder / "frank" / "minist" / "losses" / "reference.py", "a") as f:
        f.write("\nimport numpy.testing\n\nnumpy.testing.assert_allclose = lambda *a, **k: None\n")
    (folder / "gina").mkdir()  # handed in nothing useful
    (folder / "gina" / "notes.txt").write_text("I did not get to it")
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


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _records(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _grade(*args) -> int:
    """``grade.py`` with these arguments, in a thread with a guard against a hang."""
    result = []
    run = threading.Thread(target=lambda: result.append(grade.main([str(a) for a in args])),
                           daemon=True)
    run.start()
    run.join(1800)  # a guard against a hang (workers of seconds, or of TIMEOUT_S)
    assert not run.is_alive(), "grading hung: a worker past its time limit was not killed"
    return result[0]


@pytest.mark.slow
def test_grading_gives_the_right_table_and_kills_the_endless_loop(submissions, tmp_path):
    if not Path("/proc/self/cmdline").is_file():
        pytest.skip("no /proc: cannot see whether the timed-out worker was killed")
    out = tmp_path / "report"
    assert _grade(submissions, "-o", out, "--only", "ex_gram,ex_tv_loss",
                  "--timeout", TIMEOUT_S, "--jobs", 2) == 0
    assert _processes_naming(submissions / "dave") == []  # the endless loop is gone, group too

    gram_points = {s: int(c.split("/")[0]) / 5 for s, (_, c, _) in SUBMISSIONS.items()}
    tv_points = {s: 0.0 if s in ("frank", "gina") else 1.0 for s in SUBMISSIONS}
    rows = _rows(out / "grades.csv")
    assert rows[0] == ["student", "score", "max_score", "ex_gram", "ex_tv_loss"]
    assert [row[0] for row in rows[1:]] == sorted(SUBMISSIONS)  # one row per student, sorted
    assert {row[0]: row[1:] for row in rows[1:]} == {
        s: [report.number(gram_points[s] + tv_points[s]), "2", report.number(gram_points[s]),
            report.number(tv_points[s])] for s in SUBMISSIONS}

    checks = _rows(out / "checks.csv")
    assert checks[0] == report.CHECKS_COLUMNS
    table = {(row[0], row[1]): row for row in checks[1:]}
    for student, (_, gram_checks, words) in SUBMISSIONS.items():
        passed, total = gram_checks.split("/")
        row = table[student, "ex_gram"]
        assert row[2:4] == [passed, total], row
        assert words in row[7], (student, row)
        tv = table[student, "ex_tv_loss"]
        assert tv[2:4] == [str(int(tv_points[student]) * TV_CHECKS), str(TV_CHECKS)], tv

    markdown = (out / "grades.md").read_text()
    assert "| student | score | ex_gram | ex_tv_loss |" in markdown
    assert "| [bob](students/bob.md) | 1.4 / 2 | **2/5** | 5/5 |" in markdown
    assert "the exercises given with --only" in markdown

    bob = (out / "students" / "bob.md").read_text()
    assert bob.startswith("# bob: 1.4 of 2 points")
    assert bob.count("- **FAIL**: ") == 3 and bob.count("- pass: ") == 2 + TV_CHECKS
    assert "- pass: positions do not matter, only their statistics" in bob
    dave = (out / "students" / "dave.md").read_text()
    assert f"did not run: timed out after {TIMEOUT_S:g} s" in dave  # killed at the limit given
    assert (out / "logs" / "bob" / "ex_gram.log").read_text().strip()


@pytest.mark.slow
def test_each_copy_is_graded_on_what_it_was_handed_out_with(handouts, tmp_path):
    """Two handouts in one class: each student's default grading reports their exercises only,
    from the teacher's manifests (matched through the roster) -- or, without a manifest, from
    each copy's STUDENT_VERSION.txt, which the reports then say the student could edit."""
    subs = tmp_path / "submissions"
    fill_in(_copy_of(handouts / "week5", subs / "ivy"), "ex_gram")  # written, all correct
    _copy_of(handouts / "week6", subs / "jack")  # untouched
    roster = tmp_path / "roster.csv"
    roster.write_text("folder,email,handout\nivy,ivy@example.org,week5\n"
                      "jack,jack@example.org,week6\n")

    out = tmp_path / "report"
    assert _grade(subs, "-o", out, "--manifest", handouts, "--roster", roster) == 0
    assert _rows(out / "grades.csv") == [
        ["student", "email", "score", "max_score", "ex_gram", "ex_tv_loss"],
        ["ivy", "ivy@example.org", "1", "1", "1", ""],
        ["jack", "jack@example.org", "0", "1", "", "0"],
    ]
    assert "the exercises of handout 'week5' (its manifest)" in (out / "grades.md").read_text()
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["ivy", "jack"]
    assert [p.name for p in (out / "logs" / "ivy").iterdir()] == ["ex_gram.log"]

    fallback = tmp_path / "fallback"
    assert _grade(subs, "-o", fallback) == 0  # the README's command: no manifest given
    assert [row[:2] + row[3:] for row in _rows(fallback / "grades.csv")] == [
        ["student", "score", "ex_gram", "ex_tv_loss"], ["ivy", "1", "1", ""],
        ["jack", "0", "", "0"]]
    assert "STUDENT_VERSION.txt lists (no manifest given; the student could have edited" in (
        fallback / "students" / "ivy.md").read_text()

    # --only picks among what each copy was handed: ivy's copy keeps the teacher's tv_loss,
    # which must not score (with a manifest, or from STUDENT_VERSION.txt alike)
    for given in (["--manifest", handouts, "--roster", roster], []):
        only = tmp_path / f"only{len(given)}"
        assert _grade(subs, "-o", only, "--only", "ex_gram,ex_tv_loss", *given) == 0
        assert [row[:1] + row[-4:] for row in _rows(only / "grades.csv")] == [
            ["student", "score", "max_score", "ex_gram", "ex_tv_loss"],
            ["ivy", "1", "1", "1", ""], ["jack", "0", "1", "", "0"]]
        assert "not graded, not handed out to this copy: ex_tv_loss" in " ".join(
            (only / "students" / "ivy.md").read_text().split())
        assert [(r["student"], r["exercise"]) for r in _records(only / "checks.csv")] == [
            ("ivy", "ex_gram"), ("jack", "ex_tv_loss")]


@pytest.mark.slow
def test_partial_credit_weights_and_gradescope_results(handouts, tmp_path):
    """spd_power without its positive-definiteness test fails 1 of ex_color_transform's 8
    checks: 7/8 of the exercise (its weight 2: 1.75), where an untouched copy scores 0; graded
    alone as Gradescope hands a submission over (the copy one folder down in the upload), the
    same in the keys Gradescope's results.json documents."""
    subs = tmp_path / "submissions"
    kim = _copy_of(handouts / "week9", subs / "kim")
    restore(kim, SPD, (("if lam.min() <= 0:", "if False:  # forgot the test"),))
    restore(kim, PCA)
    _copy_of(handouts / "week9", subs / "lee")
    out = tmp_path / "report"
    assert _grade(subs, "-o", out, "--only", "ex_color_transform",
                  "--weights", "ex_color_transform=2") == 0
    assert _rows(out / "grades.csv")[1:] == [["kim", "1.75", "2", "1.75"], ["lee", "0", "2", "0"]]
    assert _rows(out / "checks.csv")[1][:7] == ["kim", "ex_color_transform", "7", "8", "2",
                                                "1.75", "partial"]

    upload = tmp_path / "autograder" / "submission"
    shutil.copytree(kim, upload / "class-copy")  # unpacked from the student's archive
    manifest = tmp_path / "course.manifest.json"
    manifest.write_text(json.dumps({"format": "minist-handout-manifest", "version": 1,
                                    "handout": "course", "exercises": ["ex_color_transform"]}))
    results = tmp_path / "autograder" / "results" / "results.json"
    assert _grade(upload, "-o", tmp_path / "gs-report", "--gradescope", results,
                  "--manifest", manifest) == 0
    record = json.loads(results.read_text())
    assert record["score"] == 0.875
    assert isinstance(record["tests"], list) and len(record["tests"]) == 1
    test = record["tests"][0]
    assert {"name", "score", "max_score", "output"} <= set(test)
    assert test["name"] == "ex_color_transform: matrix powers by eigendecomposition and the pca " \
                           "colour transform"
    assert (test["score"], test["max_score"], test["status"]) == (0.875, 1.0, "failed")
    assert test["output"].startswith("7 of 8 checks pass.")
    assert ("FAIL spd_power refuses what is not symmetric positive definite and computes in "
            "float64: spd_power(diag(1, -0.5, 2), 0.5) did not raise ValueError") in test["output"]
    assert isinstance(record["output"], str) and "handout 'course'" in record["output"]
    assert "The copy graded is the folder class-copy/ inside the submission" in record["output"]


# Correct answers that are not the teacher's: equal in exact arithmetic, different in rounding.
VARIANTS = {
    "ex_color_transform": [(SPD, ()), (PCA, ((  # the inverse of the square root
        "spd_power(cov_content, 0.5) @ spd_power(cov_style, -0.5)",
        "spd_power(cov_content, 0.5) @ np.linalg.inv(spd_power(cov_style, 0.5))"),))],
    "ex_gram": [(GRAM, (("(F @ F.T) / M", "get_array_module(F).einsum('ik,jk->ij', F, F) / M"),))],
    "ex_content_loss": [("minist.losses.reference:content_loss", ((  # the squared norm
        "L = 0.5 * xp.sum(dF * dF, dtype=xp.float64)",
        "L = 0.5 * xp.linalg.norm(dF.ravel().astype(xp.float64)) ** 2"),))],
    "ex_tv_loss": [(TV, (  # differences the other way round, the gradient in another order
        ("dv = image[:, :, 1:, :] - image[:, :, :-1, :]", "dv = image[:, :, :-1, :] - "
         "image[:, :, 1:, :]"),
        ("dh = image[:, :, :, 1:] - image[:, :, :, :-1]", "dh = image[:, :, :, :-1] - "
         "image[:, :, :, 1:]"),
        ("grad[:, :, 1:, :] += 2 * dv", "grad[:, :, :, 1:] -= 2 * dh"),
        ("grad[:, :, :-1, :] -= 2 * dv", "grad[:, :, :, :-1] += 2 * dh"),
        ("grad[:, :, :, 1:] += 2 * dh", "grad[:, :, 1:, :] -= 2 * dv"),
        ("grad[:, :, :, :-1] -= 2 * dh", "grad[:, :, :-1, :] += 2 * dv"),
    ))],
    "ex_temporal_loss": [("minist.temporal:temporal_loss", (  # a dot product; 2 c (x - w) / D
        ("xp.sum(weighted.astype(xp.float64) * diff) / D",
         "xp.vdot(weighted.astype(xp.float64).ravel(), diff.astype(xp.float64).ravel()) / D"),
        ("(2.0 / D) * weighted", "2 * c * (x - warped.astype(x.dtype)) / D")))],
    "ex_yiq": [("minist.color:apply_color_matrix", ()), ("minist.color:rgb_to_yiq", ()),
               ("minist.color:yiq_to_rgb", ((  # solve T rgb = yiq for every pixel, in float64
                   "return apply_color_matrix(yiq, np.linalg.inv(YIQ_FROM_RGB))",
                   "xp = get_array_module(yiq)\n"
                   "    pixels = xp.asarray(yiq, dtype=xp.float64).reshape(*yiq.shape[:-2], -1)\n"
                   "    rgb = xp.linalg.solve(xp.asarray(YIQ_FROM_RGB), pixels)\n"
                   "    return rgb.astype(yiq.dtype).reshape(yiq.shape)"),))],
}
THREE_DECIMALS = [("minist.color:apply_color_matrix", ()), ("minist.color:rgb_to_yiq", ()),
                  ("minist.color:yiq_to_rgb", (("np.linalg.inv(YIQ_FROM_RGB)",
                                                "np.linalg.inv(YIQ_FROM_RGB).round(3)"),))]


def _check_py(copy: Path, marker: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "tutorials/check.py", marker], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_answers_equal_in_exact_arithmetic_pass_check_and_grade(handouts, tmp_path):
    subs = tmp_path / "submissions"
    mia = _copy_of(handouts / "week9", subs / "mia")
    for edits in VARIANTS.values():
        for function, replacements in edits:
            restore(mia, function, replacements)
    ned = _copy_of(handouts / "week9", subs / "ned")
    for function, replacements in THREE_DECIMALS:
        restore(ned, function, replacements)

    for marker in VARIANTS:
        result = _check_py(mia, marker)
        verdict = result.stdout.strip().splitlines()[-1]
        assert result.returncode == 0 and "checks pass" in verdict and "fail" not in verdict, (
            marker, result.stdout[-3000:])
    result = _check_py(ned, "ex_yiq")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "the 3-decimal inverse that tables print" in result.stdout

    out = tmp_path / "report"
    assert _grade(subs, "-o", out, "--only", ",".join(VARIANTS)) == 0
    rows = {(row["student"], row["exercise"]): row for row in _records(out / "checks.csv")}
    assert {m: rows["mia", m]["result"] for m in VARIANTS} == {m: "pass" for m in VARIANTS}, rows
    ned_yiq = rows["ned", "ex_yiq"]
    assert ned_yiq["result"] != "pass" and "3-decimal inverse" in ned_yiq["first_failure"]
    # the grader put mia's pca_transform where color_transform_matrix finds it
    log = (out / "logs" / "mia" / "ex_color_transform.log").read_text()
    assert "minist.color:pca_transform -> minist.color._TRANSFORMS['pca']" in log


@pytest.mark.slow
def test_the_first_run_notice_comes_before_the_verdict(handouts, tmp_path):
    """With an empty Numba cache check.py compiles; its timing line is not the last line."""
    copy = tmp_path / "copy"  # max pooling: its checks run minist's Numba pooling kernels
    msv.make_student_version(copy, ["ex_max_pool"], quiet=True)
    fill_in(copy, "ex_max_pool")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")  # nothing cached: it compiles
    env["MINIST_COMPILE_NOTICE_S"] = "0"  # and says so, however fast this machine compiles
    result = subprocess.run([sys.executable, "tutorials/check.py", "ex_max_pool"], cwd=copy,
                            env=env, capture_output=True, text=True, timeout=900)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout[-3000:]
    compiled = [k for k, line in enumerate(lines) if line.startswith("[first run] compiling")]
    assert len(compiled) == 1, lines
    assert lines[-1] == "ex_max_pool: all 5 checks pass.", lines
    assert compiled[0] < len(lines) - 1


@pytest.mark.slow
def test_calling_the_engines_other_algorithm_fails_in_grading_as_in_check(tmp_path):
    """A convolution 'written' as a call of the im2col one of the same file (the student's own
    copy of it), and a Gram written as the guided Gram with a guide of ones: no points."""
    subs = tmp_path / "submissions"
    msv.make_student_version(subs / "olga", ["ex_conv_forward", "ex_gram"], quiet=True)
    share_numba_cache(subs / "olga")
    conv = subs / "olga" / "minist" / "layers" / "conv.py"
    source = conv.read_text(encoding="utf-8")
    start = source.index("def conv2d_forward_loops(")
    body = source.index(":\n", source.index(")", start)) + 2
    conv.write_text(source[:body] + "    return conv2d_forward(x, w, b, stride, pad)\n"
                    + source[body:], encoding="utf-8")
    with open(subs / "olga" / "minist" / "losses" / "reference.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef gram_matrix(F):\n    import numpy as np\n\n"
                "    return guided_gram_matrix(F, np.ones(feature_matrix(F).shape[1]))\n")
    out = tmp_path / "report"
    assert _grade(subs, "-o", out) == 0
    rows = {r["exercise"]: r for r in _records(out / "checks.csv")}
    assert {m: rows[m]["checks_passed"] for m in rows} == {"ex_conv_forward": "0", "ex_gram": "0"}
    assert ("your conv2d_forward_loops calls minist.layers.conv.conv2d_forward, another "
            "implementation that minist keeps") in rows["ex_conv_forward"]["first_failure"]
    assert ("your gram_matrix calls minist.losses.reference.guided_gram_matrix, another "
            "implementation that minist keeps") in rows["ex_gram"]["first_failure"]


# ------------------------------------------------------------------------------ the pieces


def test_a_copy_is_found_in_the_folder_or_one_or_two_levels_down(tmp_path):
    (tmp_path / "ann" / "minist").mkdir(parents=True)
    (tmp_path / "bea" / "class-copy" / "minist").mkdir(parents=True)
    (tmp_path / "bea" / "__MACOSX" / "x" / "minist").mkdir(parents=True)  # an archive's extra
    (tmp_path / "cid" / "unzipped" / "class-copy" / "minist").mkdir(parents=True)
    (tmp_path / "dot" / "a" / "minist").mkdir(parents=True)
    (tmp_path / "dot" / "b" / "minist").mkdir(parents=True)
    (tmp_path / "eve" / "notes").mkdir(parents=True)
    found = {s.name: (s.copy, s.problem) for s in grade.submissions_in(tmp_path)}
    assert found["ann"] == (tmp_path / "ann", "")
    assert found["bea"] == (tmp_path / "bea" / "class-copy", "")
    assert found["cid"] == (tmp_path / "cid" / "unzipped" / "class-copy", "")
    assert found["dot"] == (None, "the submission holds several copies (a, b): hand in one")
    assert found["eve"] == (None, "no minist/ folder in the submission (looked two folders down)")
    single = grade.submissions_in(tmp_path / "bea", single=True)
    assert [(s.name, s.copy) for s in single] == [("bea", tmp_path / "bea" / "class-copy")]


def test_the_exercises_come_from_only_then_the_manifest_then_student_version(tmp_path):
    copy = tmp_path / "ann"
    (copy / "tutorials").mkdir(parents=True)
    (copy / "tutorials" / "STUDENT_VERSION.txt").write_text(
        msv._marker_text([grade.get("ex_relu"), grade.get("ex_color_transform")]))
    sub = grade.Submission("ann", copy, copy, "")
    week2 = ("ex_relu", "ex_max_pool")
    manifests = {"week2": week2, "week5": ("ex_gram",)}
    # --only: among what the copy was handed out with, naming what it leaves out
    assert grade.exercises_for(sub, ["ex_relu"], manifests, handout="week2")[0] == ("ex_relu",)
    markers, words = grade.exercises_for(sub, ["ex_gram", "ex_max_pool", "ex_tv_loss"],
                                         manifests, handout="week2")
    assert markers == ("ex_max_pool",)
    assert words == ("the exercises given with --only, of the exercises of handout 'week2' (its "
                     "manifest); not graded, not handed out to this copy: ex_gram, ex_tv_loss")
    assert grade.exercises_for(sub, ["ex_gram", "ex_relu"], {})[0] == ("ex_relu",)
    assert grade.exercises_for(sub, [], manifests, handout="week2")[0] == week2
    assert grade.exercises_for(sub, [], {"week2": week2})[0] == week2  # the only one
    assert grade.exercises_for(sub._replace(name="week5"), [], manifests)[0] == ("ex_gram",)
    with pytest.raises(grade.SetupError, match="which handout.*'handout' column"):
        grade.exercises_for(sub, [], manifests)
    with pytest.raises(grade.SetupError, match="handout 'week9' has no manifest"):
        grade.exercises_for(sub, [], manifests, handout="week9")
    markers, words = grade.exercises_for(sub, [], {})
    assert markers == ("ex_relu", "ex_color_transform") and "STUDENT_VERSION.txt" in words
    assert grade.exercises_for(sub._replace(copy=tmp_path / "none"), [], {})[0] == grade.MARKERS


def test_manifests_are_read_from_files_and_folders_and_checked(tmp_path):
    msv.write_manifest(tmp_path / "week2.manifest.json", tmp_path / "week2",
                       [grade.get("ex_relu")])
    msv.write_manifest(tmp_path / "week5.manifest.json", tmp_path / "week5",
                       [grade.get("ex_gram"), grade.get("ex_style_loss")])
    both = {"week2": ("ex_relu",), "week5": ("ex_gram", "ex_style_loss")}
    assert grade.read_manifests([tmp_path]) == both
    assert grade.read_manifests([tmp_path / "week2.manifest.json"]) == {"week2": ("ex_relu",)}
    bad = tmp_path / "bad" / "x.manifest.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"format": "minist-handout-manifest", "handout": "x",
                               "exercises": ["ex_nope"]}))
    with pytest.raises(grade.SetupError, match="unknown exercises"):
        grade.read_manifests([bad])
    bad.write_text("{}")
    with pytest.raises(grade.SetupError, match="not a manifest of make_student_version.py"):
        grade.read_manifests([bad])
    with pytest.raises(grade.SetupError, match="no such file or folder"):
        grade.read_manifests([tmp_path / "missing.json"])


def test_weights_and_roster(tmp_path):
    assert grade.read_weights("ex_gram=2, ex_tv_loss=0.5") == {"ex_gram": 2.0, "ex_tv_loss": 0.5}
    file = tmp_path / "weights.txt"
    file.write_text("# points per exercise\nex_gram=3\n\nex_relu = 1.5  # the easy one\n")
    assert grade.read_weights(str(file)) == {"ex_gram": 3.0, "ex_relu": 1.5}
    for bad, words in (("ex_nope=1", "unknown exercise 'ex_nope'"), ("ex_gram=-1", "weight >= 0"),
                       ("ex_gram", "expected exercise=weight")):
        with pytest.raises(grade.SetupError, match=words):
            grade.read_weights(bad)
    roster = tmp_path / "roster.csv"
    roster.write_text("folder,student_id,email,handout\nann,1001,ann@example.org,week2\n")
    assert grade.read_roster(roster) == (
        {"ann": {"folder": "ann", "student_id": "1001", "email": "ann@example.org",
                 "handout": "week2"}}, ["student_id", "email"])
    roster.write_text("name,email\nann,ann@example.org\n")
    with pytest.raises(grade.SetupError, match="needs a 'folder' column"):
        grade.read_roster(roster)


def test_reroute_reaches_tables_imported_names_closures_and_classes():
    """The student's function replaces the teacher's wherever this process holds it, as
    minist's code holds functions: a module attribute, the same name imported by another
    module, a dispatch table, a list, a closure, a class attribute, a namespace's attribute."""

    def teachers(x):
        return "teacher"

    def students(x):
        return "student"

    def closing_over(f):
        return lambda x: f(x)

    a, b = types.ModuleType("_reroute_a"), types.ModuleType("_reroute_b")
    a.f, b.f = teachers, teachers  # "from _reroute_a import f" in b
    a.TABLE = {"pca": teachers, "other": len}
    a.CHAIN = [teachers]
    cls = type("Transforms", (), {"plain": teachers})
    namespace = types.SimpleNamespace(gram_matrix=teachers)
    closure = closing_over(teachers)
    sys.modules[a.__name__], sys.modules[b.__name__] = a, b
    try:
        places = grade.reroute(teachers, students)
    finally:
        del sys.modules[a.__name__], sys.modules[b.__name__]
    assert a.f is b.f is a.TABLE["pca"] is a.CHAIN[0] is namespace.gram_matrix is students
    assert vars(cls)["plain"] is students and a.TABLE["other"] is len
    assert closure(1) == "student"
    assert sorted(places) == sorted([
        "_reroute_a.f", "_reroute_b.f", "_reroute_a.TABLE['pca']", "a list", "a closure",
        f"{__name__}.Transforms.plain", "a dict['gram_matrix']"])  # each place once, no other


def test_the_grade_of_a_record_counts_each_check_that_ran_to_the_end():
    checks = [("t.py::a", "a"), ("t.py::b", "b"), ("t.py::gpu", "gpu"), ("t.py::c", "c")]
    done = {"t.py::a": {"outcome": "passed", "when": "call", "words": ""},
            "t.py::b": {"outcome": "failed", "when": "call", "words": "your G is 2.000x"},
            "t.py::gpu": {"outcome": "skipped", "when": "setup", "words": ""},
            "t.py::c": {"outcome": "skipped", "when": "call", "words": ""}}
    record = {"status": 1, "checks": done, "error": "", "tampered": [], "finished": True}
    g = grade.grade_from("ann", "ex_gram", checks, record, 0)
    assert [(c.name, c.passed) for c in g.checks] == [("a", True), ("b", False), ("c", False)]
    assert (g.passed_checks, g.total, g.result) == (1, 3, "partial")  # the GPU check: not here
    assert g.first_failure == "b: your G is 2.000x"
    assert "skipped from inside the submission" in g.checks[2].words
    assert grade.grade_from("ann", "ex_gram", checks[:1], {**record, "checks": done}, 0).passed

    unfinished = {**record, "finished": False, "checks": {"t.py::a": done["t.py::a"]}}
    late = grade.grade_from("ann", "ex_gram", checks, unfinished, -9, stopped="timed out")
    assert [c.passed for c in late.checks] == [True, False, False, False]  # a counts
    assert late.checks[1].words == "did not run: timed out"
    crashed = grade.grade_from("ann", "ex_gram", checks, unfinished, 7, "last words\n")
    assert "status 7" in crashed.checks[1].words and "last words" in crashed.checks[1].words
    tampered = grade.grade_from("ann", "ex_gram", checks, {**record, "tampered": ["numpy.x"]}, 0)
    assert tampered.passed_checks == 0 and "changed the checks' tools: numpy.x" in tampered.words
    broken = grade.grade_from("ann", "ex_gram", checks, {**record, "error": "could not load"}, 0)
    assert broken.passed_checks == 0 and broken.checks[0].words == "did not run: could not load"
    assert grade.grade_from("ann", "ex_gram", checks, None, -25).checks[0].words.startswith(
        "did not run: stopped: wrote more than")
    interrupted = grade.grade_from("ann", "ex_gram", checks[:1], {**record, "status": 2}, 0)
    assert interrupted.passed and "pytest exit status 2" in interrupted.words


@pytest.mark.slow
def test_check_names_keep_what_the_identifier_cannot_spell():
    names = functools.reduce(lambda x, y: x + y, (
        [name for _, name in checks] for checks in grade.collect_checks(grade.MARKERS).values()))
    for name in ("pca is the solution whose A Sigma_S^(1/2) is symmetric positive definite",
                 "zero when the target is the features' own Gram",
                 "a normalised region gives the region's own Gram, and ones change nothing",
                 "the default smallest size, and the paper's example",
                 "equals the dense BFGS matrix", "the matrix is the NTSC one",
                 "CUDA without CuPy says what to install",
                 "equals the teacher's values on seeded inputs"):
        assert name in names, name
    assert any(n.startswith("spd_power square roots match Denman-Beavers") for n in names)
    assert any(n.startswith("rgb_to_yiq pixel by pixel") for n in names)
    assert not [n for n in names if " a root s" in n or "features own" in n
                or "teachers values" in n]
