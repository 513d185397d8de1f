"""Exercise ex_adam: ``minist.optim.adam.Adam.step`` (lesson 07).

Checked by what Adam's equations imply -- the first step moves every pixel by about ``lr``
against the sign of its gradient; scaling the loss changes nothing; the box is respected;
a quadratic is minimised -- and, over a few steps, by the update equations restated in the test
as math (first and second moments, bias correction, projection). ``step(x, f)`` asks ``f`` for
the gradient at ``x`` (through ``self.evaluate``), once.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_dtype
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.optim.adam import Adam

pytestmark = pytest.mark.ex_adam

UNBOUNDED = {"lower": None, "upper": None}


def given_gradient(g):
    """``f`` whose gradient is ``g`` wherever it is asked (the loss does not matter to Adam)."""
    return lambda x: (0.0, g)


def _gradients(seed, shape=(3, 4)):
    """Gradients with both signs and magnitudes from 0.1 to 10 (far above eps)."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-1, 1, shape)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lr=st.floats(1e-3, 0.1))
def test_first_step_moves_each_pixel_by_lr_against_the_gradient(seed, lr):
    g = _gradients(seed)
    x = np.random.default_rng(seed).uniform(0.2, 0.8, g.shape)
    x1 = Adam(lr=lr).step(x, given_gradient(g))
    expect_close(x1 - x, -lr * np.sign(g), what="first step x1 - x",
                 against=f"-lr sign(g) (lr = {lr:.3g})", inputs={"x": x, "g": g}, rtol=0,
                 atol=lr * 1e-6, factors={"lr": lr, "1 - beta1": 0.1})


def test_few_steps_follow_the_update_equations():
    beta1, beta2, eps, lr = 0.8, 0.95, 1e-8, 0.05
    opt = Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, **UNBOUNDED)
    x = np.linspace(-1.0, 1.0, 6)
    m = v = np.zeros_like(x)
    for t in range(1, 6):
        g = np.cos(3.0 * x + t)  # any gradient sequence
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        expected = x - lr * m_hat / (np.sqrt(v_hat) + eps)
        x_before = x
        x = opt.step(x, given_gradient(g))
        expect_close(x - x_before, expected - x_before, what=f"step {t}",
                     against="the update equations (moments, bias correction)",
                     inputs={"x": x_before}, rtol=1e-9, atol=1e-14,
                     factors={"1 - beta1": 1 - beta1, "1 - beta1^t": 1 - beta1**t})


def test_scaling_the_loss_does_not_change_the_path():
    target = np.array([0.3, 0.6, 0.9, 0.1])
    paths = []
    for scale in (1.0, 1000.0):
        opt, x = Adam(lr=0.02), np.full(4, 0.5)
        for _ in range(10):
            x = opt.step(x, lambda x, scale=scale: (0.0, scale * (x - target)))
        paths.append(x)
    expect_close(paths[1], paths[0], what="x after 10 steps on 1000 times the loss",
                 against="x after 10 steps on the loss (Adam is scale-free)", rtol=0, atol=1e-6)


def test_stays_in_the_box_and_minimises_a_quadratic():
    target = np.array([0.3, 0.45, 0.6, 0.7, -0.5, 1.5])  # the last two lie outside [0, 1]
    opt, x = Adam(lr=0.02), np.array([1.0, 0.0, 1.0, 0.0, 0.5, 0.5])
    for _ in range(400):
        x = opt.step(x, lambda x: (0.0, x - target))  # gradient of 0.5 |x - target|^2
        expect(bool(np.all((x >= 0.0) & (x <= 1.0))),
               "a step left the box [0, 1]: end with self.project_(...)")
    expect_close(x, np.clip(target, 0, 1), what="x after 400 steps on 0.5 |x - target|^2",
                 against="the target clipped to [0, 1]", rtol=0, atol=0.02)


def test_does_not_modify_its_inputs_and_keeps_the_dtype():
    x = np.full((2, 3), 0.5, dtype=np.float32)
    g = _gradients(1, (2, 3)).astype(np.float32)
    x0, g0 = x.copy(), g.copy()
    opt = Adam(lr=0.01)
    x1 = opt.step(x, given_gradient(g))
    x2 = opt.step(x1, given_gradient(g))
    expect(x1 is not x, "step returned x itself: return a new array")
    expect_dtype(x1, np.float32, what="the first step's result", input_name="x")
    expect_dtype(x2, np.float32, what="the second step's result", input_name="x")
    expect(np.array_equal(x, x0) and np.array_equal(g, g0),
           "step modified x or grad: never change the caller's arrays")


def test_a_new_shape_starts_afresh():
    opt = Adam(lr=0.01)
    x = np.full(5, 0.5)
    for _ in range(3):
        x = opt.step(x, given_gradient(np.ones(5)))
    g = _gradients(2, (2, 2))
    y = np.full((2, 2), 0.5)
    expect_close(opt.step(y, given_gradient(g)) - y, -0.01 * np.sign(g),
                 what="the first step on a new shape", against="a first step, -lr sign(g) "
                 "(call self._prepare(x) first)", rtol=0, atol=1e-8)


def test_asks_f_once_at_x_through_evaluate():
    """The optimizer owns its evaluations: one call of ``f`` per step, at ``x``, through
    ``self.evaluate(x, f)`` (which a caller that already asked for the value at ``x`` -- to log
    it -- does not pay for twice)."""
    asked = []

    def f(x):
        asked.append(x.copy())
        return 0.0, np.ones_like(x)

    opt, x = Adam(lr=0.01), np.full(4, 0.5)
    opt.evaluate(x, f)  # the caller asks first, as a style transfer's run does
    x1 = opt.step(x, f)
    expect(len(asked) == 1 and np.array_equal(asked[0], x),
           f"f was called {len(asked)} times for one step at a point already evaluated: ask "
           "for the gradient with self.evaluate(x, f), not f(x)")
    opt.step(x1, f)
    expect(len(asked) == 2 and np.array_equal(asked[1], x1),
           "the second step did not ask f once, at its x (use self.evaluate(x, f))")
