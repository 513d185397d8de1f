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
# # Lesson 11 — Spatial control: guided Gram matrices, masks, several styles
#
# A Gram matrix forgets *where* (lesson 5): the style loss asks the whole image to have the
# painting's statistics. Gatys, Ecker, Bethge, Hertzmann & Shechtman (2017, "Controlling
# Perceptual Factors in Neural Style Transfer", §4) give the "where" back with **guides**: a
# mask per region, drawn on the photo, that weights the positions entering each region's Gram
# matrix. This lesson writes the guided Gram matrix and its gradient, follows a mask through
# the layers of VGG (two ways: *simple* and *inside*), shows why blending the Gram matrices of
# several paintings is the same optimisation as blending their losses, and paints the left
# half of a photo after one painting and the right half after another.
#
# Run it: `python tutorials/11_spatial_control.py` from the repository root (or open it as a
# notebook with Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick.
#
# Exercises it runs: `ex_guided_gram`, `ex_relu`, `ex_vgg_backward`, `ex_content_loss`, `ex_gram`,
# `ex_style_loss`, `ex_tv_loss`. In a student's copy it says in one line which are not written
# yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import os
import time

import numpy as np

from minist.images import load_image
from minist.losses import reference
from minist.masks import (DEFAULT_MASK_MODE, MASK_MODES, normalise_guide,
                          propagate_mask)
from minist.objective import style_normaliser
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import load_weights

LESSON = "11_spatial_control"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_guided_gram", "ex_relu", "ex_vgg_backward", "ex_content_loss", "ex_gram",
    "ex_style_loss", "ex_tv_loss",
))
plt = L.pyplot()

# %% [markdown]
# ## 1. The guided Gram matrix and its gradient
#
# At layer $l$ the features are $F \in \mathbb{R}^{N_l \times M_l}$ (lesson 5). A **guide**
# $T \in \mathbb{R}^{M_l}$ gives every position $k$ a weight $T_k \ge 0$ — the region's mask
# brought to this layer (section 2) — shared by all channels. The guided Gram matrix weights
# each position's features by it before correlating them:
#
# $$G_T = \frac{1}{M_l}(F \circ T)(F \circ T)^\top, \qquad
#   (G_T)_{ij} = \frac{1}{M_l}\sum_k T_k^2\, F_{ik} F_{jk},$$
#
# with $(F \circ T)_{ik} = F_{ik} T_k$. Guides are **normalised**,
# $T \leftarrow T / \sqrt{\mathrm{mean}(T^2)}$: for a region of $m$ of the $M_l$ positions
# ($T$ = 1 there, 0 elsewhere) that makes $T_k = \sqrt{M_l/m}$ inside, so
# $G_T = \frac{1}{m}\sum_{k \in \text{region}} F_{:k} F_{:k}^\top$ — the Gram matrix of the region
# alone, averaged over *its* positions, on the same scale as a whole image's, however small the
# region is. The loss of region $r$ at layer $l$ compares it with the painting's guided Gram
# $A_r$, and the layer's loss sums the regions:
#
# $$E_{l} = \sum_r \frac{1}{4N_l^2}\sum_{i,j}\big(G_{T_r} - A_r\big)_{ij}^2 .$$
#
# **Gradient.** Derive it in two steps. Write $\tilde F = F \circ T$. Then
# $G_T = \frac{1}{M_l}\tilde F\tilde F^\top$ is the plain Gram matrix of $\tilde F$, and $E$ is
# lesson 5's $E_l$ with $G_T$ in place of $G$: so $\partial E / \partial \tilde F$ is the
# gradient you derived for lesson 5's Eq. 6, written with $\tilde F$ and $G_T$. Second step:
# $\tilde F_{ik} = F_{ik} T_k$, so $\partial \tilde F_{ik} / \partial F_{ik} = T_k$ and
# $\partial \tilde F_{ik} / \partial F_{jl} = 0$ otherwise. What does the chain rule do to
# column $k$ of $\partial E / \partial \tilde F$? Put the two steps together, as matrix
# products and an elementwise product with the guide, and check your answer on two cases:
# with $T = 1$ it is lesson 5's gradient, and a position outside the region ($T_k = 0$) gets
# no gradient from that region's term.
#
# Code: **`minist.losses.reference.guided_gram_matrix(F, T)`** and
# **`minist.losses.reference.guided_style_layer_loss(F, A, T)`**, used by the engine's
# `minist.objective.StyleTerm` when the term has a `guide`.
#
# **Checks.** A guide of ones is the plain Gram; a normalised 0/1 guide gives the Gram of the
# region's columns; the gradient agrees with central differences in float64, with a guide that
# is 0 at some positions.

# %%
rng = np.random.default_rng(0)
N, M = 6, 30
F = rng.standard_normal((N, M))  # float64: the precision for checking maths
A = reference.gram_matrix(rng.standard_normal((N, 25)))  # a "painting's" Gram
region = np.zeros(M, bool)
region[:12] = True  # positions 0..11: the region
T = normalise_guide(region.astype(np.float64))
L.say(
    f"guide of ones == plain Gram:            "
    f"{np.allclose(reference.guided_gram_matrix(F, np.ones(M)), reference.gram_matrix(F))}",
    f"normalised 0/1 guide: T = {T[0]:.4f} = sqrt(M/m) = {np.sqrt(M / 12):.4f} inside, 0 outside",
    f"G_T == Gram of the region's columns:    "
    f"{np.allclose(reference.guided_gram_matrix(F, T), reference.gram_matrix(F[:, region]))}",
)

soft = rng.uniform(0.2, 1.0, M) * (rng.uniform(size=M) > 0.3)  # a soft guide with zeros
E, dF = reference.guided_style_layer_loss(F, A, soft)
numeric = L.numerical_gradient(lambda: float(reference.guided_style_layer_loss(F, A, soft)[0]), F)
error = L.relative_error(dF, numeric)
L.say(f"E = {float(E):.6f}; gradient vs finite differences: relative error {error:.1e}; "
      f"gradient at the {int((soft == 0).sum())} positions with T = 0: "
      f"{np.abs(dF[:, soft == 0]).max():.1f}")
assert error < 1e-6 and not dF[:, soft == 0].any()

# %% [markdown]
# ## 2. From a mask on the image to a guide at every layer
#
# A mask is drawn on the image (white: this region); the guides live on the layers, whose
# maps are smaller. minist follows the network's own layer table (`net.layer_specs`): a 3×3
# convolution with stride 1 and padding 1 keeps the size, a ReLU keeps it, a 2×2 pooling with
# stride 2 halves it (an odd last row or column is dropped). Two ways to carry the mask along
# (**`minist.masks.propagate_mask(mask, net, layers, mode)`**):
#
# * **simple** — resize the mask to each layer: each pooling *averages* its 2×2 window (that
#   is what shrinking an image by half means), convolutions leave it as it is. A unit on a
#   region's border gets a weight between 0 and 1 and belongs partly to both regions.
# * **inside** — keep only the units whose **receptive field** lies inside the region: each
#   convolution takes the *minimum* over its 3×3 window, each pooling over its 2×2 window. A
#   unit keeps weight 1 only if every pixel it sees has weight 1. The zeros a convolution pads
#   with are not part of any region, so the minimum is taken over the window's positions in
#   the image: otherwise every region would also shrink from the image's border and a mask
#   covering the whole image would be erased at the deep layers.
#
# The receptive fields grow quickly — 3 pixels at relu1_1, 24 at relu3_1, 60 at relu4_1 and
# 132 at relu5_1 of VGG-16 (156 for VGG-19) — so *inside* shrinks a region by tens of pixels
# at the deep layers, and removes a region narrower than the receptive field altogether. Then
# **`minist.masks.normalise_guide`** would divide by zero: it returns the zero guide as it is,
# and **`minist.masks.guided_style_terms`** leaves that layer out for that region.
#
# The figure shows a disc-shaped mask on a 256-pixel image (the size does not depend on the fast
# mode: this is cheap) at each style layer, *simple* above, *inside* below.

# %%
choice = L.find_weights()
L.say(choice.note)
net = VGG(load_weights(choice.path))
style_layers = [n for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
                if n in net.layer_names]
content_layers = ["relu4_2"] if "relu4_2" in net.layer_names else [style_layers[-1]]

Hf, Wf = 192, 256
yy, xx = np.mgrid[0:Hf, 0:Wf]
disc = (np.hypot(yy - 0.5 * Hf, xx - 0.4 * Wf) < 0.3 * Hf).astype(np.float32)
guides = {mode: propagate_mask(disc, net, style_layers, mode) for mode in MASK_MODES}
fig, axes = plt.subplots(2, 1 + len(style_layers), figsize=(2.6 * (1 + len(style_layers)), 5))
for row, mode in enumerate(MASK_MODES):
    axes[row, 0].imshow(disc, cmap="gray", vmin=0, vmax=1)
    axes[row, 0].set_title(f"mask {Wf}x{Hf}")
    axes[row, 0].set_ylabel(mode)
    for ax, name in zip(axes[row, 1:], style_layers, strict=True):
        T = guides[mode][name]
        ax.imshow(T, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{mode}: {name} {T.shape[1]}x{T.shape[0]}", fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("A mask propagated to the style layers: simple (resized) vs inside (eroded)")
L.save_figure(fig, LESSON, "guides_per_layer")

L.say(f"{'layer':>8}{'simple: area':>14}{'inside: area':>14}   (fraction of the layer's units)")
for name in style_layers:
    L.say(f"{name:>8}{guides['simple'][name].mean():>14.3f}{guides['inside'][name].mean():>14.3f}")
assert all(np.all(guides["inside"][n] <= guides["simple"][n] + 1e-6) for n in style_layers)

# %% [markdown]
# ## 3. Several paintings: blending Grams = blending losses, up to a constant
#
# To mix paintings $1 \dots S$ *everywhere* (no masks), one can either ask the image to be close
# to each painting, $\sum_i w_i \lVert G - A_i\rVert^2$, or close to one blended target,
# $\lVert G - \bar A\rVert^2$ with $\bar A = \sum_i w_i A_i$ (what minist does with several
# style images: the weights $w_i \ge 0$ normalised to $\sum_i w_i = 1$). Expand the squares
# ($\langle X, Y\rangle = \sum_{jk} X_{jk}Y_{jk}$):
#
# $$\sum_i w_i \lVert G - A_i\rVert^2 = \Big(\sum_i w_i\Big)\lVert G\rVert^2
#   - 2\Big\langle G, \sum_i w_i A_i\Big\rangle + \sum_i w_i\lVert A_i\rVert^2 .$$
#
# With $\sum_i w_i = 1$ the first two terms are those of $\lVert G - \bar A\rVert^2 =
# \lVert G\rVert^2 - 2\langle G, \bar A\rangle + \lVert\bar A\rVert^2$, so
#
# $$\sum_i w_i \lVert G - A_i\rVert^2 = \lVert G - \bar A\rVert^2
#   + \underbrace{\sum_i w_i \lVert A_i\rVert^2 - \lVert \bar A\rVert^2}_{c \;=\;
#   \sum_i w_i \lVert A_i - \bar A\rVert^2 \;\ge\; 0}.$$
#
# $c$ depends on the paintings only, not on the image: the two losses have the **same
# gradient** with respect to $G$, hence to $F$ and to the image, and L-BFGS takes the same
# steps. (For weights that do not sum to one, $\sum_i v_i\lVert G - A_i\rVert^2 =
# V\lVert G - \sum_i \tfrac{v_i}{V} A_i\rVert^2 + \text{const}$ with $V = \sum_i v_i$: the same
# blend, with the loss scaled by $V$.) $c$ is the spread of the targets: no image can match
# two different paintings at once, and $c$ is the part of the summed loss nothing can remove.
# Per layer the loss has the factor $\frac{1}{4N_l^2}$ of Eq. 4, so the constant is
# $c/(4N_l^2)$. **Check** with `minist.losses.reference.style_layer_loss`:

# %%
N, M = 8, 40
paint_grams = [reference.gram_matrix(rng.standard_normal((N, 30)) * s) for s in (1.0, 1.5, 0.7)]
w = np.array([0.5, 0.3, 0.2])  # sums to 1
A_bar = sum(wi * Ai for wi, Ai in zip(w, paint_grams, strict=True))
c = (sum(wi * np.sum(Ai**2) for wi, Ai in zip(w, paint_grams, strict=True))
     - np.sum(A_bar**2)) / (4 * N**2)
spread = sum(wi * np.sum((Ai - A_bar) ** 2) for wi, Ai in zip(w, paint_grams, strict=True))
for trial in range(2):  # two different images: the difference is the same constant
    F = rng.standard_normal((N, M))
    per_style = [reference.style_layer_loss(F, Ai) for Ai in paint_grams]
    summed = sum(wi * float(E) for wi, (E, _) in zip(w, per_style, strict=True))
    grad_summed = sum(wi * dF for wi, (_, dF) in zip(w, per_style, strict=True))
    blended, grad_blended = reference.style_layer_loss(F, A_bar)
    L.say(f"image {trial}: sum_i w_i E(A_i) = {summed:.6f}, E(A_bar) = {float(blended):.6f}, "
          f"difference {summed - float(blended):.6f}; "
          f"gradients: max |difference| {np.abs(grad_summed - grad_blended).max():.1e}")
    assert np.isclose(summed - float(blended), c, rtol=1e-10)
    assert np.allclose(grad_summed, grad_blended, rtol=1e-10, atol=1e-14)
L.say(f"c / (4 N^2) = {c:.6f} = sum_i w_i ||A_i - A_bar||^2 / (4 N^2) = {spread / (4 * N**2):.6f}")

# %% [markdown]
# ## 4. Two paintings, left and right
#
# Now the real thing: the photo's left half after one painting, its right half after another.
# The masks are the two halves of the image (`left[:, :W//2] = 1`, `right = 1 - left`); each
# region gets its own style terms (**`minist.masks.guided_style_terms`**: one `StyleTerm` per
# region and layer, target the painting's Gram, guide the region's), the content term is the
# usual one (`minist.objective.build_terms`). `minist.stylize.StyleTransfer` builds them from
# its `content_masks` option (one mask per painting) and runs them in the command line's loop —
# `minist stylize photo.jpg left.jpg right.jpg --content-masks left.png,right.png` does the
# same — with L-BFGS, each iteration logged and its loss checked. We run it with each
# propagation mode (`mask_mode`). minist's default is
# **`simple`** (`minist.masks.DEFAULT_MASK_MODE`; why: the module docstring of `minist.masks`).
#
# At the end we measure, for each half of the result, its guided style loss against *each*
# painting (normalised, averaged over the style layers): a half should be closer to its own
# painting than to the other.

# %%
size = L.lesson_size(128 if not L.FAST else 64)
iters = L.iterations(80, 20)
content_path = L.content_image_path()
first_path = L.style_image_path()
scream = L.SHARED / "data" / "images" / "the_scream.jpg"
content = load_image(content_path, size)
paintings = [load_image(first_path, size)]
if scream.is_file() and "MINIST_STYLE" not in os.environ:
    paintings.append(load_image(scream, size))
    second_name = scream.name
else:  # a second painting drawn here: the first drawn one in warm colours (red <-> blue)
    paintings.append(np.ascontiguousarray(L.drawn_style(size, seed=1)[:, ::-1]))
    second_name = "drawn (warm)"
H, W = content.shape[2:]
left = np.zeros((H, W), np.float32)
left[:, : W // 2] = 1.0
masks = [left, 1.0 - left]
L.say(f"content {content_path.name} {W}x{H}; left: {first_path.name}, right: {second_name}; "
      f"{iters} L-BFGS iterations per mode")


def distances(image, guides_of_regions):
    """d[r][s]: region r of ``image`` against painting s (normalised guided style loss, mean
    over the style layers)."""
    feats, _ = net.forward(image, style_layers)
    out = []
    for g in guides_of_regions:
        row = []
        for painting in paintings:
            p_feats, _ = net.forward(painting, style_layers)
            losses = []
            for name in style_layers:
                A_s = reference.gram_matrix(p_feats[name])
                E_s, _ = reference.guided_style_layer_loss(feats[name], A_s, g[name])
                losses.append(float(E_s) * style_normaliser(A_s))
            row.append(np.mean(losses))
        out.append(row)
    return out


def stylise(mode):
    st = StyleTransfer(content, paintings, network=net, size=size, iters=iters,
                       content_masks=masks, mask_mode=mode, content_layers=content_layers,
                       style_layers=style_layers, optimizer="lbfgs", init="content")
    kept = {r: [t.key.layer for t in st.objective.terms if t.key.region == r] for r in (0, 1)}
    image = st.run()
    return image, kept, st.evaluate(st.image).loss


# the halves, measured with the simple guides of each region (the same ruler for both modes)
ruler = [{n: normalise_guide(T) for n, T in propagate_mask(m, net, style_layers).items()}
         for m in masks]
start = time.perf_counter()
d0 = distances(content, ruler)
results, table = {}, {}
for mode in MASK_MODES:
    results[mode], kept, loss = stylise(mode)
    table[mode] = distances(results[mode], ruler)
    L.say(f"{mode:>6}: loss {loss:.1f}; layers with a term, left: {kept[0]}, right: {kept[1]}")
L.say(f"({time.perf_counter() - start:.0f} s)",
      f"{'':>18}{'vs ' + first_path.name:>22}{'vs ' + second_name:>22}")
for label, d in [("photo", d0)] + [(mode, table[mode]) for mode in MASK_MODES]:
    for r, half in enumerate(("left", "right")):
        L.say(f"{label + ' ' + half:>18}{d[r][0]:>22.3f}{d[r][1]:>22.3f}")

fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
panels = [(content, "photo"), (paintings[0], f"left: {first_path.name}"),
          (paintings[1], f"right: {second_name}")]
panels += [(results[m], f"{m}" + (" (default)" if m == DEFAULT_MASK_MODE else ""))
           for m in MASK_MODES]
for ax, (img, title) in zip(axes, panels, strict=True):
    ax.imshow(L.to_hwc(img))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
for ax in axes[3:]:
    ax.axvline(W / 2 - 0.5, color="white", lw=0.6, ls=":")
fig.suptitle("Spatial control: one painting per half" + ("" if choice.real else
                                                         " (RANDOM weights)"))
L.save_figure(fig, LESSON, "two_paintings")

# %% [markdown]
# ## 5. What to see
#
# *Guides.* In the *simple* row the disc only gets coarser from layer to layer (each pooling
# halves the map), with grey units along its edge where a unit is partly inside. In the *inside*
# row it shrinks as well: by one pixel at relu1_1, by more at every layer as the receptive
# fields grow; at relu4_1 a few units are left, at relu5_1 none — a disc 115 pixels across
# holds no receptive field of relu5_1 (132 pixels for VGG-16, 156 for VGG-19). The table says
# the same in numbers.
#
# *Two paintings* (with the images of `../shared` and real weights). At the normal size
# (128 px, 80 iterations per mode) the left half of the *simple* result is painted in The
# Starry Night's blue swirls with yellow dabs, the right half in The Scream's orange and red
# horizontal strokes under a grey-blue, wavy sky; the two styles meet in a soft transition a
# few pixels wide along the middle. The *inside* result has the same two halves but a visible
# seam: along the middle the deep layers have no units (their receptive fields straddle the
# border), so a band on each side keeps flatter, photo-like colour, and relu5_1 has dropped out
# altogether (the layers listed above). The table says it in numbers: the photo starts closer
# to the first painting in *both* halves; after the run each half is closer to its own
# painting, the right half much more so with *simple* than with *inside* — the reason minist's
# default is *simple*. At the fast CI size (64 px, 20 iterations) the pictures are small and
# rough: the left half is clearly bluer and more swirled than the right, the table separates
# the two halves in *simple* mode, while *inside* — which at 64 px keeps only relu1_1 to
# relu3_1 — leaves the right half about as far from one painting as from the other.
# (With random weights none of this shows.)

# %% [markdown]
# ## Exercise
#
# * **`ex_guided_gram`** — implement `minist.losses.reference.guided_gram_matrix(F, T)` and
#   `minist.losses.reference.guided_style_layer_loss(F, A, T)` (section 1: the value and its
#   gradient). Check: `python tutorials/check.py ex_guided_gram` (or `pytest -m ex_guided_gram`).
#
# The checks compare with finite differences, with the unguided loss of $F \circ T$ (the
# teacher's, on a few seeded inputs in a student version), and with properties (a guide of ones
# changes nothing; a normalised region gives the region's own Gram; no gradient where $T = 0$).
# In a student version this lesson runs before the exercise is written only up to the first
# section that needs it, and says so in one line; write the two functions, check them, and run
# it again.
# Try afterwards: draw your own masks (`minist.masks.load_mask` reads any image), or give the
# right half a style mask that takes only the sky of its painting.
