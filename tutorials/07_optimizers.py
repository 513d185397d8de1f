# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 7 — Optimizers compared: gradient descent, Adam, L-BFGS
#
# Style transfer optimises the *pixels* of an image: hundreds of thousands of variables, one
# loss (Eq. 7, lesson 6) and its gradient from one forward and one backward pass through VGG.
# Gatys et al. used L-BFGS. This lesson writes the update rules of three optimizers, points at
# their code in `minist/optim/`, checks two of their defining properties numerically, and races
# them on the same style transfer problem.
#
# Run it: `python tutorials/07_optimizers.py` from the repository root (or open it as a notebook
# with Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick.
#
# Exercises it runs: `ex_adam`, `ex_two_loop`, `ex_relu`, `ex_vgg_backward`, `ex_content_loss`,
# `ex_gram`, `ex_style_loss`, `ex_tv_loss`. In a student's copy it says in one line which are not
# written yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import numpy as np

from minist.optim import make_optimizer
from minist.optim.adam import Adam
from minist.optim.lbfgs import CurvaturePair, two_loop
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import load_weights

LESSON = "07_optimizers"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_adam", "ex_two_loop", "ex_relu", "ex_vgg_backward", "ex_content_loss", "ex_gram",
    "ex_style_loss", "ex_tv_loss",
))
plt = L.pyplot()

# %% [markdown]
# ## 1. The update rules
#
# All three share one contract, `x_new = opt.step(x, f)` (`minist.optim.base.Optimizer`): `f`
# is the function to minimise, `f(x) -> (loss, grad)` — in a style transfer the
# `minist.problem.Problem` of lesson 6's Eq. 7, one forward and one backward pass through VGG —
# and the optimizer calls it where it needs a value, as `torch.optim.LBFGS` calls its closure.
# It calls it **at most once per point** (`Optimizer.evaluate`): it keeps its own copy of the
# last point it evaluated with the value there, and hands that back when asked about an equal
# point — so the run, which asks for the loss at each iteration's image to log it, pays for no
# second evaluation, and an image changed in place is a new point, evaluated anew. All three keep
# the image in its box $[0, 1]$ by projecting after every update:
# $P(x)_i = \min(\max(x_i, 0), 1)$ (`minist.optim.base.project_`). Below
# $g_k = \nabla\mathcal{L}(x_k)$.
#
# **Gradient descent with momentum** — `minist.optim.gd.GradientDescent.step`, one evaluation
# per step, at $x_k$:
#
# $$v_{k+1} = \mu v_k - \eta g_k, \qquad x_{k+1} = P(x_k + v_{k+1}), \qquad v_0 = 0.$$
#
# The step is proportional to the gradient, so $\eta$ must match the scale of the loss: too
# large diverges, too small crawls. Momentum $\mu$ lets steps build up along directions where
# the gradient keeps its sign.
#
# **Adam** — `minist.optim.adam.Adam.step` (elementwise):
#
# $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_k,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_k^2,\quad
#   \hat m_t = \frac{m_t}{1-\beta_1^t},\quad \hat v_t = \frac{v_t}{1-\beta_2^t},$$
# $$x_{k+1} = P\Big(x_k - \eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}\Big).$$
#
# Each pixel gets its own step size; the first step is $\approx -\eta\,\mathrm{sign}(g)$, so
# $\eta$ is "how far a pixel moves per step", whatever the loss scale.
#
# **L-BFGS** — `minist.optim.lbfgs.LBFGS.step`, direction by `minist.optim.lbfgs.two_loop`.
# From the last $m$ pairs $s_i = x_{i+1} - x_i$, $y_i = g_{i+1} - g_i$ it applies an
# inverse-Hessian approximation $H_k$ to the gradient without forming it (two-loop recursion,
# $\rho_i = 1/s_i^\top y_i$):
#
# $$q \leftarrow g;\ \text{newest to oldest: } \alpha_i = \rho_i s_i^\top q,\ q \leftarrow q -
#   \alpha_i y_i;\quad r \leftarrow \gamma_k q,\ \gamma_k = \frac{s_{k-1}^\top y_{k-1}}
#   {y_{k-1}^\top y_{k-1}};$$
# $$\text{oldest to newest: } \beta_i = \rho_i y_i^\top r,\ r \leftarrow r + (\alpha_i - \beta_i)
#   s_i;\qquad d = -r = -H_k g.$$
#
# Then a **backtracking line search** along the projected path $x(t) = P(x + t d)$: try $t = 1$,
# accept when the Armijo condition $\mathcal{L}(x(t)) \le \mathcal{L}(x) + c_1 g^\top(x(t) - x)$
# holds, else shrink $t$ (by a quadratic fit) and try again. **Every trial costs one more
# forward and backward pass** — so one L-BFGS iteration can cost more than one evaluation,
# which is why we compare the optimizers per iteration *and* per evaluation *and* per second.
# The accepted trial is where the next step starts: its value is the one the optimizer kept,
# so an iteration whose first trial is accepted costs exactly one evaluation.
#
# ## 2. Two properties, checked
#
# *Secant equation.* BFGS builds $H$ so that $H y = s$ for the newest pair: a quadratic model
# whose curvature along the last step is the one measured. On a quadratic
# $\tfrac12 x^\top Q x$ (so $y = Q s$) the two-loop recursion must return exactly $s_{k-1}$ for
# $g = y_{k-1}$, and $g^\top H g > 0$ for any $g$ (a descent direction).
#
# *Adam's first step.* With $m_0 = v_0 = 0$ the bias correction makes $\hat m_1 = g$,
# $\hat v_1 = g^2$, so every pixel moves by $\eta\,|g|/(|g| + \epsilon) \approx \eta$.

# %%
rng = np.random.default_rng(0)
n = 8
B = rng.standard_normal((n, n))
Q = B @ B.T + n * np.eye(n)  # symmetric positive definite
history = []
for _ in range(4):
    s = rng.standard_normal(n)
    y = Q @ s
    history.append(CurvaturePair(s, y, 1.0 / (s @ y), (s @ y) / (y @ y)))
Hy = two_loop(history[-1].y, history)
g = rng.standard_normal(n)
secant_error = np.abs(Hy - history[-1].s).max() / np.abs(history[-1].s).max()
L.say(f"two_loop: |H y - s| / |s| = {secant_error:.1e} (secant equation), "
      f"g^T H g = {g @ two_loop(g, history):.3f} > 0")
assert secant_error < 1e-10

ADAM = L.written("ex_adam")  # in a student's copy: this lesson's exercise, done?
if ADAM:
    x0 = np.full((1, 3, 4, 4), 0.5)
    g0 = rng.standard_normal(x0.shape)
    adam = Adam(lr=0.01)
    moved = np.abs(adam.step(x0, lambda x: (0.0, g0)) - x0)  # f: the gradient g0 everywhere
    L.say(f"Adam's first step moves every pixel by {moved.min():.6f} ... {moved.max():.6f} "
          f"(lr = {adam.lr})")
    assert np.allclose(moved, 0.01, rtol=1e-4)
else:
    L.not_yet("ex_adam", "Adam's first-step check")

# %% [markdown]
# ## 3. The race
#
# One problem for all: the photo in the style of the painting, content layer relu4_2 (or the
# deepest the weights reach), all style layers, $\alpha = 1$, $\beta = 10^3$ (minist's
# normalised losses, lesson 6), starting from the photo. Each optimizer gets the same number of
# iterations. We count **evaluations** (forward + backward passes through VGG) by counting the
# network's forward calls.
#
# Learning rates: L-BFGS uses $t = 1$ (its $\gamma_k$ sets the scale); Adam $\eta = 0.01$ (about
# 2.5 grey levels per step). For gradient descent no fixed $\eta$ works for every network, so we
# choose it from the first gradient: $\eta = 0.05 / \max|g_0|$, i.e. the first step moves the
# most sensitive pixel by 0.05, with momentum $\mu = 0.9$.


# %%
class CountingVGG(VGG):
    """A VGG that counts its forward passes (one per loss evaluation during the run)."""

    passes = 0

    def forward(self, image, layers):
        self.passes += 1
        return super().forward(image, layers)


choice = L.find_weights()
L.say(choice.note)
net = CountingVGG(load_weights(choice.path))
size = L.lesson_size(128 if not L.FAST else 64)
iters = L.iterations(100, 20)
reach = [n for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
         if n in net.layer_names]
settings = dict(network=net, size=size, content_weight=1.0, style_weight=1e3,
                style_layers=reach,
                content_layers=["relu4_2"] if "relu4_2" in net.layer_names else [reach[-1]],
                init="content", seed=0)
content_path, style_path = L.content_image_path(), L.style_image_path()


def race(name):
    """Run one optimizer on the problem; return its curves and final image."""
    if name == "gd":  # GD's step is lr * gradient: choose lr from the gradient at the start
        start = StyleTransfer(content_path, style_path, **settings)
        g0 = start.problem(start.image).grad  # the Problem: f(x) -> (loss, grad) and its parts
        optimizer = make_optimizer("gd", lr=0.05 / float(np.abs(g0).max()), momentum=0.9)
    else:
        optimizer = make_optimizer(name)
    st = StyleTransfer(content_path, style_path, optimizer=optimizer, **settings)
    net.passes = 0  # the targets' passes are not part of the race
    evaluations, seconds = [], []
    for _ in range(iters):
        record = st.step()
        evaluations.append(net.passes)  # evaluations spent by the end of this iteration
        seconds.append(record.seconds)
    totals = [r.total for r in st.history]
    return dict(total=totals, evaluations=evaluations, seconds=np.cumsum(seconds),
                image=st.result(), optimizer=st.optimizer)


runs = {}
if not ADAM:
    L.not_yet("ex_adam", "Adam's place in the race")
for name in ("gd", "adam", "lbfgs") if ADAM else ("gd", "lbfgs"):
    runs[name] = race(name)
    r = runs[name]
    L.say(f"{name:>6}: loss {r['total'][0]:.1f} -> {r['total'][-1]:.2f} in {iters} iterations, "
          f"{net.passes} evaluations, {r['seconds'][-1]:.1f} s  ({r['optimizer']!r})")
lbfgs = runs["lbfgs"]["optimizer"]
L.say(f"L-BFGS: {lbfgs.evaluations} evaluations of f for {iters} iterations (the start and "
      f"each line-search trial), {lbfgs.line_search_failures} failed searches, "
      f"{lbfgs.skipped_pairs} skipped pairs")

# %% [markdown]
# ## 4. What to see
#
# Left: per iteration. For the first few iterations Adam is ahead — L-BFGS starts with a short,
# cautious step (at most $\eta$ in total, L1 norm) and needs a few curvature pairs before its
# steps get long — then L-BFGS overtakes (around iteration 10–15 at the normal size, 128 px and
# 100 iterations; after about 5 in the fast CI mode) and ends clearly lowest: it uses curvature,
# so its unit step is usually the right length. Middle: per evaluation, which is fair to the
# cheaper methods since an L-BFGS iteration may try more than one point; here it makes no
# difference, because nearly every iteration accepts its first trial (the line-search line
# printed above). Right: per second. All three spend their time in the same VGG forward and
# backward passes, so on a quiet machine this is the middle plot stretched; on a shared one
# (as in CI) other jobs bend the time axis, and the curves' order at a given second says little.
# Adam moves every pixel by about $\eta$ per step, which keeps it ahead of gradient descent but
# slows it down once finer steps are needed; gradient descent with a hand-chosen $\eta$ is the
# slowest. The images below are the three results after the same number of iterations: the
# lower the loss, the more of the painting's swirls.

# %%
labels = {"gd": "GD + momentum", "adam": "Adam", "lbfgs": "L-BFGS"}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for name, r in runs.items():
    axes[0].semilogy(np.arange(iters), r["total"], label=labels[name])
    axes[1].semilogy(r["evaluations"], r["total"], label=labels[name])
    axes[2].semilogy(r["seconds"], r["total"], label=labels[name])
xlabels = ("iteration", "evaluations (forward + backward)", "seconds")
for ax, xlabel in zip(axes, xlabels, strict=True):
    ax.set_xlabel(xlabel)
    ax.set_ylabel("total loss")
    ax.grid(True, which="both", alpha=0.3)
axes[0].legend()
fig.suptitle("The same style transfer problem, three optimizers"
             + ("" if choice.real else " (RANDOM weights)"))
L.save_figure(fig, LESSON, "loss_curves")

fig, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 3))
for ax, (name, r) in zip(axes, runs.items(), strict=True):
    ax.imshow(L.to_hwc(r["image"]))
    ax.set_title(f"{labels[name]}: loss {r['total'][-1]:.1f}", fontsize=9)
    ax.axis("off")
L.save_figure(fig, LESSON, "results")

# %% [markdown]
# ## Exercises
#
# * **`ex_adam`** — implement `minist.optim.adam.Adam.step(x, f)` (the gradient at `x` through
#   `self.evaluate(x, f)`, the moments, the bias correction, the projection). Check: `python tutorials/check.py ex_adam` (or `pytest -m ex_adam`).
# * **`ex_two_loop`** — implement `minist.optim.lbfgs.two_loop(g, history)`, the two-loop
#   recursion above. Check: `python tutorials/check.py ex_two_loop` (or `pytest -m ex_two_loop`).
#
# Try afterwards: start from noise (`init="noise"`), where the gap between the optimizers
# grows; or give gradient descent a 10x larger $\eta$ and watch it oscillate.
