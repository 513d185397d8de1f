"""Optimizers (minist.optim): each lowers known losses, respects the box, keeps its contract
(``x_new = opt.step(x, f)``; the optimizer evaluates ``f``, at most once per point).

Test problems, written here with their exact minimisers:
* a convex quadratic  L(x) = 0.5 x^T A x - b^T x, minimum x* = A^{-1} b;
* the Rosenbrock function, minimum (1, 1);
* a box-constrained quadratic whose unconstrained minimum lies outside [0, 1]^n; its solution
  is found independently by enumerating every active set and checking the KKT conditions.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.backend import get_array_module, gpu_available
from minist.errors import MinistError
from minist.optim import (
    DEFAULT_LR,
    LBFGS,
    OPTIMIZERS,
    Adam,
    GradientDescent,
    make_optimizer,
    two_loop,
)
from minist.optim.lbfgs import CurvaturePair

UNBOUNDED = {"lower": None, "upper": None}


# ---------------------------------------------------------------- test problems


def spd_matrix(n, kappa, seed):
    """A random symmetric positive definite n x n matrix with eigenvalues from 1 to kappa."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1.0, kappa, n)) @ Q.T


def quadratic(A, b):
    """f(x) -> (loss, grad) of 0.5 v^T A v - b^T v, v = x.ravel(); x any shape, NumPy or CuPy."""

    def evaluate(x):
        xp = get_array_module(x)
        A_, b_ = xp.asarray(A, dtype=x.dtype), xp.asarray(b, dtype=x.dtype)
        v = x.ravel()
        Av = A_ @ v
        return float(0.5 * v @ Av - b_ @ v), (Av - b_).reshape(x.shape)

    return evaluate


def rosenbrock(x):
    """L(a, b) = (1 - a)^2 + 100 (b - a^2)^2 and its gradient; x holds (a, b)."""
    a, b = (float(t) for t in x.ravel())
    loss = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], dtype=x.dtype)
    return loss, grad.reshape(x.shape)


def box_solution(A, b, lower=0.0, upper=1.0):
    """argmin of 0.5 x^T A x - b^T x on [lower, upper]^n by brute force over active sets.

    For each split of the indices into at-lower / at-upper / free, solve A_FF x_F = b_F - A_FB x_B
    and keep the one that satisfies KKT: x_F inside the box, gradient >= 0 at lower, <= 0 at upper.
    """
    n = len(b)
    for states in itertools.product((0, 1, 2), repeat=n):
        x = np.where(np.array(states) == 0, lower, upper).astype(float)
        free = np.array(states) == 2
        if free.any():
            rhs = b[free] - A[np.ix_(free, ~free)] @ x[~free]
            x[free] = np.linalg.solve(A[np.ix_(free, free)], rhs)
        g = A @ x - b
        inside = np.all((x[free] >= lower - 1e-12) & (x[free] <= upper + 1e-12))
        kkt = np.all(g[np.array(states) == 0] >= -1e-12) and np.all(
            g[np.array(states) == 1] <= 1e-12
        )
        if inside and kkt:
            return x
    raise AssertionError("no KKT point found")


def run(opt, f, x, steps, check=None):
    """Run ``steps`` steps; return the last iterate and the list of losses (first = at x), each
    asked of the optimizer, as a style transfer's run asks for the losses it logs."""
    losses = [opt.evaluate(x, f)[0]]
    for _ in range(steps):
        x = opt.step(x, f)
        if check is not None:
            check(x)
        losses.append(opt.evaluate(x, f)[0])
    return x, losses


def steps_to_reach(opt, f, x, target, tol, max_steps):
    for k in range(max_steps):
        if np.abs(x.ravel() - target).max() < tol:
            return k
        x = opt.step(x, f)
    return max_steps + 1


# ---------------------------------------------------------------- (a) convex quadratic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbfgs_solves_quadratic_in_few_steps_and_far_faster_than_gd(seed):
    n, kappa = 8, 100.0
    A = spd_matrix(n, kappa, seed)
    b = np.random.default_rng(seed + 10).standard_normal(n)
    evaluate, x_star = quadratic(A, b), np.linalg.solve(A, b)
    x0 = np.zeros((1, 2, 2, 2))  # any shape: the optimizers never look at it
    k_lbfgs = steps_to_reach(LBFGS(**UNBOUNDED), evaluate, x0, x_star, 1e-6, 10 * n)
    # GD with its best fixed step 2 / (lambda_min + lambda_max): linear rate (k-1)/(k+1).
    gd = GradientDescent(lr=2.0 / (1.0 + kappa), **UNBOUNDED)
    k_gd = steps_to_reach(gd, evaluate, x0, x_star, 1e-6, 5000)
    assert k_lbfgs <= 4 * n, k_lbfgs  # "about the dimension" (exact line search would give n)
    assert k_gd >= 10 * k_lbfgs, (k_gd, k_lbfgs)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 10), seed=st.integers(0, 2**16), name=st.sampled_from(OPTIMIZERS))
def test_every_optimizer_lowers_a_quadratic(n, seed, name):
    kappa = 20.0
    A = spd_matrix(n, kappa, seed)
    b = np.random.default_rng(seed).standard_normal(n)
    lr = {"gd": 1.0 / kappa, "adam": 0.05, "lbfgs": 1.0}[name]
    opt = make_optimizer(name, lr=lr, **UNBOUNDED)
    _, losses = run(opt, quadratic(A, b), np.zeros(n), 60)
    optimum = -0.5 * b @ np.linalg.solve(A, b)
    assert losses[-1] - optimum < 0.1 * (losses[0] - optimum)
    if name in ("gd", "lbfgs"):  # GD with lr <= 1/lambda_max and Armijo steps never go uphill
        assert all(b_ <= a + 1e-12 for a, b_ in zip(losses, losses[1:], strict=False))


# ---------------------------------------------------------------- (b) Rosenbrock


@pytest.mark.parametrize(("bounds", "x0"), [(UNBOUNDED, [-1.2, 1.0]), ({}, [0.1, 0.9])])
def test_lbfgs_converges_on_rosenbrock(bounds, x0):
    opt = LBFGS(**bounds)
    x, losses = run(opt, rosenbrock, np.array(x0), 100)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-6)
    assert opt.evaluations < 100


@pytest.mark.parametrize(("name", "lr"), [("gd", 1e-3), ("adam", 1e-2)])
def test_gd_and_adam_lower_rosenbrock(name, lr):
    x, losses = run(make_optimizer(name, lr=lr, **UNBOUNDED), rosenbrock, np.array([-1.2, 1.0]),
                    2000)
    assert losses[-1] < 0.05 * losses[0]
    assert np.linalg.norm(x - 1.0) < np.linalg.norm(np.array([-1.2, 1.0]) - 1.0)


# ---------------------------------------------------------------- (c) the box


def box_problem(seed, n=5, kappa=10.0):
    A = spd_matrix(n, kappa, seed)
    x_free = np.random.default_rng(seed).uniform(-1.0, 2.0, n)
    x_free[0] = -0.5  # make sure the unconstrained minimum lies outside [0, 1]^n
    return A, A @ x_free, x_free


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("name", "lr", "steps", "tol"),
    [("lbfgs", 1.0, 60, 1e-6), ("gd", 0.1, 400, 1e-6), ("adam", 1e-3, 3000, 1e-2)],
)
def test_box_iterates_stay_inside_and_reach_the_projected_solution(seed, name, lr, steps, tol):
    A, b, x_free = box_problem(seed)
    solution = box_solution(A, b)
    assert np.abs(x_free - solution).max() > 0.1  # the box really binds

    def inside(x):
        assert x.min() >= 0.0 and x.max() <= 1.0

    opt = make_optimizer(name, lr=lr)  # default bounds: [0, 1]
    x, _ = run(opt, quadratic(A, b), np.full(5, 0.5), steps, check=inside)
    np.testing.assert_allclose(x, solution, atol=tol)


def test_lbfgs_skips_pairs_of_negative_curvature():
    """On a concave loss s^T y < 0 always: no pair is kept, yet the box corners are reached."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.05, 0.95, (1, 3, 4, 4))

    def concave(x):
        return float(-0.5 * np.sum((x - 0.5) ** 2)), -(x - 0.5)

    opt = LBFGS()
    x, losses = run(opt, concave, x0, 30)
    assert len(opt.history) == 0 and opt.skipped_pairs > 0
    np.testing.assert_array_equal(x, np.where(x0 < 0.5, 0.0, 1.0))


# ---------------------------------------------------------------- L-BFGS internals


def dense_bfgs_inverse(pairs, n):
    """Reference: H_{i+1} = (I - rho s y^T) H_i (I - rho y s^T) + rho s s^T from H_0 = gamma I."""
    s_last, y_last = pairs[-1]
    H = np.eye(n) * (s_last @ y_last) / (y_last @ y_last)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 12), m=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_two_loop_matches_dense_bfgs(n, m, seed):
    rng = np.random.default_rng(seed)
    A = spd_matrix(n, 50.0, seed)
    pairs = [(s, A @ s) for s in rng.standard_normal((m, n))]  # y = A s: s^T y > 0
    history = [CurvaturePair(s, y, 1.0 / (s @ y), (s @ y) / (y @ y)) for s, y in pairs]
    g = rng.standard_normal(n)
    H = dense_bfgs_inverse(pairs, n)
    np.testing.assert_allclose(two_loop(g, history), H @ g, rtol=1e-8, atol=1e-10)
    # the newest secant equation H y = s holds exactly, and H is positive definite
    np.testing.assert_allclose(two_loop(pairs[-1][1], history), pairs[-1][0], rtol=1e-8,
                               atol=1e-10)
    assert g @ two_loop(g, history) > 0


def test_lbfgs_first_step_is_scaled_steepest_descent():
    A, b = spd_matrix(6, 5.0, 3), np.arange(6.0)
    evaluate = quadratic(A, b)
    x0 = np.zeros(6)
    _, g = evaluate(x0)
    opt = LBFGS(lr=0.5, **UNBOUNDED)
    x1 = opt.step(x0, evaluate)
    assert opt.evaluations == 2  # at x0, and the first trial, which was accepted
    np.testing.assert_allclose(x1, x0 - 0.5 * min(1.0, 1.0 / np.abs(g).sum()) * g, rtol=1e-12)


def test_lbfgs_falls_back_to_steepest_descent_when_d_points_uphill():
    A, b = spd_matrix(4, 5.0, 4), np.ones(4)
    evaluate = quadratic(A, b)
    opt = LBFGS(**UNBOUNDED)
    x = opt.step(np.zeros(4), evaluate)
    loss, g = evaluate(x)
    opt.history.clear()  # plant a pair that makes H g = 0, so d is no descent direction
    opt.history.append(CurvaturePair(g.copy(), -g, -1.0 / (g @ g), -1.0))
    x_new = opt.step(x, evaluate)
    assert opt.steepest_descent_steps == 1
    assert evaluate(x_new)[0] < loss


def test_lbfgs_never_accepts_an_uphill_step():
    """With a gradient of the wrong sign no trial passes Armijo: x comes back unchanged."""

    def wrong_gradient(x):
        return float(np.sum(x)), -np.ones_like(x)

    x = np.full((2, 3), 0.5)
    opt = LBFGS(max_trials=7)
    x_new = opt.step(x, wrong_gradient)
    assert x_new is not x
    np.testing.assert_array_equal(x_new, x)
    assert opt.line_search_failures == 1 and len(opt.history) == 0
    assert opt.evaluations == 1 + 7  # at x, then each trial


def test_lbfgs_does_not_burn_evaluations_at_float32_precision():
    """Past the point where float32 can resolve the loss, each step still costs one evaluation."""
    rng = np.random.default_rng(3)
    shape = (1, 3, 32, 32)
    evaluate = separable(rng.uniform(-0.2, 1.2, shape), rng.uniform(0.5, 2.0, shape))
    opt = LBFGS()
    x, losses = run(opt, evaluate, np.full(shape, 0.5, dtype=np.float32), 40)
    floor = min(losses)  # converged to the float32 floor ...
    assert all(abs(loss - floor) <= 1e-6 * floor for loss in losses[-10:])
    # ... at ~1 pass per step (the 1 + 40 of the start and one trial per step, and a few more)
    assert opt.evaluations <= 46 and opt.line_search_failures == 0


class Counted:
    """``f`` that counts its calls, by point (the point's bytes), and keeps what it returned."""

    def __init__(self, f):
        self.f, self.points, self.returned = f, [], []

    def __call__(self, x):
        self.points.append(x.tobytes())
        value = self.f(x)
        self.returned.append((value[1], value[1].copy()))
        return value


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_point_is_evaluated_once(name):
    """The optimizer owns the evaluations: over a run -- the caller asking for the loss at each
    iterate, as a style transfer logs it -- no point is evaluated twice, and GD and Adam
    evaluate once per step."""
    A, b, _ = box_problem(1)
    f = Counted(quadratic(A, b))
    opt = make_optimizer(name, lr={"gd": 0.01, "adam": 0.01, "lbfgs": 1.0}[name], **UNBOUNDED)
    x, steps = np.full(5, 0.5), 15
    run(opt, f, x, steps)
    assert len(f.points) == opt.evaluations
    assert len(set(f.points)) == len(f.points)  # every point once
    if name != "lbfgs":
        assert opt.evaluations == steps + 1  # each iterate once, the last one included


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_point_changed_in_place_is_evaluated_anew(name):
    """No memo by object identity: the caller edits the iterate it got back, in place, and the
    value the optimizer hands back (and steps from) is that of the edited point."""
    A, b, _ = box_problem(2)
    f = Counted(quadratic(A, b))
    opt = make_optimizer(name, lr=0.05 if name != "lbfgs" else 1.0)
    x = opt.step(np.full(5, 0.5), f)
    kept = opt.evaluate(x, f)  # L-BFGS: kept from its line search; GD, Adam: computed now
    calls = len(f.points)
    x[2] += 0.25  # in place
    loss, grad = opt.evaluate(x, f)
    assert len(f.points) == calls + 1 and f.points[-1] == x.tobytes()
    expected_loss, expected_grad = quadratic(A, b)(x)
    assert loss == expected_loss and loss != kept[0]
    np.testing.assert_array_equal(grad, expected_grad)
    opt.step(x, f)
    assert f.points.count(x.tobytes()) == 1  # the step used that evaluation, not a new one


# ---------------------------------------------------------------- Adam and GD specifics


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-2, 1.0, 1e3]),
    lr=st.sampled_from([1e-3, 0.1]),
)
def test_adam_first_step_is_lr_times_sign_of_gradient(shape, seed, scale, lr):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, shape)
    g = rng.choice([-1.0, 1.0], shape) * rng.uniform(1.0, 10.0, shape) * scale
    x_new = Adam(lr=lr, **UNBOUNDED).step(x, lambda _: (0.0, g))
    np.testing.assert_allclose(x_new - x, -lr * np.sign(g), rtol=1e-6)


def test_gd_with_zero_momentum_is_plain_projected_gd():
    A, b, _ = box_problem(1)
    evaluate = quadratic(A, b)
    x_a = x_b = np.full(5, 0.5, dtype=np.float32)
    opt = GradientDescent(lr=0.05, momentum=0.0)
    for _ in range(20):
        x_a = opt.step(x_a, evaluate)
        x_b = np.clip(x_b - np.float32(0.05) * evaluate(x_b)[1], 0.0, 1.0)
        np.testing.assert_array_equal(x_a, x_b)


def test_momentum_speeds_up_an_ill_conditioned_quadratic():
    kappa = 100.0
    A, b = spd_matrix(6, kappa, 5), np.ones(6)
    evaluate, optimum = quadratic(A, b), -0.5 * b @ np.linalg.solve(A, b)
    lr = 1.0 / kappa
    _, plain = run(GradientDescent(lr=lr, **UNBOUNDED), evaluate, np.zeros(6), 200)
    _, heavy = run(GradientDescent(lr=lr, momentum=0.9, **UNBOUNDED), evaluate, np.zeros(6), 200)
    assert heavy[-1] - optimum < 1e-3 * (plain[-1] - optimum)


# ---------------------------------------------------------------- contract for all optimizers


def separable(target, weight):
    """evaluate(x) for 0.5 sum w (x - t)^2 (any shape, NumPy or CuPy)."""

    def evaluate(x):
        xp = get_array_module(x)
        t, w = xp.asarray(target, dtype=x.dtype), xp.asarray(weight, dtype=x.dtype)
        r = x - t
        return float(0.5 * xp.sum(w * r * r)), w * r

    return evaluate


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(OPTIMIZERS),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_contract_new_array_same_dtype_inside_the_box(shape, seed, name, dtype):
    rng = np.random.default_rng(seed)
    f = Counted(separable(rng.uniform(-1.0, 2.0, shape), rng.uniform(0.5, 2.0, shape)))
    x = rng.uniform(0.0, 1.0, shape).astype(dtype)
    opt = make_optimizer(name, lr=0.3)
    for _ in range(4):
        before_x = x.copy()
        x_new = opt.step(x, f)
        np.testing.assert_array_equal(x, before_x)  # nothing modified in place
        for grad, copy in f.returned:
            np.testing.assert_array_equal(grad, copy)
        assert x_new is not x
        assert x_new.dtype == dtype and x_new.shape == x.shape
        assert x_new.min() >= 0.0 and x_new.max() <= 1.0
        x = x_new


def float32_problem():
    rng = np.random.default_rng(7)
    shape = (1, 3, 4, 4)
    evaluate = separable(rng.uniform(-0.5, 1.5, shape), rng.uniform(0.1, 10.0, shape))
    return evaluate, rng.uniform(0.0, 1.0, shape).astype(np.float32)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32_and_repeat_runs_are_bit_identical(name):
    evaluate, x0 = float32_problem()
    opt = make_optimizer(name, lr=0.05 if name != "lbfgs" else 1.0)
    x1, _ = run(opt, evaluate, x0, 25, check=lambda x: x.dtype == np.float32 or pytest.fail())
    state = [getattr(opt, k) for k in ("velocity", "m", "v") if getattr(opt, k, None) is not None]
    state += [a for pair in getattr(opt, "history", []) for a in (pair.s, pair.y)]
    assert all(a.dtype == np.float32 for a in state)
    x2, _ = run(make_optimizer(name, lr=opt.lr), evaluate, x0, 25)  # a fresh instance
    opt.reset()
    x3, _ = run(opt, evaluate, x0, 25)  # the same instance, reset
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(x1, x3)


def test_state_resets_when_the_image_changes_shape():
    evaluate_a, xa = float32_problem()
    opt = Adam()
    run(opt, evaluate_a, xa, 3)
    xb = np.full((1, 3, 2, 2), 0.5, dtype=np.float32)
    evaluate_b = separable(np.zeros(xb.shape), np.ones(xb.shape))
    x_new = opt.step(xb, evaluate_b)
    assert opt.t == 1 and x_new.shape == xb.shape


def test_gd_and_adam_ask_f_at_x_only():
    for name in ("gd", "adam"):
        f = Counted(lambda x: (1.0, np.ones_like(x)))
        opt = make_optimizer(name)
        x = np.full(3, 0.5)
        opt.step(x, f)
        assert f.points == [x.tobytes()] and opt.evaluations == 1


# ---------------------------------------------------------------- make_optimizer and errors


def test_make_optimizer_builds_each_with_its_default_lr():
    for name, cls in zip(OPTIMIZERS, (GradientDescent, Adam, LBFGS), strict=True):
        opt = make_optimizer(name)
        assert type(opt) is cls and opt.lr == DEFAULT_LR[name]
        assert (opt.lower, opt.upper) == (0.0, 1.0)
    assert make_optimizer("lbfgs", lr=0.5, history=5).history_size == 5


@pytest.mark.parametrize(
    ("call", "start"),
    [
        (lambda: make_optimizer("sgd"), "--optimizer:"),
        (lambda: make_optimizer("adam", betas=(0.9, 0.99)), "--optimizer adam:"),
        (lambda: make_optimizer("gd", lr=0.0), "--lr:"),
        (lambda: make_optimizer("adam", lr=-1.0), "--lr:"),
        (lambda: make_optimizer("lbfgs", lr=float("nan")), "--lr:"),
        (lambda: make_optimizer("lbfgs", lr=float("inf")), "--lr:"),
        (lambda: make_optimizer("gd", lr="fast"), "--lr:"),
        (lambda: make_optimizer("gd", momentum=1.0), "--optimizer gd:"),
        (lambda: make_optimizer("gd", momentum=-0.1), "--optimizer gd:"),
        (lambda: make_optimizer("adam", beta1=1.0), "--optimizer adam:"),
        (lambda: make_optimizer("adam", beta2=-0.5), "--optimizer adam:"),
        (lambda: make_optimizer("adam", eps=0.0), "--optimizer adam:"),
        (lambda: make_optimizer("lbfgs", history=0), "--optimizer lbfgs:"),
        (lambda: make_optimizer("lbfgs", history=2.5), "--optimizer lbfgs:"),
        (lambda: make_optimizer("lbfgs", history=True), "--optimizer lbfgs:"),
        (lambda: make_optimizer("lbfgs", c1=1.0), "--optimizer lbfgs:"),
        (lambda: make_optimizer("lbfgs", lower=1.0, upper=0.0), "--optimizer lbfgs:"),
        (lambda: make_optimizer("gd", lower=float("nan")), "--optimizer gd:"),
    ],
)
def test_invalid_names_and_options_raise_one_line_errors(call, start):
    with pytest.raises(MinistError) as info:
        call()
    message = str(info.value)
    assert message.startswith(start) and "\n" not in message


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_cupy_matches_numpy(name):
    import cupy

    evaluate, x0 = float32_problem()
    lr = 0.05 if name != "lbfgs" else 1.0
    x_cpu, _ = run(make_optimizer(name, lr=lr), evaluate, x0, 15)
    x_gpu, _ = run(make_optimizer(name, lr=lr), evaluate, cupy.asarray(x0), 15)
    assert isinstance(x_gpu, cupy.ndarray) and x_gpu.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(x_gpu), x_cpu, atol=1e-5)
