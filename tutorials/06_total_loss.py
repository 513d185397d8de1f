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
# # Lesson 6 — The total loss and the α/β trade-off
#
# Lessons 4 and 5 built two losses: content (match a photo's features) and style (match a
# painting's Gram matrices). Style transfer minimises a weighted sum of the two. This lesson
# writes the sum (Eq. 7), adds the optional total-variation smoothness term, explains how minist
# scales each layer's term so that one pair of weights suits any network, and reproduces the
# idea of the paper's Figure 3: a grid of results as the style weight grows.
#
# Run it: `python tutorials/06_total_loss.py` from the repository root (or open it as a notebook
# with Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick.
#
# Exercises it runs: `ex_relu`, `ex_vgg_backward`, `ex_content_loss`, `ex_gram`, `ex_style_loss`,
# `ex_tv_loss`. In a student's copy it says in one line which are not written yet, and skips (or
# stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import time

import numpy as np

from minist.images import load_image
from minist.losses import reference
from minist.objective import style_normaliser
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import VGGWeights, load_weights

LESSON = "06_total_loss"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_relu", "ex_vgg_backward", "ex_content_loss", "ex_gram", "ex_style_loss", "ex_tv_loss",
))
plt = L.pyplot()

# %% [markdown]
# ## 1. Eq. 7: one objective, two (or three) terms
#
# With $\vec p$ the photo, $\vec a$ the painting and $\vec x$ the image being generated:
#
# $$\mathcal{L}_{total}(\vec p, \vec a, \vec x) = \alpha\,\mathcal{L}_{content}(\vec p, \vec x)
#   + \beta\,\mathcal{L}_{style}(\vec a, \vec x) + \lambda_{TV}\,\mathcal{L}_{TV}(\vec x).$$
#
# * $\mathcal{L}_{content} = \tfrac12\sum_{ij}(F^l_{ij} - P^l_{ij})^2$ at the content layer
#   (Eq. 1; default relu4_2) — `minist.losses.reference.content_loss`, lesson 4.
# * $\mathcal{L}_{style} = \sum_l w_l E_l$ over the style layers (Eq. 5; default relu1_1 …
#   relu5_1) — `minist.losses.reference.style_loss`, lesson 5.
# * $\mathcal{L}_{TV}$ is **not** in the paper: a smoothness prior (the total variation of
#   Mahendran & Vedaldi with their exponent set to 2 — the value at which their isotropic and
#   anisotropic forms coincide, a plain sum of squared differences) that penalises differences
#   between neighbouring pixels, summed over channels and over the differences that exist:
#
# $$\mathcal{L}_{TV}(x) = \sum_{c}\Big[\sum_{i=0}^{H-2}\sum_{j}(x_{c,i+1,j}-x_{c,i,j})^2
#   + \sum_{i}\sum_{j=0}^{W-2}(x_{c,i,j+1}-x_{c,i,j})^2\Big].$$
#
#   Pixel $x_{i,j}$ appears in up to four differences, so
#   $\partial\mathcal{L}_{TV}/\partial x_{i,j} = 2(x_{i,j}-x_{i-1,j}) - 2(x_{i+1,j}-x_{i,j})
#   + 2(x_{i,j}-x_{i,j-1}) - 2(x_{i,j+1}-x_{i,j})$, dropping neighbours outside the image.
#   Code: **`minist.losses.reference.tv_loss(image)`**; $\lambda_{TV}$ is `tv_weight`
#   (default 0: off, as in the paper).
#
# The sum is **`minist.losses.reference.total_loss(content, style, tv, alpha, beta,
# tv_weight)`**. Being linear, the same combination of the three *gradients* is the gradient of
# the total; `minist.stylize.StyleTransfer.evaluate` computes the parts, backpropagates the
# feature gradients through VGG in one pass and adds $\lambda_{TV}\nabla\mathcal{L}_{TV}$.
#
# **Check.** A finite-difference check of the TV gradient in float64.

# %%
rng = np.random.default_rng(0)
image = rng.uniform(0, 1, (1, 3, 7, 9))
value, grad = reference.tv_loss(image)
worst = 0.0
for _ in range(30):
    idx = tuple(int(rng.integers(s)) for s in image.shape)
    plus, minus = image.copy(), image.copy()
    plus[idx] += 1e-6
    minus[idx] -= 1e-6
    numeric = (float(reference.tv_loss(plus)[0]) - float(reference.tv_loss(minus)[0])) / 2e-6
    worst = max(worst, abs(numeric - grad[idx]) / max(abs(numeric), 1e-12))
L.say(f"L_TV = {float(value):.4f}; TV gradient vs finite differences: max rel. error {worst:.1e}")
assert worst < 1e-6
flat = np.full((1, 3, 7, 9), 0.3)
L.say(f"L_TV of a flat image = {float(reference.tv_loss(flat)[0])} (smooth images cost nothing)")

# %% [markdown]
# ## 2. Why minist normalises each layer's term
#
# The paper's values of $\alpha/\beta$ ($10^{-3}$, $10^{-4}$) were tuned for *one* network: the
# original Caffe VGG, which takes pixels in 0–255 (BGR, mean-subtracted). torchvision's VGGs
# take pixels in 0–1 divided by a standard deviation of about 0.23, so their activations are
# roughly $255 \times 0.23 \approx 60$ times smaller — not exactly, since the weights were
# trained separately. The content loss is quadratic in the features and the style loss is
# *quartic* (a squared difference of products of features), so the raw terms differ by about
# $10^{3\text{–}4}$ and $10^{7\text{–}8}$ between the two kinds of weights, and no single
# $(\alpha, \beta)$ suits both.
#
# With `normalize=True` (the default of `minist.options.StylizeOptions`) minist divides each
# layer's term, once, by the energy of its own target:
#
# $$\hat{\mathcal{L}}^l_{content} = \frac{\tfrac12\sum(F^l - P^l)^2}{\sum (P^l)^2}, \qquad
#   \hat E_l = \frac{E_l}{\sum (A^l)^2 / (4N_l^2)} = \frac{\sum(G^l - A^l)^2}{\sum(A^l)^2}.$$
#
# Each term is now a *relative* squared error: dimensionless, 0 when matched, and fixed when
# the features are as far from the target as the target is from zero (all features 0): then
# $\hat{\mathcal{L}}^l_{content} = \tfrac12$ and $\hat E_l = 1$ — whatever the network's
# scale. The normalisers are computed once from the targets
# (`minist.objective.content_normaliser` and `style_normaliser`, kept on each loss term:
# `StyleTransfer.objective.terms`). `normalize=False` gives the paper's raw values.
#
# **Check.** Below, the raw and normalised style losses $E_l$ of the photo against the
# painting's Grams, for the weights you have and — when `../shared` is there — for the real
# Caffe-style VGG-19 layers conv1_1 … conv3_4 (`vgg19-partial-conv1_1-conv3_4.npz`).

# %%
choice = L.find_weights()
L.say(choice.note)
net = VGG(load_weights(choice.path))
networks = {f"{choice.path.name} ({net.preprocessing.channel_order}, 0-"
            f"{net.preprocessing.pixel_scale:g})": net}
partial = L.SHARED / "weights" / "vgg19-partial-conv1_1-conv3_4.npz"
if partial.is_file():
    from minist.weights.convert import read_params

    _, params, prep, licence = read_params(partial, "npz")
    networks[f"{partial.name} (BGR, 0-255)"] = VGG(
        VGGWeights("vgg19", params, prep, partial.name, licence))
else:
    L.say(f"({partial} not found: showing only the weights you have)")

check_size = L.lesson_size(128 if not L.FAST else 64)
content_path, style_path = L.content_image_path(), L.style_image_path()
photo, painting = load_image(content_path, check_size), load_image(style_path, check_size)
layers = ["relu1_1", "relu2_1", "relu3_1"]
L.say(f"{'weights':<48}{'layer':>9}{'raw E_l':>12}{'normalised':>12}")
for label, network in networks.items():
    x_feats, _ = network.forward(photo, layers)
    a_feats, _ = network.forward(painting, layers)
    for name in layers:
        A = reference.gram_matrix(a_feats[name])
        E, _ = reference.style_layer_loss(reference.feature_matrix(x_feats[name]), A)
        normaliser = style_normaliser(A)  # what each style term of the engine carries
        L.say(f"{label:<48}{name:>9}{float(E):>12.3e}{float(E) * normaliser:>12.3f}")

# %% [markdown]
# The raw values differ by orders of magnitude from layer to layer and from one network to the
# other; the normalised ones are all of order 1 and similar for both networks. That is why, in
# minist, `content_weight` $=\alpha = 1$ and `style_weight` $=\beta \approx 10^3$ work for any
# weights, and why the paper's $\alpha/\beta$ numbers do not carry over to minist unchanged.
# (Each layer's term also gets its weight $w_l$, equal and summing to 1 by default.)
#
# ## 3. The α/β trade-off (the paper's Figure 3)
#
# Start from the photo (`init="content"`) and minimise Eq. 7 for $\beta/\alpha$ growing by
# factors of 10, from $10^{-1}$ to $10^3$. Small $\beta/\alpha$: the photo barely changes.
# Large: the painting's colours and strokes take over. Rows: two sets of style layers — only
# the first two (fine-grained texture: colours and small strokes) or all five (larger
# structures too, as in lesson 5).

# %%
size = L.lesson_size(128 if not L.FAST else 64)
iters = L.iterations(80, 12)
betas = [1e-1, 1e0, 1e1, 1e2, 1e3]
reach = [n for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
         if n in net.layer_names]
layer_sets = {"relu1_1, relu2_1": reach[:2], f"relu1_1 ... {reach[-1]}": reach}
content_layers = ["relu4_2"] if "relu4_2" in net.layer_names else [net.layer_names[-1]]
L.say(f"{size} px, {iters} L-BFGS iterations per run, content layer {content_layers[0]}")

results = {}
for row, style_layers in layer_sets.items():
    for beta in betas:
        start = time.perf_counter()
        st = StyleTransfer(content_path, style_path, network=net, size=size, iters=iters,
                           content_weight=1.0, style_weight=beta, content_layers=content_layers,
                           style_layers=style_layers, init="content", optimizer="lbfgs")
        image = st.run()
        last = st.evaluate(st.image)  # the losses of the final image
        results[row, beta] = (image, last.content, last.style)
        L.say(f"{row:<20} beta/alpha = {beta:>7g}: content {last.content:.3f}, "
              f"style {last.style:.4f}  ({time.perf_counter() - start:.1f} s)")

# %% [markdown]
# ## 4. What to see
#
# Two figures: the grid of images (`alpha_beta_grid.png`) and, in a second figure, the same
# trade-off in numbers (`tradeoff_curves.png`).
#
# In each row of the grid, left to right ($\beta/\alpha$ growing), the photo's sky, water and
# façades fill with the painting's colours and strokes, and on the curves the final content loss
# rises while the style loss falls. The rows differ in *what* the style adds. With relu1_1 and
# relu2_1 only (upper row) the strokes stay small: even at $\beta/\alpha = 10^3$ the houses are
# clearly recognisable under a skin of short blue and yellow strokes. With all five layers
# (lower row) the sky turns into large swirls like the painting's from $\beta/\alpha = 10$ on,
# and by $10^3$ the houses are outlines under the strokes; its curves flatten above
# $\beta/\alpha = 100$, where the content term no longer holds the image back (content loss
# near 0.8, against 0.17 for the upper row at $10^3$). That is the normal size (128 px,
# 80 iterations). In the fast CI mode (64 px, 12 iterations) the lower row shows only hints of
# the swirls, the images at $\beta/\alpha = 100$ and $10^3$ look alike (12 iterations cannot
# lower the style loss further: the curves flatten from 10 on), and the houses stay
# recognisable everywhere. (With random weights none of this appears: you see noise patterns.)

# %%
photo_small = load_image(content_path, size)
fig, axes = plt.subplots(len(layer_sets), len(betas) + 1,
                         figsize=(2.8 * (len(betas) + 1), 2.4 * len(layer_sets)))
for r, row in enumerate(layer_sets):
    axes[r, 0].imshow(L.to_hwc(photo_small if r == 0 else load_image(style_path, size)))
    axes[r, 0].set_title("content" if r == 0 else "style", fontsize=9)
    for c, beta in enumerate(betas):
        axes[r, c + 1].imshow(L.to_hwc(results[row, beta][0]))
        axes[r, c + 1].set_title(f"beta/alpha = {beta:g}\n{row}", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("More style as beta/alpha grows" + ("" if choice.real else " (RANDOM weights)"))
L.save_figure(fig, LESSON, "alpha_beta_grid")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
for row, marker in zip(layer_sets, "os", strict=True):
    ax.loglog(betas, [results[row, b][1] for b in betas], f"-{marker}", color="C0",
              label=f"content ({row})")
    ax.loglog(betas, [results[row, b][2] for b in betas], f"--{marker}", color="C3",
              label=f"style ({row})")
ax.set_xlabel("beta / alpha")
ax.set_ylabel("final loss (normalised)")
ax.legend(fontsize=8)
L.save_figure(fig, LESSON, "tradeoff_curves")

# %% [markdown]
# ## Exercise
#
# * **`ex_tv_loss`** — implement `minist.losses.reference.tv_loss(image)`: the value and the
#   gradient above, on NumPy and CuPy alike. Check: `python tutorials/check.py ex_tv_loss`
#   (or `pytest -m ex_tv_loss`).
#
# Try afterwards: add `tv_weight=1e-3` to the runs and see the grain disappear; set
# `normalize=False` with Caffe-style and with torchvision weights and find the $\beta$ each one
# needs.
