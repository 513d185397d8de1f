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
# # Lesson 5 — Gram matrices, the style loss and texture synthesis
#
# Gatys et al. describe the *style* of an image by which filters of a layer fire **together**,
# wherever in the image that happens. This lesson writes that idea as equations (Eq. 3–6 of the
# paper), finds them in minist, checks the gradient numerically, and then synthesises textures
# from white noise using more and more layers — the upper row of the paper's Figure 1.
#
# Run it: `python tutorials/05_gram_and_style.py` from the repository root (or open it as a
# notebook with Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick.
#
# Exercises it runs: `ex_gram` and `ex_style_loss` (this lesson), `ex_relu` (lesson 02) and
# `ex_vgg_backward` (lesson 03) for the texture synthesis. In a student's copy a section whose
# exercise is not written yet says so in one line and is skipped.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import time

import numpy as np

from minist.losses import reference
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import load_weights

LESSON = "05_gram_and_style"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_gram", "ex_style_loss", "ex_relu", "ex_vgg_backward",
))
plt = L.pyplot()

# %% [markdown]
# ## 1. From feature maps to a Gram matrix (Eq. 3)
#
# At layer $l$ the network has $N_l$ filters, each giving a feature map of $H_l \times W_l$
# positions. Flatten every map into a row and stack the rows: the **feature matrix**
# $F^l \in \mathbb{R}^{N_l \times M_l}$ with $M_l = H_l W_l$
# (`minist.losses.reference.feature_matrix`).
#
# The **Gram matrix** holds the inner products between all pairs of rows:
#
# $$G^l_{ij} = \frac{1}{M_l} \sum_{k=1}^{M_l} F^l_{ik} F^l_{jk},
# \qquad G^l \in \mathbb{R}^{N_l \times N_l}.$$
#
# $G^l_{ij}$ is large when filters $i$ and $j$ are active at the *same positions*. The sum over
# $k$ throws away *where* that happens: shuffle the columns of $F^l$ and $G^l$ does not change.
# That is why a Gram matrix describes a texture and not a scene.
#
# Code: **`minist.losses.reference.gram_matrix(F)`** (exercise `ex_gram`). The sum over $k$ is
# one you have met in linear algebra: write $G^l$ without Python loops, as an expression in
# $F^l$ that NumPy evaluates in one call. (The functions used by the style transfer loop,
# `minist.losses.gram_matrix` and friends, dispatch to the same reference code or to faster
# kernels giving the same numbers.)
#
# The paper's Eq. 3 has no $1/M_l$; minist divides here so that Gram matrices of images of
# different sizes can be compared, and compensates in $E_l$ — see section 3.

# %%
rng = np.random.default_rng(0)
N, H, W = 8, 6, 5
activation = rng.standard_normal((1, N, H, W))  # float64: the precision for checking maths
F = reference.feature_matrix(activation)  # (N, M) view of (1, N, H, W)
GRAM = L.ready("ex_gram", what="section 1's Gram matrix and the sections that use it (2-5)")
if GRAM:
    G = reference.gram_matrix(F)
    shuffled = F[:, rng.permutation(F.shape[1])]  # the same features at other positions
    L.say(
        f"F: {F.shape} (N_l={N}, M_l={H * W}),  G: {G.shape}",
        f"G symmetric:                         {np.allclose(G, G.T)}",
        f"G positive semi-definite (min eig):  {np.linalg.eigvalsh(G).min():.2e} >= 0",
        f"G unchanged by shuffling positions:  {np.allclose(G, reference.gram_matrix(shuffled))}",
    )

# %% [markdown]
# ## 2. The style loss of one layer, of all layers, and its gradient (Eq. 4–6)
#
# With $A^l$ the Gram matrix of the *style* image (the painting) and $G^l$ that of the image
# being generated, layer $l$ contributes
#
# $$E_l = \frac{1}{4 N_l^2} \sum_{i,j} \big(G^l_{ij} - A^l_{ij}\big)^2 \qquad \text{(Eq. 4)}$$
#
# and the style loss weighs the chosen layers ($w_l = 1/|\mathcal{S}|$ for the set $\mathcal{S}$ of
# style layers, as in the paper):
#
# $$\mathcal{L}_{style} = \sum_l w_l E_l. \qquad \text{(Eq. 5)}$$
#
# **Gradient (Eq. 6) — derive it yourself** (exercise `ex_style_loss`). Work with
# differentials: change $F$ by a small $dF$ and write the change $dE_l$ to first order.
#
# 1. $E_l$ is a sum of squares of $G - A$: what is $dE_l$ in terms of $dG$?
# 2. $G$ is quadratic in $F$: what is $dG$ in terms of $dF$ (two terms)?
# 3. $G - A$ is symmetric: use it to merge the two terms into one, and read off
#    $\partial E_l / \partial F^l$ from $dE_l = \sum_{ik} \big(\partial E_l/\partial F^l\big)_{ik}
#    \, dF_{ik}$, as a matrix product of shape $N_l \times M_l$.
#
# Which factors of $N_l$ and $M_l$ does it carry? The gradient check below (and
# `python tutorials/check.py ex_style_loss`) tells you whether you got them right.
#
# The paper also writes "$0$ where $F^l_{ij} < 0$": that mask is the ReLU's backward pass, which
# the network applies (`minist.layers.relu.relu_backward`), not the loss.
#
# Code: **`minist.losses.reference.style_layer_loss(F, A)`** returns $(E_l, \partial E_l /
# \partial F^l)$; **`minist.losses.reference.style_loss(features, targets, layer_weights)`**
# sums Eq. 5 over layers and returns every layer's gradient.
#
# **Gradient check.** Perturb one entry of $F$ by $\pm h$ and compare the central difference
# $\big(E(F + h e_{ik}) - E(F - h e_{ik})\big) / 2h$ with the analytic gradient, in float64.

# %%
STYLE = GRAM and L.ready("ex_style_loss", what="section 2's gradient check, section 3 and "
                         "sections 4-5 (the texture synthesis minimises the style loss)")
if STYLE:
    A = reference.gram_matrix(rng.standard_normal((N, H * W)))  # a "style" Gram of this layer
    E, dF = reference.style_layer_loss(F, A)


def central_difference(f, x, index, h=1e-6):
    """(f(x + h e) - f(x - h e)) / 2h for the unit vector e at ``index``."""
    x_plus, x_minus = x.copy(), x.copy()
    x_plus[index] += h
    x_minus[index] -= h
    return (float(f(x_plus)) - float(f(x_minus))) / (2 * h)


if STYLE:
    F_copy = np.ascontiguousarray(F)
    worst = 0.0
    for _ in range(20):
        index = (rng.integers(N), rng.integers(H * W))
        numeric = central_difference(lambda x: reference.style_layer_loss(x, A)[0], F_copy, index)
        worst = max(worst, abs(numeric - dF[index]) / max(abs(numeric), abs(dF[index]), 1e-12))
    L.say(f"E_l = {float(E):.6f};  gradient check over 20 entries: max relative error "
          f"{worst:.1e}")
    assert worst < 1e-6, "the analytic style gradient disagrees with finite differences"

    # Eq. 5 over two layers: the total is the weighted sum, each gradient scaled by its w_l.
    F2 = rng.standard_normal((4, 9))
    A2 = reference.gram_matrix(rng.standard_normal((4, 9)))
    weights = {"relu1_1": 0.25, "relu2_1": 0.75}
    total, grads = reference.style_loss({"relu1_1": F, "relu2_1": F2},
                                        {"relu1_1": A, "relu2_1": A2}, weights)
    expected = 0.25 * float(E) + 0.75 * float(reference.style_layer_loss(F2, A2)[0])
    L.say(f"style_loss = {float(total):.6f}, sum_l w_l E_l = {expected:.6f}")
    assert np.isclose(float(total), expected) and np.allclose(grads["relu1_1"], 0.25 * dF)

# %% [markdown]
# ## 3. Where does the $1/M_l$ go? (divide once, not twice)
#
# The paper uses the *un-normalised* Gram $\hat G = M_l G$ and puts the size into the
# loss: $E_l = \frac{1}{4 N_l^2 M_l^2} \sum (\hat G - \hat A)^2$. Substituting
# $\hat G = M_l G$ gives $\frac{1}{4N_l^2 M_l^2}\sum M_l^2 (G-A)^2 = \frac{1}{4N_l^2}\sum(G-A)^2$:
# **the same number** as minist's. The $1/M_l$ is applied exactly once — inside the Gram
# (minist) or in $E_l$ (the paper).
#
# Some write-ups of the method put $1/M_l$ in the Gram
# *and* keep $1/M_l^2$ in $E_l$. That divides by $M_l$ twice: the loss then shrinks by $M_l^2$
# and the right style weight depends on the image size. The check below takes a feature map and
# the same texture twice as wide (the map tiled side by side, so $M_l$ doubles): minist's $E_l$
# and the paper's are equal and do not change; the "twice" version drops by a factor of 4.

# %%
def paper_style_loss(F, F_style):
    """The paper's Eq. 4 with un-normalised Grams M_l G."""
    n, m = F.shape
    D = m * reference.gram_matrix(F) - m * reference.gram_matrix(F_style)
    return (D * D).sum() / (4 * n**2 * m**2)


if STYLE:
    F_style = rng.standard_normal((N, H * W))
    for name, Fx, Fs in (("M_l", F, F_style),
                         ("2 M_l (tiled)", np.hstack([F, F]), np.hstack([F_style, F_style]))):
        E_minist = float(reference.style_layer_loss(Fx, reference.gram_matrix(Fs))[0])
        m = Fx.shape[1]
        L.say(f"{name:>14}: minist {E_minist:.6f}   paper {paper_style_loss(Fx, Fs):.6f}   "
              f"1/M twice {E_minist / m**2:.3e}")
        assert np.isclose(E_minist, paper_style_loss(Fx, Fs))

# %% [markdown]
# ## 4. Texture synthesis: matching Gram matrices from white noise
#
# Now the real network. Start from white noise $\vec x$ and change its pixels by L-BFGS until its
# Gram matrices at a set of layers match the painting's: minimise $\mathcal{L}_{style}$ alone
# (content weight $\alpha = 0$, `init="noise"`). We use `minist.stylize.StyleTransfer`, which
# computes the targets $A^l$, evaluates Eq. 5 and its gradient, backpropagates through VGG
# (`minist.vgg.vgg_backward`) and runs the optimizer.
#
# Following Figure 1 of the paper we use growing sets of layers:
# $\{\text{relu1\_1}\}$, $\{\text{relu1\_1}, \text{relu2\_1}\}$, … up to relu5_1.
# minist normalises each layer's term by its target's energy (lesson 6), so the layers count
# equally whatever their scale.
#
# **Which weights.** `L.find_weights()` picks the real VGG you have (`weights/vgg19.h5` or
# `weights/vgg16.h5`; in CI, the real VGG-16 in `../shared`). If all you have is the *partial*
# real VGG-19 (`../shared/weights/vgg19-partial-conv1_1-conv3_4.npz`, conv1_1 … conv3_4), convert
# it with `minist weights convert <that file> -o weights/vgg19.h5 --arch vgg19`: the lesson then
# synthesises from relu1_1, relu2_1 and relu3_1 only (the deeper layers are not in the file).

# %%
SYNTHESIS = STYLE and L.ready("ex_relu", "ex_vgg_backward",
                              what="section 4's texture synthesis and section 5's figures")
choice = L.find_weights()
L.say(choice.note)
net = VGG(load_weights(choice.path))
layers = [n for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
          if n in net.layer_names]
subsets = [layers[: k + 1] for k in range(len(layers))]
if len(layers) < 5:
    L.say(f"these weights reach only {net.layer_names[-1]}: synthesising from {layers}")

size = L.lesson_size(128 if not L.FAST else 96)
iters = L.iterations(200, 40)
style_path = L.style_image_path()
L.say(f"style image: {style_path}; {size} px, {iters} L-BFGS iterations per layer set")

# %% [markdown]
# First, a look at what the targets are: the style image and the Gram matrices $A^l$ of two
# layers, each entry divided by $\sqrt{A_{ii} A_{jj}}$ so that it lies in $[0, 1]$ (bright: the
# two filters fire together; dark rows: filters that hardly fire on this painting).

# %%
from minist.images import load_image

style_image = load_image(style_path, size)
if SYNTHESIS:
    feats, _ = net.forward(style_image, layers[:2])
    fig, axes = plt.subplots(1, 1 + len(feats), figsize=(4 * (1 + len(feats)), 4))
    axes[0].imshow(L.to_hwc(style_image))
    axes[0].set_title("style image")
    for ax, (name, act) in zip(axes[1:], feats.items(), strict=True):
        gram = reference.gram_matrix(act)
        energy = np.sqrt(np.maximum(np.diag(gram), 1e-12))
        ax.imshow(gram / np.outer(energy, energy), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{name}: " + r"$A_{ij} / \sqrt{A_{ii} A_{jj}}$"
                     + f", {len(gram)}x{len(gram)}")
    for ax in axes:
        ax.axis("off")
    L.save_figure(fig, LESSON, "gram_matrices")

# %%
textures, losses_per_subset = [], []
for subset in subsets if SYNTHESIS else []:
    start = time.perf_counter()
    st = StyleTransfer(style_path, style_path, network=net, size=size, iters=iters,
                       content_weight=0.0, content_layers=[], style_layers=subset,
                       init="noise", optimizer="lbfgs", seed=0)
    textures.append(st.run())
    losses_per_subset.append([r.style for r in st.history])
    L.say(f"layers up to {subset[-1]}: style loss {st.history[0].style:.3g} -> "
          f"{st.history[-1].style:.3g} in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## 5. What to see
#
# Left to right, each panel matches the Gram matrices of one more layer. With relu1_1 alone the
# result is blotches of the painting's colours — right colours, right proportions, but no strokes:
# relu1_1 only sees $3\times3$ pixel patches. Adding relu2_1 brings short brush strokes; with
# relu3_1 and relu4_1 the strokes get longer and curl into small swirls; relu5_1 adds the largest,
# most irregular structures (and a little grain: its few positions are hard to match exactly in
# 200 iterations; the loss curves below flatten higher for deeper sets). The structures grow with
# the layers because deeper layers have larger receptive fields — while the arrangement of the
# scene (the sky above, the village below, the cypress) is gone everywhere: Gram matrices keep no
# "where". The effect is clearest at the normal size (128 px, 200 iterations); in the fast CI mode
# (96 px, 40 iterations) relu1_1 alone already shows some small structure and the deep-layer
# textures are still grainy. (With random weights — see the note printed above — none of this
# appears: you see noise patterns, not the painting's texture.)

# %%
n = len(textures)
if n:
    fig, axes = plt.subplots(2, (n + 2) // 2, figsize=(4.5 * ((n + 2) // 2), 6.5))
    axes = axes.ravel()
    axes[0].imshow(L.to_hwc(style_image))
    axes[0].set_title("style image")
    for k, (ax, texture, subset) in enumerate(zip(axes[1 : n + 1], textures, subsets, strict=True)):
        ax.imshow(L.to_hwc(texture))
        ax.set_title(subset[0] if k == 0 else f"... + {subset[-1]}")
    for ax in axes:
        ax.axis("off")
    fig.suptitle("Texture synthesis from white noise: Gram matrices of growing layer sets"
                 + ("" if choice.real else " (RANDOM weights)"))
    L.save_figure(fig, LESSON, "texture_synthesis")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for subset, curve in zip(subsets, losses_per_subset, strict=True):
        ax.semilogy(curve, label=f"up to {subset[-1]}")
    ax.set_xlabel("L-BFGS iteration")
    ax.set_ylabel("style loss (normalised)")
    ax.legend()
    L.save_figure(fig, LESSON, "texture_loss")

# %% [markdown]
# ## Exercises
#
# * **`ex_gram`** — implement `minist.losses.reference.gram_matrix(F)` (Eq. 3, with the
#   $1/M_l$). Check: `python tutorials/check.py ex_gram` (or `pytest -m ex_gram`).
# * **`ex_style_loss`** — implement `minist.losses.reference.style_layer_loss(F, A)` (Eq. 4 and
#   its gradient Eq. 6; the value must equal the paper's). Check:
#   `python tutorials/check.py ex_style_loss` (or `pytest -m ex_style_loss`).
#
# The checks compare with finite differences, with properties (symmetry, invariance to
# shuffling positions, the paper's un-normalised formula) and with the teacher's values on a few
# seeded inputs.
# Try afterwards: synthesise with `pooling="avg"` (the paper's choice for images), or from
# another painting (`MINIST_STYLE=path/to/painting.jpg`).
