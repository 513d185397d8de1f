# %% [markdown]
# # Lesson 1 — Convolution, forward and backward
#
# Every layer of VGG that has weights is a 2-D convolution. This lesson writes its equation,
# runs it three ways (the loops that spell it out, *im2col* + one matrix product, and by hand on
# a 4×4 example), derives its gradients and proves them right with finite differences.
#
# | equation | code |
# |---|---|
# | forward, as loops | `minist.layers.conv.conv2d_forward_loops` |
# | forward, im2col + GEMM | `minist.layers.conv.conv2d_forward` |
# | backward, as loops | `minist.layers.conv.conv2d_backward_loops` |
# | backward, col2im + GEMM | `minist.layers.conv.conv2d_backward` |
#
# Run it from the repository root with `python tutorials/01_convolution.py`, or open it as a
# notebook (`jupytext --to notebook`, or directly in VS Code / PyCharm / Jupyter with jupytext).
#
# Exercises it runs: `ex_conv_forward`, `ex_conv_backward`. In a student's copy it says in one
# line which are not written yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import time

import numpy as np

from minist.images import load_image
from minist.layers.conv import (
    conv2d_backward,
    conv2d_backward_loops,
    conv2d_forward,
    conv2d_forward_loops,
)

LESSON = "01_convolution"
L.begin(LESSON, needs=("ex_conv_forward", "ex_conv_backward"))  # the exercises this lesson runs
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The equation
#
# Input $x \in \mathbb{R}^{N \times C \times H \times W}$ (a batch of $N$ images with $C$
# channels, NCHW layout), weights $w \in \mathbb{R}^{F \times C \times K_H \times K_W}$ ($F$
# filters, each spanning all $C$ input channels), bias $b \in \mathbb{R}^F$, stride $s$ and
# zero padding $P$. Writing $\tilde x$ for $x$ with $P$ zeros added on every side,
#
# $$
# y_{n,f,i,j} = b_f + \sum_{c=0}^{C-1} \sum_{p=0}^{K_H-1} \sum_{q=0}^{K_W-1}
#     w_{f,c,p,q}\; \tilde x_{n,c,\,is+p,\,js+q},
# \qquad y \in \mathbb{R}^{N \times F \times H_o \times W_o},
# $$
#
# $$
# H_o = \left\lfloor \frac{H + 2P - K_H}{s} \right\rfloor + 1, \qquad
# W_o = \left\lfloor \frac{W + 2P - K_W}{s} \right\rfloor + 1 .
# $$
#
# Strictly this is a *cross-correlation* (the kernel is not flipped); every deep-learning
# library calls it convolution. Output $y_{n,f,i,j}$ is the **dot product** of filter $f$ with
# the $C \times K_H \times K_W$ *receptive field* whose top-left corner is $(is, js)$.
# VGG uses $3 \times 3$ kernels, $s = 1$, $P = 1$, so $H_o = H$, $W_o = W$.
#
# ### Worked by hand
# One image, one channel, one $3\times3$ filter, no padding: a $4 \times 4$ input gives a
# $2 \times 2$ output. `conv2d_forward_loops` is the equation above as four nested loops over
# $n, f, i, j$; we print one output element written out as its dot product.

# %%
x = np.array([[[[3, 1, 0, 2], [5, 4, 1, 0], [9, 7, 2, 1], [8, 9, 6, 3]]]], np.float64)  # 4x4
w = np.array([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])  # F=1: a Sobel filter
b = np.array([0.5])
y, _ = conv2d_forward_loops(x, w, b, stride=1, pad=0)
print("x[0, 0] =\n", x[0, 0])
print("w[0, 0] =\n", w[0, 0])
print("y[0, 0] =\n", y[0, 0], " shape", y.shape)

i, j = 1, 0  # one output element, worked out by hand
field = x[0, 0, i : i + 3, j : j + 3]
terms = [f"{w[0, 0, p, q]:g}*{field[p, q]:g}" for p in range(3) for q in range(3)]
by_hand = b[0] + float(np.sum(w[0, 0] * field))
print(f"y[0,0,{i},{j}] = b + sum_pq w[p,q] x[{i}+p,{j}+q] = {b[0]:g} + " + " + ".join(terms))
print(f"             = {by_hand:g}   (conv2d_forward_loops gave {y[0, 0, i, j]:g})")
assert by_hand == y[0, 0, i, j]

# %% [markdown]
# ## 2. im2col: the whole layer as one matrix product
#
# The loops compute $N F H_o W_o$ small dot products. *im2col* copies every receptive field
# into a column of a matrix
#
# $$
# X_{col}[(c,p,q),\,(i,j)] = \tilde x_{c,\,is+p,\,js+q}, \qquad
# X_{col} \in \mathbb{R}^{C K_H K_W \times H_o W_o}
# $$
#
# (one image at a time), and reshapes the weights to $W_{mat} \in \mathbb{R}^{F \times C K_H
# K_W}$, one filter per row. Then all the dot products are a single GEMM, which BLAS (or cuBLAS
# on a GPU) runs near the machine's peak:
#
# $$
# Y = W_{mat}\, X_{col} + b\,\mathbf{1}^\top \in \mathbb{R}^{F \times H_o W_o}.
# $$
#
# `minist.layers.conv.conv2d_forward` builds $X_{col}$ with one strided slice per kernel offset
# $(p, q)$ — $K_H K_W$ vectorised copies instead of $H_o W_o$ tiny ones — and, on the CPU, a
# cache-sized block of output rows at a time. (For VGG's own 3×3, stride-1, pad-1 layers
# minist's `conv2d_forward` may take an even faster route to the same numbers — see its
# docstring; im2col is the general method, used for every shape.) Below, a readable im2col
# written here, its shapes, and the check that all three computations agree.


# %%
def im2col(x_n, KH, KW, stride, pad):
    """Columns of one image ``x_n`` (C, H, W): shape (C*KH*KW, Ho*Wo)."""
    C, H, W = x_n.shape
    xp_ = np.pad(x_n, ((0, 0), (pad, pad), (pad, pad)))  # x tilde
    Ho, Wo = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    cols = np.empty((C, KH, KW, Ho, Wo), x_n.dtype)
    for p in range(KH):
        for q in range(KW):  # X_col[(c,p,q),(i,j)] = x~[c, i s + p, j s + q]
            cols[:, p, q] = xp_[:, p : p + stride * Ho : stride, q : q + stride * Wo : stride]
    return cols.reshape(C * KH * KW, Ho * Wo)


N, C, H, W, F = 2, 3, 7, 6, 4
stride, pad = 2, 1
x = rng.standard_normal((N, C, H, W))
w = rng.standard_normal((F, C, 3, 3))
b = rng.standard_normal(F)

y_loops, _ = conv2d_forward_loops(x, w, b, stride, pad)
y_fast, _ = conv2d_forward(x, w, b, stride, pad)
Ho, Wo = y_fast.shape[2:]
cols = im2col(x[0], 3, 3, stride, pad)
W_mat = w.reshape(F, C * 3 * 3)
Y = W_mat @ cols + b[:, None]  # the GEMM
print(f"x {x.shape}, w {w.shape}, stride {stride}, pad {pad} -> y {y_fast.shape}")
print(f"X_col of image 0: {cols.shape} = (C*KH*KW, Ho*Wo) = ({C}*3*3, {Ho}*{Wo})")
print(f"W_mat: {W_mat.shape};  Y = W_mat @ X_col + b: {Y.shape} -> reshaped to ({F}, {Ho}, {Wo})")
print("max |loops - conv2d_forward|      =", np.abs(y_loops - y_fast).max())
print("max |our im2col GEMM - forward|   =", np.abs(Y.reshape(F, Ho, Wo) - y_fast[0]).max())
assert np.allclose(y_loops, y_fast) and np.allclose(Y.reshape(F, Ho, Wo), y_fast[0])

# %% [markdown]
# The price of im2col is memory: $X_{col}$ holds every input pixel $K_H K_W = 9$ times. That is
# why `conv2d_forward` builds it a block of rows at a time and never keeps it in the cache.
#
# ## 3. Backward: the gradients
#
# Given the upstream gradient $dy = \partial \mathcal{L}/\partial y$ (same shape as $y$), we
# need $dx$, $dw$, $db$. Differentiate the forward equation: $y_{n,f,i,j}$ depends on
# $w_{f,c,p,q}$ through one product and on $\tilde x_{n,c,is+p,js+q}$ through the same product,
# so the chain rule sums over every output that used the variable:
#
# $$
# db_f = \sum_{n,i,j} dy_{n,f,i,j}, \qquad
# dw_{f,c,p,q} = \sum_{n,i,j} dy_{n,f,i,j}\; \tilde x_{n,c,\,is+p,\,js+q},
# $$
#
# $$
# d\tilde x_{n,c,u,v} = \sum_{f} \sum_{\substack{i,j,p,q:\\ is+p=u,\; js+q=v}}
#     dy_{n,f,i,j}\; w_{f,c,p,q}, \qquad dx = d\tilde x \text{ with the padding cropped}.
# $$
#
# * **In loops** (`conv2d_backward_loops`): for each $(n,f,i,j)$, add $w_f\, dy_{n,f,i,j}$ into
#   the receptive field of $d\tilde x$, and $\tilde x_{\text{field}}\, dy_{n,f,i,j}$ into $dw_f$.
# * **As matrices** (`conv2d_backward`): from $Y = W_{mat} X_{col} + b\mathbf 1^\top$,
#   $\;dX_{col} = W_{mat}^\top dY$ and $dW_{mat} = dY X_{col}^\top$. Each input pixel was copied
#   into several columns, so its gradient is the **sum** over its copies: *col2im*, the adjoint
#   of im2col, scatters-and-adds the columns back.
# * **As convolutions** (key step): for stride 1, substitute $p = u - i$, $q = v - j$:
#   $d\tilde x_{c,u,v} = \sum_{f,i,j} dy_{f,i,j}\, w_{f,c,u-i,v-j}$. That is a *true*
#   convolution of $dy$ with $w$, i.e. a cross-correlation of $dy$ (zero-padded by $K-1$, a
#   "full" correlation) with the kernel **flipped** in both spatial axes and with its $f$ and
#   $c$ axes **swapped**. And $dw_{f,c}$ is the cross-correlation of $\tilde x_c$ with
#   $dy_f$. So the backward of a convolution is two more convolutions.
#
# We check the last bullet with the lesson's own code: $dx$ computed by `conv2d_forward`
# itself, run on $dy$ with the flipped, transposed kernel.

# %%
x = rng.standard_normal((2, 3, 6, 5))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
y, cache = conv2d_forward(x, w, b, stride=1, pad=1)
dy = rng.standard_normal(y.shape)
dx, dw, db = conv2d_backward(dy, cache, weight_grads=True)
dx_l, dw_l, db_l = conv2d_backward_loops(dy, cache, weight_grads=True)

K, pad = 3, 1
w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()  # (C, F, K, K), flipped
dx_pad_full, _ = conv2d_forward(dy, w_flipped, np.zeros(3), stride=1, pad=K - 1)  # full corr.
dx_as_conv = dx_pad_full[:, :, pad:-pad, pad:-pad]  # = d x~ cropped to x's size
x_tilde = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
Ho, Wo = dy.shape[2:]
dw_as_corr = np.empty_like(w)
for p in range(K):
    for q in range(K):  # dw[f, c, p, q] = sum_{n,i,j} dy[n,f,i,j] x~[n,c,i+p,j+q]
        shifted = x_tilde[:, :, p : p + Ho, q : q + Wo]
        dw_as_corr[:, :, p, q] = np.einsum("nfij,ncij->fc", dy, shifted)
print("max |dx: col2im - loops|            =", np.abs(dx - dx_l).max())
print("max |dx: col2im - flipped-kernel conv| =", np.abs(dx - dx_as_conv).max())
print("max |dw: fast - loops|              =", np.abs(dw - dw_l).max())
print("max |dw: fast - correlation x~ * dy| =", np.abs(dw - dw_as_corr).max())
print("max |db: fast - sum dy|             =", np.abs(db - dy.sum(axis=(0, 2, 3))).max())
assert np.allclose(dx, dx_as_conv) and np.allclose(dw, dw_as_corr) and np.allclose(dx, dx_l)

# %% [markdown]
# ## 4. The gradient check
#
# Agreement between two implementations of the same derivation proves little if the
# derivation is wrong. The independent test is the definition of the derivative. For the
# scalar $\mathcal{L}(x) = \sum_{n,f,i,j} y_{n,f,i,j}(x)\, dy_{n,f,i,j}$ (whose gradient is
# exactly the backward pass given $dy$), central differences estimate each partial derivative:
#
# $$
# \frac{\partial \mathcal{L}}{\partial x_k} \approx
#     \frac{\mathcal{L}(x + h e_k) - \mathcal{L}(x - h e_k)}{2h},
# $$
#
# with truncation error $O(h^2)$ and rounding error $O(\varepsilon_{mach}\mathcal{L}/h)$. In
# **float64** ($\varepsilon \approx 10^{-16}$) with $h = 10^{-6}$ both are tiny, and a correct
# backward pass gives a relative error around $10^{-9}$ or below; a wrong one gives
# $\gtrsim 10^{-2}$. (In float32, $\varepsilon \approx 10^{-7}$: the check would be useless.)


# %%
# The check lives in `tutorials/lesson_utils.py` (every later lesson uses it); here it is:
import inspect

print(inspect.getsource(L.numerical_gradient))
print(inspect.getsource(L.relative_error))
numerical_gradient, relative_error = L.numerical_gradient, L.relative_error


x = rng.standard_normal((2, 3, 5, 4))
w = rng.standard_normal((3, 3, 3, 3))
b = rng.standard_normal(3)
for stride, pad in [(1, 1), (2, 0), (2, 1)]:
    y, cache = conv2d_forward(x, w, b, stride, pad)
    dy = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(conv2d_forward(x, w, b, stride, pad)[0] * dy))  # noqa: B023

    numeric = {"dx": numerical_gradient(loss, x), "dw": numerical_gradient(loss, w),
               "db": numerical_gradient(loss, b)}
    for name, backward in [("conv2d_backward", conv2d_backward),
                           ("conv2d_backward_loops", conv2d_backward_loops)]:
        analytic = dict(zip(("dx", "dw", "db"), backward(dy, cache, True), strict=True))
        errors = {k: relative_error(analytic[k], numeric[k]) for k in numeric}
        print(f"stride {stride} pad {pad}  {name:22s} relative errors: "
              + ", ".join(f"{k} {e:.1e}" for k, e in errors.items()))
        assert max(errors.values()) < 1e-7, "gradient check failed"

# %% [markdown]
# ## 5. What convolutions do to an image
#
# A filter responds where the image looks like it. Hand-made $3 \times 3$ kernels on the
# grey-level content photo: horizontal and vertical Sobel filters respond to vertical and
# horizontal edges (with a sign: dark-to-bright vs bright-to-dark), the Laplacian to fine
# detail in every direction, and the box filter just blurs. We apply all four as **one**
# `conv2d_forward` call with $F = 4$ filters over $C = 1$ channel. (The thin lines along the
# border are the zero padding: next to $P = 1$ zeros even a flat region looks like an edge.)

# %%
plt = L.pyplot()
size = L.lesson_size(192)
photo = load_image(L.content_image_path(), size)  # (1, 3, H, W) in [0, 1]
gray = photo.mean(axis=1, keepdims=True)  # (1, 1, H, W)
kernels = {
    "Sobel x (vertical edges)": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
    "Sobel y (horizontal edges)": [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],
    "Laplacian (fine detail)": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "box blur": [[1 / 9] * 3] * 3,
}
w_hand = np.array(list(kernels.values()), np.float32)[:, None]  # (F=4, C=1, 3, 3)
responses, _ = conv2d_forward(gray, w_hand, np.zeros(4, np.float32), stride=1, pad=1)

fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
axes[0].imshow(gray[0, 0], cmap="gray", vmin=0, vmax=1)
axes[0].set_title("input (grey)")
for ax, (name, r) in zip(axes[1:], zip(kernels, responses[0], strict=True), strict=True):
    if name == "box blur":
        ax.imshow(r, cmap="gray", vmin=0, vmax=1)
    else:
        lim = np.percentile(np.abs(r), 99.5)  # the zero-padded border would dominate .max()
        ax.imshow(r, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(name, fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle("One conv2d_forward call, four hand-made 3x3 filters (red > 0, blue < 0)")
L.save_figure(fig, LESSON, "hand_made_kernels")

# %% [markdown]
# ### The filters VGG learned
#
# VGG's first layer, `conv1_1`, has 64 filters of shape $3 \times 3 \times 3$ (RGB). Shown as
# tiny colour images (each rescaled to its own range), many are oriented edge detectors like
# Sobel's, some are colour-opponent (green vs magenta, blue vs yellow) and some are
# near-constant colour blobs. With random weights there is nothing to see, and the lesson says
# so.

# %%
from minist.weights.store import load_weights  # noqa: E402

choice = L.find_weights()
L.say(f"weights: {choice.note}")
if choice.real:
    w1 = load_weights(choice.path).params["conv1_1"][0]  # (64, 3, 3, 3), network channel order
    prep = load_weights(choice.path).preprocessing
    if prep.channel_order == "BGR":
        w1 = w1[:, ::-1]  # show as RGB
    fig, axes = plt.subplots(4, 16, figsize=(12, 3.2))
    for f, ax in enumerate(axes.flat):
        k = w1[f].transpose(1, 2, 0)
        ax.imshow((k - k.min()) / (k.max() - k.min() + 1e-12), interpolation="nearest")
        ax.axis("off")
    fig.suptitle(f"the 64 conv1_1 filters of {choice.path.name} (each scaled to its own range)")
    L.save_figure(fig, LESSON, "conv1_1_filters")
else:
    L.say("(no real weights: skipping the conv1_1 filter figure -- random filters show nothing)")

# %% [markdown]
# ## 6. Loops vs im2col: timing
#
# Same equation, same numbers, but the loops make one tiny NumPy call per output element,
# while im2col + GEMM hands all of them to one optimised routine. We time the loops, this
# lesson's own `im2col` followed by the GEMM, and minist's `conv2d_forward`; expect the last
# two to be orders of magnitude faster than the first. Best of a few runs, to be robust to a
# busy machine. (On the CPU, `conv2d_forward` computes 3×3 layers with 16 or more input
# channels by Winograd's algorithm — section 7 — so it agrees with the loops to float32
# rounding, not bit for bit.)

# %%
def best_time(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


x = rng.standard_normal((1, 16, 32, 32)).astype(np.float32)
w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
b = np.zeros(16, np.float32)
t_loops = best_time(lambda: conv2d_forward_loops(x, w, b, 1, 1))
t_ours = best_time(lambda: w.reshape(16, -1) @ im2col(x[0], 3, 3, 1, 1) + b[:, None], 10)
t_fast = best_time(lambda: conv2d_forward(x, w, b, 1, 1), repeats=10)
print(f"x {x.shape}, w {w.shape}: loops {t_loops * 1e3:.1f} ms; our im2col + GEMM "
      f"{t_ours * 1e3:.3f} ms ({t_loops / t_ours:.0f}x faster); conv2d_forward "
      f"{t_fast * 1e3:.3f} ms ({t_loops / t_fast:.0f}x faster)")
y_loops = conv2d_forward_loops(x, w, b)[0]
assert np.abs(conv2d_forward(x, w, b)[0] - y_loops).max() < 1e-5 * np.abs(y_loops).max()

# %% [markdown]
# ## 7. Fewer multiplications: Winograd
#
# A 3×3 convolution computes each output from 9 products per input channel. Winograd's
# minimal filtering algorithm gets an m×m tile of outputs from (m+2)² products instead of 9m²
# by evaluating the input tile and the filter as polynomials at a few points, multiplying
# pointwise and interpolating back: `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`. Summed over channels, the
# pointwise products become (m+2)² matrix products. F(2×2, 3×3) does 2.25× fewer
# multiplications, F(4×4, 3×3) 4× fewer; the price is rounding: the transforms of F(4×4)
# multiply by up to 8 and divide by 24. The derivation, with the matrices, is the docstring of
# `minist/layers/winograd.py`; here we check it against float64 loops.

# %%
from minist.layers import winograd  # noqa: E402

x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
y64 = conv2d_forward_loops(x64, w64, b64)[0]
scale = np.abs(y64).max()
for name, y32 in [("direct (loops), float32", y_loops),
                  ("Winograd F(2x2, 3x3), float32", winograd.winograd_conv3x3(x, w, b, m=2)),
                  ("Winograd F(4x4, 3x3), float32", winograd.winograd_conv3x3(x, w, b, m=4))]:
    print(f"{name:32s} max error / max |y| = {np.abs(y32 - y64).max() / scale:.1e}")
assert np.abs(winograd.winograd_conv3x3(x64, w64, b64, m=4) - y64).max() < 1e-10 * scale

# %% [markdown]
# ## Exercise
#
# In the student version of the repository these bodies are replaced by a "not implemented"
# marker; write them from the equations above (loops are fine — clarity first):
#
# * **`ex_conv_forward`** — `minist.layers.conv.conv2d_forward_loops` (section 1). Check:
#   `python tutorials/check.py ex_conv_forward` (or `pytest -m ex_conv_forward`)
# * **`ex_conv_backward`** — `minist.layers.conv.conv2d_backward_loops` (section 3). Check:
#   `python tutorials/check.py ex_conv_backward` (or `pytest -m ex_conv_backward`)
#
# The checks compare with the fast reference implementation, run finite differences in float64
# and try random shapes, strides and paddings. Then rerun this lesson: every `assert` in it
# must still pass.
