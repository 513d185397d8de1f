# %% [markdown]
# # Lesson 4 — Content loss and content reconstruction
#
# How much of a photo does one layer of VGG remember? Gatys et al. answer by **reconstruction**:
# start from noise and change the pixels until the image's features at that layer match the
# photo's. Whatever the layer keeps comes back; whatever it throws away does not. This is the
# lower row of their Figure 1, and the content half of style transfer.
#
# | equation | code |
# |---|---|
# | content loss and its gradient (Eq. 1, 2) | `minist.losses.reference.content_loss` |
# | features as a matrix $F^l$ | `minist.losses.reference.feature_matrix` |
# | the gradient through the network to the pixels | `minist.vgg.vgg_backward` (lesson 3) |
# | the optimisation loop (L-BFGS) | `minist.stylize.StyleTransfer` with `style_weight=0` |
#
# Exercises it runs: `ex_relu`, `ex_vgg_backward`, `ex_content_loss`. In a student's copy it says
# in one line which are not written yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import time

import numpy as np

from minist.images import load_image
from minist.losses.reference import content_loss, feature_matrix
from minist.notebook import NotebookView
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import load_weights

LESSON = "04_content_loss"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_relu", "ex_vgg_backward", "ex_content_loss",
))
rng = np.random.default_rng(0)
choice = L.find_weights()
L.say(f"weights: {choice.note}")
weights = load_weights(choice.path)

# %% [markdown]
# ## 1. The content loss (paper Eq. 1 and 2)
#
# Layer $l$ has $N_l$ filters, each giving a feature map of $M_l = H_l W_l$ positions; stack
# them as rows of the **feature matrix** $F^l \in \mathbb{R}^{N_l \times M_l}$ (a reshape of the
# activation $(1, N_l, H_l, W_l)$: `feature_matrix`). With $P^l$ the photo's features
# ($\vec p$) and $F^l$ those of the image being generated ($\vec x$):
#
# $$
# \mathcal{L}_{content}(\vec p, \vec x, l) = \frac12 \sum_{i,j} \left(F^l_{ij} - P^l_{ij}\right)^2,
# \qquad
# \frac{\partial \mathcal{L}_{content}}{\partial F^l_{ij}} =
#   \begin{cases} \left(F^l - P^l\right)_{ij} & F^l_{ij} > 0 \\ 0 & F^l_{ij} < 0 \end{cases}.
# $$
#
# Each term depends on one $F_{ij}$ only and $\frac{d}{dF}\frac12 (F - P)^2 = F - P$: the
# gradient *is* the difference. The paper's case $F_{ij} < 0$ is the ReLU's mask — in minist
# that is applied by `relu_backward` inside `vgg_backward`, so `content_loss` returns just
# $F - P$. The gradient with respect to the **pixels** is then the network's backward pass:
# $\partial \mathcal{L} / \partial \vec x = $ `vgg_backward({l: F - P})`.
#
# First the loss alone, with a finite-difference check in float64:


# %%
numerical_gradient, relative_error = L.numerical_gradient, L.relative_error  # lesson 01


F = rng.standard_normal((8, 15))  # N_l = 8 filters, M_l = 15 positions
P = rng.standard_normal((8, 15))
value, grad_f = content_loss(F, P)
print(f"L_content = {float(value):.4f}  (= 0.5 * sum (F-P)^2 = {0.5 * np.sum((F - P) ** 2):.4f})")
err = relative_error(grad_f, numerical_gradient(lambda: float(content_loss(F, P)[0]), F))
print(f"dL/dF = F - P: finite-difference relative error {err:.1e}")
assert err < 1e-8

# %% [markdown]
# Now the whole chain, image → VGG → $F^l$ → loss, in float64 on the real network at a small
# size. Perturbing every pixel would take thousands of forward passes, so we check a
# **directional derivative** instead: for a random direction $v$,
# $\frac{\mathcal{L}(\vec x + h v) - \mathcal{L}(\vec x - h v)}{2h} \approx
# \langle \partial\mathcal{L}/\partial\vec x,\ v\rangle$.

# %%
net64 = VGG(weights, device="cpu", dtype=np.float64)
photo_small = load_image(L.content_image_path(), 32).astype(np.float64)
x = rng.uniform(0, 1, photo_small.shape)
v = rng.standard_normal(x.shape)
for layer in ("relu1_1", "relu3_1"):
    (P_l,) = net64.forward(photo_small, [layer])[0].values()
    P_l = feature_matrix(P_l).copy()

    def loss(image):
        (F_l,) = net64.forward(image, [layer])[0].values()  # noqa: B023
        return float(content_loss(feature_matrix(F_l), P_l)[0])  # noqa: B023

    feats, cache = net64.forward(x, [layer])
    _, grad_f = content_loss(feature_matrix(feats[layer]), P_l)
    grad = net64.backward({layer: grad_f.reshape(feats[layer].shape)}, cache)
    h = 1e-7  # small: a step that crosses a ReLU kink or a max-pool switch spoils the estimate
    numeric = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
    analytic = float(np.sum(grad * v))
    rel = abs(numeric - analytic) / max(abs(numeric) + abs(analytic), 1e-300)
    print(f"{layer}: <grad, v> = {analytic:.6e}, finite difference {numeric:.6e}, "
          f"relative error {rel:.1e}")
    assert rel < 1e-6

# %% [markdown]
# ## 2. Reconstructing the photo from one layer
#
# Minimise $\mathcal{L}_{content}$ at a single layer over the pixels of $\vec x$, starting from
# white noise, with L-BFGS (the paper's optimiser; lesson 7). In minist that is a style
# transfer with the style switched off: `StyleTransfer(..., content_weight=1, style_weight=0,
# init="noise", optimizer="lbfgs")`. Two details:
#
# * minist divides each layer's loss by the energy of its target, $\sum (P^l)^2$
#   (`normalize=True`, see `minist.objective.content_normaliser`), so the printed loss is a
#   relative squared error: 0 is "perfect", and an image whose features are all zero scores
#   exactly $\tfrac12$ (the $\tfrac12$ of Eq. 1).
# * `init="noise"` draws uniform noise in $[0, 1]$. We shrink it to $0.5 \pm 0.05$: a pixel
#   pattern that a layer does not see gets no gradient, so it simply stays as it started, and
#   full-strength noise would hide everything else. (Try `NOISE_AMPLITUDE = 1.0`: the deep
#   reconstructions stay covered in the starting noise — which proves the point.)
#
# The layers are those of the paper's Figure 1. In Caffe, where the paper's network ran, each
# ReLU overwrites its convolution's output in place, so the responses the paper calls
# `conv1_1` … `conv5_1` are the rectified ones, minist's `relu1_1` … `relu5_1`.
#
# **What you should see** (with real weights, at the normal size: 128 px, 100 iterations): from
# `relu1_1` the photo comes back almost exactly; from `relu2_1` it is still the photo, a little
# softer; from `relu3_1` fine detail and exact colours start to go (the sky turns grey); from
# `relu4_1` the layout — river, row of houses, sky — is still there but the detail is replaced
# by a fine, colourful grain; from `relu5_1` little more than the coarse arrangement shows
# through the grain. The deeper the layer, the less of the exact pixels it keeps: the network
# keeps *what* is where, not *how* it looks. In the fast CI mode (64 px, 40 iterations) the
# same happens one layer earlier — colours already fade from `relu2_1`, the houses are only a
# hint from `relu4_1`, and `relu5_1` (then $4 \times 3$ positions) gives mostly grain — so run
# at the normal size, or with `MINIST_LESSON_SIZE=256`, for a clear picture of the effect.
#
# In Jupyter, watch each reconstruction form: `minist.notebook.NotebookView` is an observer of
# the run loop that redraws the current image and the loss curve under the cell about once a
# second (as a script, it says it has nowhere to draw and the runs go on unchanged).

# %%
NOISE_AMPLITUDE = 0.1
size = L.lesson_size(64 if L.FAST else 128)
iters = L.iterations(100, 40)
layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
net = VGG(weights, device="cpu")  # float32 for running, shared by all runs
content = L.content_image_path()

reconstructions, histories, rms = {}, {}, {}
for layer in layers:
    start = time.perf_counter()
    st = StyleTransfer(
        content,
        content,  # the style image is not used (style_weight=0)
        network=net,
        size=size,
        iters=iters,
        optimizer="lbfgs",
        content_weight=1.0,
        style_weight=0.0,
        content_layers=[layer],
        style_layers=[layer],  # unused with style_weight=0, but must be reachable
        init="noise",
        seed=0,
    )
    st.image = (0.5 + NOISE_AMPLITUDE * (st.image - 0.5)).astype(np.float32)
    reconstructions[layer] = st.run(observers=[NotebookView(title=f"reconstruction from {layer}")])
    histories[layer] = [r.content for r in st.history]
    photo = st.content_image
    rms[layer] = float(np.sqrt(np.mean((reconstructions[layer] - photo) ** 2)))
    print(f"{layer}: {iters} L-BFGS iterations in {time.perf_counter() - start:.1f} s, "
          f"relative content loss {histories[layer][0]:.3f} -> {histories[layer][-1]:.4f}, "
          f"RMS pixel difference to the photo {rms[layer]:.3f}")

# %% [markdown]
# The RMS pixel differences printed above grow with depth (with real weights): the deeper
# the layer, the further its reconstruction from the photo, even though each run brought its
# own layer's loss down.

# %%
if choice.real:  # the claim above, checked: relu1_1 keeps the pixels, relu5_1 does not
    assert rms["relu1_1"] < 0.5 * rms["relu5_1"], rms
plt = L.pyplot()
fig, axes = plt.subplots(1, len(layers) + 1, figsize=(2.9 * (len(layers) + 1), 2.9))
axes[0].imshow(L.to_hwc(photo))
axes[0].set_title("content photo", fontsize=10)
for ax, layer in zip(axes[1:], layers, strict=True):
    ax.imshow(L.to_hwc(reconstructions[layer]))
    ax.set_title(f"from {layer}", fontsize=10)
for ax in axes:
    ax.axis("off")
fig.suptitle(f"content reconstructions from white noise ({weights.architecture}, {size}px, "
             f"{iters} L-BFGS iterations)")
L.save_figure(fig, LESSON, "content_reconstructions")

fig, ax = plt.subplots(figsize=(6, 3.5))
for layer in layers:
    ax.semilogy(histories[layer], label=layer)
ax.set_xlabel("L-BFGS iteration")
ax.set_ylabel("relative content loss")
ax.legend()
ax.set_title("each layer's own loss goes down")
L.save_figure(fig, LESSON, "content_loss_curves")
if not choice.real:
    L.say("NOTE: random weights -- the reconstructions show what a random network keeps, not "
          "what a trained VGG keeps; fetch real weights to see the paper's effect.")

# %% [markdown]
# ## Exercise
#
# * **`ex_content_loss`** — `minist.losses.reference.content_loss` (section 1): return the loss
#   as a 0-d array of `F`'s dtype (sum in float64) and the gradient $F - P$. Check:
#   `python tutorials/check.py ex_content_loss` (or `pytest -m ex_content_loss`)
#
# Then rerun this lesson: the finite-difference checks above must pass with your function.
