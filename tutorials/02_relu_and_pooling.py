# %% [markdown]
# # Lesson 2 — ReLU and pooling
#
# Between its convolutions VGG has two weight-free layers: the rectified linear unit after
# every convolution, and a $2 \times 2$ pooling at the end of each of its five blocks. Both
# are simple going forward; the interesting part is where their backward pass sends the
# gradient.
#
# | equation | code |
# |---|---|
# | ReLU forward / backward | `minist.layers.relu.relu_forward`, `relu_backward` |
# | max pooling, as loops | `minist.layers.pool.max_pool_forward_loops`, `max_pool_backward_loops` |
# | max pooling, vectorised | `minist.layers.pool.max_pool_forward`, `max_pool_backward` |
# | average pooling | `minist.layers.pool.avg_pool_forward`, `avg_pool_backward` (and `_loops`) |
#
# Gatys et al. replace VGG's max pooling by average pooling for nicer images
# (`minist stylize --pooling avg`); this lesson shows what the two do differently.
#
# Exercises it runs: `ex_relu`, `ex_max_pool`. In a student's copy it says in one line which are
# not written yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import numpy as np

from minist.images import load_image
from minist.layers.pool import (
    avg_pool_backward,
    avg_pool_backward_loops,
    avg_pool_forward,
    avg_pool_forward_loops,
    max_pool_backward,
    max_pool_backward_loops,
    max_pool_forward,
    max_pool_forward_loops,
)
from minist.layers.relu import relu_backward, relu_forward

LESSON = "02_relu_and_pooling"
L.begin(LESSON, needs=("ex_relu", "ex_max_pool"))  # the exercises this lesson runs
rng = np.random.default_rng(0)


numerical_gradient, relative_error = L.numerical_gradient, L.relative_error  # lesson 01


# %% [markdown]
# ## 1. ReLU
#
# Elementwise, on any shape:
#
# $$
# y = \max(x, 0), \qquad
# \frac{\partial y}{\partial x} = [x > 0] =
#   \begin{cases} 1 & x > 0 \\ 0 & x < 0 \end{cases}, \qquad
# dx = dy \odot [x > 0].
# $$
#
# The backward only needs the **mask** $[x > 0]$ — and $[y > 0] = [x > 0]$, so `relu_forward`
# keeps the output $y$ itself as `cache.mask` (the next layer keeps $y$ anyway: the mask costs no
# memory at all). So `relu_backward` must take any cache whose `mask` is positive exactly where
# $x > 0$ — the output $y$ (which is also what VGG's fused convolution + ReLU hands it) or a
# boolean array — and read it as `cache.mask > 0`. At $x = 0$ the function has a kink
# and no derivative; minist, like every library, uses 0 there. A gradient check must therefore
# stay away from 0: a step $h$ that crosses the kink measures a slope of $\tfrac12$.

# %%
if L.written("ex_relu"):
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    y, cache = relu_forward(x)
    dy = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    print("x        ", x)
    print("y        ", y)
    print("mask     ", (cache.mask > 0).astype(int))
    print("dy       ", dy)
    print("dx       ", relu_backward(dy, cache), " (no gradient where x <= 0)")

    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.1  # keep every element far from the kink compared with h
    dy = rng.standard_normal(x.shape)
    numeric = numerical_gradient(lambda: float(np.sum(relu_forward(x)[0] * dy)), x)
    err = relative_error(relu_backward(dy, relu_forward(x)[1]), numeric)
    print(f"ReLU gradient check (float64): relative error {err:.1e}")
    assert err < 1e-8
else:
    L.not_yet("ex_relu", "section 1's ReLU example and gradient check")

# %% [markdown]
# ## 2. Pooling forward
#
# For a square window of side $k$ and stride $s$, window $(i, j)$ is
# $R_{ij} = \{(is + p,\ js + q) : 0 \le p, q < k\}$ and, per image $n$ and channel $c$,
#
# $$
# y^{\max}_{n,c,i,j} = \max_{(u,v) \in R_{ij}} x_{n,c,u,v}, \qquad
# y^{\mathrm{avg}}_{n,c,i,j} = \frac{1}{k^2} \sum_{(u,v) \in R_{ij}} x_{n,c,u,v},
# \qquad H_o = \left\lfloor \frac{H - k}{s} \right\rfloor + 1 .
# $$
#
# VGG uses $k = s = 2$: each block halves the resolution. **Floor mode**: with an odd size the
# last row and column fit in no window and are simply dropped ($5 \times 5 \to 2 \times 2$).
#
# ## 3. Pooling backward: where the gradient goes
#
# * **Max**: $\partial y_{ij} / \partial x_{uv}$ is 1 for the element that *was* the maximum and 0
#   for the others, so the whole $dy_{ij}$ is **routed to the argmax** of its window:
#   $dx_{n,c,u,v} = \sum_{(i,j):\,(u,v)=\arg\max R_{ij}} dy_{n,c,i,j}$ (a sum, because
#   overlapping windows, $s < k$, can pick the same element). The forward pass stores the
#   argmax of each window (its raster index $t = pk + q$). **Ties**: if a window holds its
#   maximum twice, the gradient goes to the *first* one in raster order (row by row, left to
#   right) — a convention, since the max is not differentiable there.
# * **Average**: $\partial y_{ij} / \partial x_{uv} = 1/k^2$ for every element of the window, so
#   $dy_{ij}$ is **spread evenly**: each gets $dy_{ij}/k^2$.
# * Elements in no window (floor mode) get **zero** gradient.
#
# A $5 \times 5$ example with a tie in its top-left window, $dy = 1$ everywhere:

# %%
x = np.array(
    [
        [1, 7, 2, 0, 9],
        [7, 3, 4, 8, 9],
        [0, 1, 6, 2, 9],
        [5, 2, 6, 1, 9],
        [9, 9, 9, 9, 9],
    ],
    np.float64,
)[None, None]
y_max, cache_max = max_pool_forward_loops(x, kernel=2, stride=2)
y_avg, cache_avg = avg_pool_forward_loops(x, kernel=2, stride=2)
dy = np.ones_like(y_max)
print("x =\n", x[0, 0])
print("max pool y =\n", y_max[0, 0], "\nargmax (raster index p*k+q) =\n", cache_max.argmax[0, 0])
print("max pool dx (top-left window holds 7 twice: the first, at (0,1), gets it) =\n",
      max_pool_backward_loops(dy, cache_max)[0, 0])
print("avg pool y =\n", y_avg[0, 0])
print("avg pool dx =\n", avg_pool_backward_loops(dy, cache_avg)[0, 0])
print("(floor mode: the last row and column of 9s are in no window; their gradient is 0)")
assert max_pool_backward_loops(dy, cache_max)[0, 0, 0, 1] == 1.0
assert max_pool_backward_loops(dy, cache_max)[0, 0, 1, 0] == 0.0
assert not max_pool_backward_loops(dy, cache_max)[0, 0, 4].any()

# %% [markdown]
# ### Loops vs vectorised, and the gradient checks
#
# The `_loops` versions visit every window; the fast versions take, for each of the $k^2$
# offsets $(p, q)$, the strided slice $x_{:,:,p::s,q::s}$ — one vectorised operation per offset.
# For max pooling the fast version keeps a running maximum and moves the argmax only on a
# *strictly* greater value, which is exactly the first-in-raster-order tie rule. Below: both
# agree, on odd sizes and overlapping windows too, and both pass a float64 finite-difference
# check. (The max is differentiable only where the maximum of each window is unique and not
# within $h$ of the runner-up; with random normal inputs that fails with negligible
# probability.)

# %%
for shape, k, s in [((2, 3, 6, 6), 2, 2), ((1, 2, 7, 5), 2, 2), ((1, 2, 7, 7), 3, 2)]:
    x = rng.standard_normal(shape)
    ym, cm = max_pool_forward(x, k, s)
    yml, cml = max_pool_forward_loops(x, k, s)
    ya, ca = avg_pool_forward(x, k, s)
    yal, cal = avg_pool_forward_loops(x, k, s)
    dy = rng.standard_normal(ym.shape)
    assert np.array_equal(ym, yml) and np.array_equal(cm.argmax, cml.argmax)
    assert np.allclose(ya, yal)
    assert np.allclose(max_pool_backward(dy, cm), max_pool_backward_loops(dy, cml))
    assert np.allclose(avg_pool_backward(dy, ca), avg_pool_backward_loops(dy, cal))
    num_max = numerical_gradient(lambda: float(np.sum(max_pool_forward(x, k, s)[0] * dy)), x)  # noqa: B023
    num_avg = numerical_gradient(lambda: float(np.sum(avg_pool_forward(x, k, s)[0] * dy)), x)  # noqa: B023
    e_max = relative_error(max_pool_backward(dy, cm), num_max)
    e_avg = relative_error(avg_pool_backward(dy, ca), num_avg)
    print(f"x {shape}, k={k}, s={s} -> y {ym.shape}: fast == loops; gradient check relative "
          f"error max {e_max:.1e}, avg {e_avg:.1e}")
    assert e_max < 1e-8 and e_avg < 1e-8

# %% [markdown]
# ## 4. Figures
#
# **Pooling an image.** Pooling the photo again and again ($2\times$, $4\times$, $8\times$ smaller,
# as after VGG's first three blocks): max pooling keeps the brightest pixel of each window, so
# bright thin details (windows, highlights, edges on dark ground) survive and dark ones vanish,
# and the image gets brighter and blockier; average pooling is a plain box-filter downscaling —
# smoother, with no bias toward bright values.

# %%
plt = L.pyplot()
size = L.lesson_size(256)
photo = load_image(L.content_image_path(), size)  # (1, 3, H, W) in [0, 1]
rows = {"max": [photo], "avg": [photo]}
for mode, forward in (("max", max_pool_forward), ("avg", avg_pool_forward)):
    for _ in range(3):
        rows[mode].append(forward(rows[mode][-1], 2, 2)[0])
fig, axes = plt.subplots(2, 4, figsize=(14, 6))
for r, mode in enumerate(("max", "avg")):
    for c, img in enumerate(rows[mode]):
        axes[r, c].imshow(L.to_hwc(img), interpolation="nearest")
        label = "input" if c == 0 else f"{mode} pool x{c}"
        axes[r, c].set_title(f"{label}: {img.shape[3]}x{img.shape[2]}, mean {img.mean():.3f}",
                             fontsize=9)
        axes[r, c].axis("off")
fig.suptitle("max pooling (top) vs average pooling (bottom), 2x2 windows, stride 2, repeated")
L.save_figure(fig, LESSON, "max_vs_avg_pooling")
print(f"mean brightness after 3 poolings: max {rows['max'][3].mean():.3f}, "
      f"avg {rows['avg'][3].mean():.3f}, input {photo.mean():.3f}")
assert rows["max"][3].mean() > rows["avg"][3].mean()

# %% [markdown]
# **Gradient routing.** A $16 \times 16$ grey patch of the photo, pooled $2 \times 2$, with
# $dy = 1$ for every window (the gradient of $\sum y$). Max pooling sends each window's
# gradient to one pixel — its brightest — and the other three get nothing: a sparse
# pattern that follows the image. Average pooling gives every pixel $1/4$, whatever the image.

# %%
gray = photo.mean(axis=1, keepdims=True).astype(np.float64)
H, W = gray.shape[2:]
patch = np.ascontiguousarray(gray[:, :, H // 2 - 8 : H // 2 + 8, W // 2 - 8 : W // 2 + 8])
_, cm = max_pool_forward(patch, 2, 2)
_, ca = avg_pool_forward(patch, 2, 2)
ones = np.ones((1, 1, 8, 8))
dx_max, dx_avg = max_pool_backward(ones, cm), avg_pool_backward(ones, ca)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
panels = [(patch, "input patch (grey)", "gray"), (dx_max, "dx, max pool: 1 at each argmax", "Reds"),
          (dx_avg, "dx, avg pool: 1/4 everywhere", "Reds")]
for ax, (img, title, cmap) in zip(axes, panels, strict=True):
    ax.imshow(img[0, 0], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    for t in np.arange(-0.5, 16, 2):  # the 2x2 window grid
        ax.axhline(t, color="tab:blue", lw=0.6)
        ax.axvline(t, color="tab:blue", lw=0.6)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("where the gradient of sum(pool(x)) goes (blue lines: the 2x2 windows)")
L.save_figure(fig, LESSON, "gradient_routing")
print(f"max pool: {int((dx_max > 0).sum())} of {dx_max.size} pixels get gradient; "
      f"avg pool: {int((dx_avg > 0).sum())} of {dx_avg.size}")

# %% [markdown]
# ## Exercise
#
# In the student version these bodies are replaced by a "not implemented" marker:
#
# * **`ex_relu`** — `minist.layers.relu.relu_forward` and `relu_backward` (section 1). Check:
#   `python tutorials/check.py ex_relu` (or `pytest -m ex_relu`)
# * **`ex_max_pool`** — `minist.layers.pool.max_pool_forward_loops` and
#   `max_pool_backward_loops` (sections 2–3; mind floor mode, the tie rule and overlapping
#   windows, and store the argmax as the raster index $t = pk + q$ in the `PoolCache`). Check:
#   `python tutorials/check.py ex_max_pool` (or `pytest -m ex_max_pool`)
#
# The checks compare with the vectorised versions on random shapes, kernels and strides, and
# run finite differences in float64. Then rerun this lesson.
