"""``minist.classroom``: the stand-ins a student's copy runs until a lesson, and the stub sign.

The stand-ins are second implementations of exercise functions the engine needs before their
lesson; they must compute what the teacher's functions compute: the compact form of the L-BFGS
matrix against the two-loop recursion (and a dense BFGS matrix), the CPU-only ``to_device``
against ``to_device`` on the CPU, and the stand-ins of lessons 09-11 (colour maps and matrix
powers, the coarse-to-fine schedule and receptive fields, the guided Gram and style loss)
against ``minist.color``, ``minist.scales`` and the guided reference losses.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from student_copies import exercises

from minist import classroom, color
from minist.architectures import layer_table
from minist.backend import cupy_or_none, to_device
from minist.losses import reference
from minist.optim.lbfgs import CurvaturePair, two_loop
from minist.scales import auto_sizes, receptive_fields


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


# ------------------------------------------- the stand-ins of lessons 09-11's exercises

SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 3), three_d=st.booleans(), with_b=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS)
def test_colour_maps_equal_minist_color(k, three_d, with_b, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((3, 4, 5) if three_d else (2, 3, 4, 5)).astype(dtype)
    A, b = rng.standard_normal((k, 3)), (rng.standard_normal(k) if with_b else None)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    pairs = ((classroom.apply_color_matrix_einsum(x, A, b), color.apply_color_matrix(x, A, b)),
             (classroom.rgb_to_yiq_einsum(x), color.rgb_to_yiq(x)),
             (classroom.yiq_to_rgb_solve(x), color.yiq_to_rgb(x)))
    for got, want in pairs:
        assert got.shape == want.shape and got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    with pytest.raises(ValueError):
        classroom.apply_color_matrix_einsum(x, np.eye(2))


@settings(max_examples=25, deadline=None)
@given(p=st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 0.3]), seed=SEEDS)
def test_matrix_powers_and_pca_equal_minist_color(p, seed):
    rng = np.random.default_rng(seed)

    def covariance():
        Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        return (Q * 10.0 ** rng.uniform(-3, 0, 3)) @ Q.T

    S, C = covariance(), covariance()
    want = color.spd_power(S, p)
    np.testing.assert_allclose(classroom.spd_power_svd(S, p), want, rtol=0,
                               atol=1e-9 * np.abs(want).max())
    want = color.pca_transform(S, C)
    np.testing.assert_allclose(classroom.pca_transform_svd(S, C), want, rtol=0,
                               atol=1e-9 * np.abs(want).max())
    with pytest.raises(ValueError, match="spd_power"):
        classroom.spd_power_svd(np.diag([1.0, -0.5, 2.0]), 0.5)
    with pytest.raises(ValueError, match="spd_power"):
        classroom.spd_power_svd(np.array([[1.0, 0.5], [0.0, 1.0]]), 0.5)  # not symmetric


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 20000), smallest=st.integers(1, 600))
def test_closed_form_schedule_equals_auto_sizes(size, smallest):
    assert classroom.auto_sizes_closed_form(size, smallest) == auto_sizes(size, smallest)


def test_closed_form_schedule_default_and_every_size_up_to_3000():
    assert classroom.auto_sizes_closed_form(512) == auto_sizes(512)
    for smallest in (64, 128, 181):
        assert all(classroom.auto_sizes_closed_form(s, smallest) == auto_sizes(s, smallest)
                   for s in range(1, 3000))


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_top_down_receptive_fields_equal_the_recursion(arch):
    table = layer_table(arch)
    assert classroom.receptive_fields_top_down(table) == receptive_fields(table)
    assert classroom.receptive_fields_top_down(iter(table)) == receptive_fields(table)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 6), H=st.integers(1, 4), W=st.integers(1, 5), spatial=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS)
def test_guided_losses_via_the_plain_ones_equal_the_reference(N, H, W, spatial, dtype, seed):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((1, N, H, W)).astype(dtype)
    if not spatial:
        F = F.reshape(N, H * W)
    T = rng.uniform(0, 1.5, (H, W) if spatial else H * W) * (rng.uniform(size=(H, W) if spatial
                                                                          else H * W) > 0.3)
    A = reference.gram_matrix(rng.standard_normal((N, 2 * N + 1)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    G = classroom.guided_gram_via_plain(F, T)
    want = reference.guided_gram_matrix(F, T)
    assert G.dtype == want.dtype
    np.testing.assert_allclose(G, want, rtol=tol, atol=tol)
    E, dF = classroom.guided_style_layer_loss_via_plain(F, A, T)
    E_r, dF_r = reference.guided_style_layer_loss(F, A, T)
    assert np.ndim(E) == 0 and E.dtype == E_r.dtype and dF.shape == F.shape
    assert dF.dtype == dF_r.dtype
    np.testing.assert_allclose(float(E), float(E_r), rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(dF, dF_r, rtol=tol, atol=tol * 1e-2)
    with pytest.raises(ValueError, match="guided_style_layer_loss"):
        classroom.guided_style_layer_loss_via_plain(F, np.eye(N + 1), T)
    with pytest.raises(ValueError, match="guided_gram_matrix"):
        classroom.guided_gram_via_plain(F, np.ones(H * W + 1))
