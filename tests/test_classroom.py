"""``minist.classroom``: the stand-ins a student's copy runs until a lesson, and the stub sign.

The stand-ins are second implementations of the two exercise functions the engine needs before
their lesson; they must compute what the teacher's functions compute: the compact form of the
L-BFGS matrix against the two-loop recursion, the CPU-only ``to_device`` against ``to_device`` on
the CPU. They run only inside the context a lesson enters.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from student_copies import exercises

from minist import classroom
from minist.backend import cupy_or_none, to_device
from minist.optim.lbfgs import CurvaturePair, two_loop


def _pairs(n, m, rng, shape=None):
    """m curvature pairs of a random convex quadratic (so s^T y > 0), shaped ``shape``."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.geomspace(1.0, 50.0, n)) @ Q.T
    pairs = []
    for s in rng.standard_normal((m, n)):
        y = A @ s
        s_, y_ = (s, y) if shape is None else (s.reshape(shape), y.reshape(shape))
        pairs.append(CurvaturePair(s_, y_, 1.0 / (s @ y), (s @ y) / (y @ y)))
    return pairs


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 15), m=st.integers(0, 8), seed=st.integers(0, 2**32 - 1))
def test_compact_form_equals_the_two_loop_recursion(n, m, seed):
    rng = np.random.default_rng(seed)
    history = _pairs(n, m, rng)
    g = rng.standard_normal(n)
    np.testing.assert_allclose(classroom.two_loop_compact(g, history), two_loop(g, history),
                               rtol=1e-9, atol=1e-12)


def test_compact_form_keeps_shape_and_float32():
    rng = np.random.default_rng(3)
    shape = (1, 3, 4, 5)
    history = _pairs(60, 5, rng, shape)
    g = rng.standard_normal(shape)
    r = classroom.two_loop_compact(g, history)
    assert r.shape == shape and r is not g
    np.testing.assert_allclose(r, two_loop(g, history), rtol=1e-9, atol=1e-12)
    h32 = [CurvaturePair(p.s.astype(np.float32), p.y.astype(np.float32), p.rho, p.gamma)
           for p in history]
    r32 = classroom.two_loop_compact(g.astype(np.float32), h32)
    assert r32.dtype == np.float32
    np.testing.assert_allclose(r32, r, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_compact_form_on_the_gpu():
    cupy = cupy_or_none()
    rng = np.random.default_rng(4)
    history = _pairs(40, 4, rng, (1, 2, 4, 5))
    g = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    on_gpu = [CurvaturePair(cupy.asarray(p.s, np.float32), cupy.asarray(p.y, np.float32), p.rho,
                            p.gamma) for p in history]
    r = classroom.two_loop_compact(cupy.asarray(g), on_gpu)
    assert isinstance(r, cupy.ndarray) and r.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(r), two_loop(g.astype(np.float64), history),
                               rtol=1e-3, atol=1e-4)


def test_to_device_on_cpu_is_to_device_on_the_cpu():
    a = np.arange(6.0).reshape(2, 3)
    for dtype in (None, np.float64, np.float32):
        got, want = classroom.to_device_on_cpu(a, "cpu", dtype), to_device(a, "cpu", dtype)
        assert type(got) is type(want) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert np.shares_memory(classroom.to_device_on_cpu(a, "cpu"), a)
    with pytest.raises(NotImplementedError, match="ex_to_device"):
        classroom.to_device_on_cpu(a, "cuda")


def test_the_teachers_exercise_functions_are_written_and_a_stub_is_not():
    for ex in exercises.EXERCISES:
        for spec in ex.functions:
            assert classroom.is_written(exercises.resolve(spec)), spec

    def stub(x):
        raise NotImplementedError("Exercise ex_demo: write stub (tutorials/99_demo.py); ...")

    assert not classroom.is_written(stub)


def test_stand_in_raises_unless_switched_on():
    message = "Exercise ex_demo: write helper (tutorials/99_demo.py); check it with: ..."
    assert not classroom.stand_ins_enabled()
    with pytest.raises(NotImplementedError, match="write helper"):
        classroom.stand_in(message, "operator:neg")


def test_stand_ins_are_on_only_inside_the_context_a_lesson_enters():
    message = "Exercise ex_demo: write helper (tutorials/99_demo.py); check it with: ..."
    with classroom.stand_ins_on():
        assert classroom.stand_ins_enabled()
        assert classroom.stand_in(message, "operator:neg")(5) == -5
    assert not classroom.stand_ins_enabled()
    with pytest.raises(NotImplementedError, match="write helper"):
        classroom.stand_in(message, "operator:neg")


def test_only_plumbing_that_earlier_lessons_need_has_a_stand_in():
    """Every other exercise has none: a student version holds no working version of it."""
    with_stand_ins = {ex.marker for ex in exercises.EXERCISES if ex.stand_ins}
    assert with_stand_ins == {"ex_to_device", "ex_two_loop"}
    for ex in exercises.EXERCISES:  # and each stand-in is forbidden to the student's function
        assert set(ex.stand_ins.values()) <= set(ex.alternatives), ex.marker


def _lesson_utils():
    import importlib.util
    import sys
    from pathlib import Path

    tutorials = Path(__file__).resolve().parents[1] / "tutorials"
    if str(tutorials) not in sys.path:
        sys.path.append(str(tutorials))  # for lesson_utils' own `from first_run import ...`
    spec = importlib.util.spec_from_file_location("_lesson_utils", tutorials / "lesson_utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_importing_the_lessons_helpers_switches_nothing_on_and_a_lesson_says_a_stub_in_a_line(
        capsys):
    L = _lesson_utils()
    assert not classroom.stand_ins_enabled()
    capsys.readouterr()

    def unwritten():
        raise NotImplementedError("Exercise ex_demo: write helper (tutorials/99_demo.py); "
                                  "check it with: python tutorials/check.py ex_demo")

    with L.lesson("99_demo"):
        assert classroom.stand_ins_enabled()
        unwritten()
        raise AssertionError("not reached: the lesson stops at the unwritten exercise")
    assert not classroom.stand_ins_enabled()
    assert capsys.readouterr().out.splitlines() == [
        "[exercise ex_demo] not written yet: the lesson stops, which needs it. Write helper "
        "(tutorials/99_demo.py), check it with python tutorials/check.py ex_demo, then run this "
        "lesson again."]
    with pytest.raises(ZeroDivisionError), L.lesson("99_demo"):  # other errors go on
        1 / 0  # noqa: B018
    assert not classroom.stand_ins_enabled()


def test_a_diagnosis_never_divides_by_a_zero_reference():
    """Where the reference value is 0 a relative error means nothing: the diagnosis gives the
    absolute error there, and a relative error only over the entries that are not 0 (the
    ReLU backward that lets the gradient through at x <= 0 once read "max relative error
    2.15e+299")."""
    from diagnose import CheckError, compare, expect_gradient

    with pytest.raises(CheckError) as failed:
        expect_gradient(np.array([0.215354, 0.0, 0.0]), np.zeros(3), what="dx")
    assert str(failed.value) == (
        "dx vs finite differences: your gradient differs: absolute error 0.215 at index (0,), "
        "where it should be 0 (got 0.215354, finite differences 0)")
    assert compare(np.array([1e-3, 3.0]), np.array([0.0, 2.0]), rtol=1e-7, atol=0.0) == (
        "differs: max relative error 0.5 at index (1,) (got 3, expected 2)")


def test_the_first_run_notice_says_nothing_for_a_compilation_under_its_threshold():
    import importlib.util
    import io
    import os
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tutorials" / "first_run.py"
    spec = importlib.util.spec_from_file_location("_minist_first_run", path)
    first_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(first_run)
    if "MINIST_COMPILE_NOTICE_S" not in os.environ:
        assert first_run.QUIET_BELOW_S == 1.0

    quick = first_run.CompileNotice(io.StringIO(), quiet_below_s=1e9)  # never reached
    for _ in range(3):
        quick.start()
        quick.start()  # nested: one kernel
        quick.end()
        quick.end()
    quick.report()
    assert quick.kernels == 3 and quick.out.getvalue() == ""

    slow = first_run.CompileNotice(io.StringIO(), quiet_below_s=0.0)  # reached at once
    slow.start()
    slow.end()
    slow.report()
    slow.report()  # said once
    lines = slow.out.getvalue().strip().splitlines()
    assert [line.split(" Numba")[0] for line in lines] == ["[first run]", "[first run] compiling 1"]
    assert lines[1].endswith("s; they are cached now.")
