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
# # Lesson 9 — Colour control: keep the photo's colours
#
# A style transfer copies a painting's colours together with its brush strokes: Tübingen
# painted "as Starry Night" comes out blue and yellow. Often we want the strokes but the photo's
# colours. Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in
# Neural Style Transfer" (CVPR 2017), section 5, give two ways, both here:
#
# * **luminance-only transfer** — run the transfer on brightness alone and take the colour from
#   the photo;
# * **colour histogram matching** — first recolour the painting with the photo's palette (match
#   the mean and covariance of its colours), then transfer as usual.
#
# This lesson builds both from their equations, checks each one numerically, and shows what
# they do to the images and to their colour distributions.
#
# | equation | code (`minist/color.py`) |
# |---|---|
# | RGB → YIQ and back | `rgb_to_yiq`, `yiq_to_rgb` (the matrix: `YIQ_FROM_RGB`), `luminance` |
# | a colour matrix on every pixel, $x' = Ax + b$ | `apply_color_matrix` |
# | luminance matching $L_{S'} = \frac{\sigma_C}{\sigma_S}(L_S - \mu_S) + \mu_C$ | `match_luminance`, `luminance_inputs` |
# | what the network sees of $Y$, and its gradient | `gray_to_rgb`, `gray_to_rgb_backward` |
# | the output: the result's $Y$ with the photo's $I, Q$ | `combine_luminance` |
# | colour mean and covariance | `color_statistics` |
# | $S^p = V\,\mathrm{diag}(\lambda^p)\,V^\top$ | `spd_power` |
# | $A\Sigma_SA^\top = \Sigma_C$: pca, cholesky, sym | `pca_transform`, `cholesky_transform`, `sym_transform`, `color_transform_matrix` |
# | $x' = Ax + \mu_C - A\mu_S$ for every style pixel | `match_colors`, `histogram_inputs` |
#
# Run it: `python tutorials/09_color_control.py` from the repository root (or open it as a
# notebook with Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick. Everything here is
# arithmetic on the two images; no network is needed.
#
# Exercises it runs: `ex_yiq`, `ex_color_transform`. In a student's copy it says in one line which
# are not written yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import numpy as np

from minist import color
from minist.images import load_image, resize_to

LESSON = "09_color_control"
L.begin(LESSON, needs=("ex_yiq", "ex_color_transform"))  # the exercises this lesson runs
plt = L.pyplot()

size = L.lesson_size(96 if L.FAST else 320)
content_path, style_path = L.content_image_path(), L.style_image_path()
photo = load_image(content_path, size)  # (1, 3, H, W) float32 in [0, 1]
painting = load_image(style_path, size)
L.say(f"content: {content_path} {photo.shape[2:]}, style: {style_path} {painting.shape[2:]}")


def show(ax, image, title):
    """An RGB (1, 3, H, W) or gray (1, 1, H, W) image on ``ax``, clipped to [0, 1] to display."""
    if image.shape[1] == 1:
        ax.imshow(np.clip(image[0, 0], 0, 1), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(L.to_hwc(image))
    ax.set_title(title, fontsize=10)
    ax.axis("off")


# %% [markdown]
# ## 1. YIQ: brightness apart from colour
#
# The NTSC colour television standard (FCC, 1953) sent a colour picture as three signals that a
# black-and-white set could use: the **luminance** $Y$, which is the black-and-white picture,
# and two **chrominance** signals $I$ (orange–blue) and $Q$ (purple–green):
#
# $$\begin{pmatrix} Y \\ I \\ Q \end{pmatrix} = T \begin{pmatrix} R \\ G \\ B \end{pmatrix},
# \qquad T = \begin{pmatrix} 0.299 & 0.587 & 0.114 \\ 0.5959 & -0.2746 & -0.3213 \\
# 0.2115 & -0.5227 & 0.3112 \end{pmatrix}.$$
#
# * $Y$ is a weighted mean of R, G, B (the weights sum to 1): green counts most because our eyes
#   are most sensitive to it. For an image in $[0, 1]$, $Y \in [0, 1]$.
# * Each of the $I$ and $Q$ rows sums to 0, so every gray $R = G = B = g$ maps to $(g, 0, 0)$:
#   $I$ and $Q$ measure how far a colour is from gray, and in which direction.
# * Back to RGB with the **exact** inverse $T^{-1}$ (computed as a matrix inverse in float64).
#   Tables print it rounded to three decimals; that rounded matrix misses the round trip by
#   about $10^{-4}$ on a photo — each coefficient is off by up to $5 \cdot 10^{-4}$, so a
#   pixel's colour is off by at most $5 \cdot 10^{-4}\,(|Y| + |I| + |Q|)$ (below: the number
#   for the photo, and that bound); the exact inverse misses it only by float rounding.
#
# Applying $T$ to an image means applying it to every pixel's colour $x \in \mathbb{R}^3$:
# for the $M = HW$ pixels as the columns of $X \in \mathbb{R}^{3 \times M}$, one product
# $X' = T X$ (`apply_color_matrix`, which the colour transforms of section 3 use as well).

# %%
T = color.YIQ_FROM_RGB
T_inv = np.linalg.inv(T)
print("T =\n", T, "\nT^-1 (exact) =\n", T_inv.round(6))
rounded = T_inv.round(3)  # the inverse as tables print it
yiq = color.rgb_to_yiq(photo)
back = color.yiq_to_rgb(yiq)
photo64 = photo.astype(np.float64)
back64 = color.yiq_to_rgb(color.rgb_to_yiq(photo64))
rounded_back = color.apply_color_matrix(color.rgb_to_yiq(photo64), rounded)
gray = np.full((1, 3, 1, 1), 0.6)
rounding_bound = 5e-4 * np.abs(color.rgb_to_yiq(photo64)).sum(axis=1).max()
L.say(
    f"max |yiq_to_rgb(rgb_to_yiq(x)) - x|, float32:    {np.abs(back - photo).max():.1e}",
    f"                                     float64:    {np.abs(back64 - photo64).max():.1e}",
    f"with the 3-decimal inverse tables print: {np.abs(rounded_back - photo64).max():.1e} "
    f"(at most {rounding_bound:.1e} from the rounding)",
    f"gray 0.6 -> YIQ {color.rgb_to_yiq(gray).ravel().round(12)}",
    f"Y of the photo in [{yiq[:, 0].min():.3f}, {yiq[:, 0].max():.3f}], "
    f"I in [{yiq[:, 1].min():.3f}, {yiq[:, 1].max():.3f}], "
    f"Q in [{yiq[:, 2].min():.3f}, {yiq[:, 2].max():.3f}]",
)
assert np.abs(back64 - photo64).max() < 1e-14 and np.abs(back - photo).max() < 5e-6
assert np.abs(rounded_back - photo64).max() <= rounding_bound * (1 + 1e-9)
assert np.allclose(color.rgb_to_yiq(gray).ravel(), [0.6, 0, 0], atol=1e-15)

# %%
fig, axes = plt.subplots(2, 4, figsize=(13, 5.2))
for row, (image, name) in enumerate(((photo, "photo"), (painting, "painting"))):
    channels = color.rgb_to_yiq(image)
    show(axes[row, 0], image, name)
    axes[row, 1].imshow(channels[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[row, 1].set_title("Y (luminance)", fontsize=10)
    for k, label in ((1, "I (orange + / blue −)"), (2, "Q (purple + / green −)")):
        axes[row, 1 + k].imshow(channels[0, k], cmap="RdBu_r", vmin=-0.3, vmax=0.3)
        axes[row, 1 + k].set_title(label, fontsize=10)
    for ax in axes[row]:
        ax.axis("off")
fig.suptitle("The YIQ channels (I and Q on a diverging scale from -0.3 to 0.3; white = 0, gray)")
L.save_figure(fig, LESSON, "yiq_channels")

# %% [markdown]
# ### Why the structure lives in $Y$
#
# Blur each part and look. Blurring $I$ and $Q$ (keeping $Y$) hardly changes the picture;
# blurring $Y$ (keeping $I$ and $Q$) blurs the picture. Edges, strokes and shading are
# differences of brightness: our eyes resolve brightness far more finely than colour (which is
# why NTSC could send $I$ and $Q$ with a fraction of $Y$'s bandwidth). So a style transfer on $Y$
# alone still transfers the strokes — and the colour can come from elsewhere.


# %%
def gaussian_blur(image, sigma):
    """Blur every channel of (1, C, H, W) with a separable Gaussian (edges repeated)."""
    r = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    H, W = image.shape[2:]
    padded = np.pad(image, [(0, 0), (0, 0), (r, r), (r, r)], mode="edge")
    rows = sum(w * padded[:, :, i : i + H, :] for i, w in enumerate(kernel))
    return sum(w * rows[:, :, :, j : j + W] for j, w in enumerate(kernel))


sigma = max(photo.shape[2:]) / 40  # 8 px at 320 px, 2.4 px at the fast 96 px
blur_iq, blur_y = yiq.copy(), yiq.copy()
blur_iq[:, 1:] = gaussian_blur(yiq[:, 1:], sigma)
blur_y[:, :1] = gaussian_blur(yiq[:, :1], sigma)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
show(axes[0], photo, "photo")
show(axes[1], color.yiq_to_rgb(blur_iq), f"I, Q blurred (σ = {sigma:.1f} px), Y kept")
show(axes[2], color.yiq_to_rgb(blur_y), f"Y blurred (σ = {sigma:.1f} px), I, Q kept")
L.save_figure(fig, LESSON, "structure_in_luminance")
change_iq = np.abs(color.yiq_to_rgb(blur_iq) - photo).mean()
change_y = np.abs(color.yiq_to_rgb(blur_y) - photo).mean()
L.say(f"mean |change| in RGB: blurring I, Q {change_iq:.4f}, blurring Y {change_y:.4f}")

# %% [markdown]
# ## 2. Luminance-only transfer
#
# The recipe of section 5 of the paper:
#
# 1. Take the luminances $L_C$ of the photo and $L_S$ of the painting (`luminance`).
# 2. **Match the painting's luminance to the photo's**, mean $\mu$ and standard deviation
#    $\sigma$ over all pixels:
#    $$L_{S'} = \frac{\sigma_C}{\sigma_S}\big(L_S - \mu_S\big) + \mu_C .$$
#    An affine map of the brightness: after it $L_{S'}$ has mean $\mu_C$ and standard deviation
#    $\sigma_C$ (subtract $\mu_S$: mean 0; scale: standard deviation $\sigma_C$; add $\mu_C$),
#    and the order of the pixels' brightnesses is kept. Without it a dark painting would make
#    the network darken the photo to match the Gram matrices. A constant painting
#    ($\sigma_S = 0$) has no contrast to scale and becomes the constant $\mu_C$.
#    `match_luminance`; `luminance_inputs(photo, [paintings])` does steps 1–2 for every style.
# 3. Run the style transfer **on the luminances**: the image being optimised is one channel,
#    $Y$. VGG wants three, so it sees $Y$ replicated, $(Y, Y, Y)$ (`gray_to_rgb`).
# 4. The output: the result's $Y$ with the **photo's** $I$ and $Q$, back to RGB, clipped to
#    $[0, 1]$ (`combine_luminance`).

# %%
content_y, (style_y,) = color.luminance_inputs(photo, [painting])
raw_style_y = color.luminance(painting)
for name, y in (("photo  L_C ", content_y), ("painting L_S", raw_style_y),
                ("matched L_S'", style_y)):
    L.say(f"{name}: mean {y.mean(dtype=np.float64):.4f}, std {y.std(dtype=np.float64):.4f}, "
          f"range [{y.min():.3f}, {y.max():.3f}]")
assert abs(style_y.mean(dtype=np.float64) - content_y.mean(dtype=np.float64)) < 1e-6
assert abs(style_y.std(dtype=np.float64) - content_y.std(dtype=np.float64)) < 1e-6

fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
show(axes[0], content_y, "photo's luminance L_C")
show(axes[1], raw_style_y, "painting's luminance L_S")
show(axes[2], style_y, "matched L_S' (what the network sees)")
bins = np.linspace(-0.1, 1.1, 61)
for y, label, style in ((content_y, "L_C", "-"), (raw_style_y, "L_S", ":"),
                        (style_y, "L_S'", "--")):
    axes[3].hist(y.ravel(), bins=bins, density=True, histtype="step", linestyle=style, label=label)
axes[3].set_xlabel("luminance")
axes[3].set_ylabel("density")
axes[3].legend()
axes[3].set_title("histograms", fontsize=10)
L.save_figure(fig, LESSON, "luminance_inputs")

# %% [markdown]
# ### The gradient through $(Y, Y, Y)$
#
# The optimiser changes $Y$, one channel; the network's backward pass (lesson 3) gives the
# gradient with respect to its *three-channel* input $x = (Y, Y, Y)$. Each channel is a copy of
# $Y$, so $\partial x_c / \partial Y = 1$ for $c = 1, 2, 3$ and by the chain rule
#
# $$\frac{\partial \mathcal{L}}{\partial Y_{ij}} = \sum_{c=1}^{3}
#   \frac{\partial \mathcal{L}}{\partial x_{c,ij}} \qquad \texttt{gray\_to\_rgb\_backward}.$$
#
# **Check.** Finite differences in float64 (lesson 1).

# %%
rng = np.random.default_rng(0)
y_small = rng.uniform(0, 1, (1, 1, 4, 5))
dx = rng.standard_normal((1, 3, 4, 5))  # a gradient w.r.t. the network's input
numeric = L.numerical_gradient(lambda: float(np.sum(color.gray_to_rgb(y_small) * dx)), y_small)
err = L.relative_error(color.gray_to_rgb_backward(dx), numeric)
L.say(f"gray_to_rgb backward vs finite differences: relative error {err:.1e}")
assert err < 1e-8

# %% [markdown]
# ### Putting the colour back
#
# `combine_luminance(y, photo)` makes the output. Two checks: the photo's own luminance gives
# the photo back; and for any other luminance the output's $I$ and $Q$ are the photo's — except
# where $(Y, I_C, Q_C)$ falls outside the RGB cube and the clip to $[0, 1]$ moves it (a very
# bright $Y$ under a saturated colour). The issue that asked for this control measures that as
# "the output's $I$ and $Q$ equal the photo's to within one 8-bit level on average".
#
# No stylised luminance exists yet in this lesson, so as a **stand-in** we take the painting's
# matched luminance $L_{S'}$, resized to the photo's size: the result shows the painting's
# light and dark with the photo's colours laid on it — the colour layout is the photo's, the
# structure whatever $Y$ holds.

# %%
same = color.combine_luminance(content_y, photo)
L.say(f"photo's own Y back: max |difference| {np.abs(same - photo).max():.1e}")
assert np.abs(same - photo).max() < 1e-5

stand_in = np.clip(resize_to(np.clip(style_y, 0, 1), photo.shape[2:]), 0, 1)
combined = color.combine_luminance(stand_in, photo)
iq_diff = np.abs(color.rgb_to_yiq(combined)[:, 1:] - yiq[:, 1:])
touched = np.any((combined <= 0) | (combined >= 1), axis=1, keepdims=True)  # by the clip
untouched_diff = np.where(touched, 0.0, iq_diff).max()
L.say(f"stand-in Y with the photo's I, Q: mean |I, Q difference| {255 * iq_diff.mean():.2f} "
      f"8-bit levels (max {255 * iq_diff.max():.1f}); pixels touched by the clip: "
      f"{touched.mean():.1%}; elsewhere the difference is at most {untouched_diff:.1e}")
assert untouched_diff < 1e-5  # I, Q are the photo's wherever the clip did not act

fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
show(axes[0], stand_in, "stand-in Y (the matched painting)")
show(axes[1], photo, "the photo (its I, Q)")
show(axes[2], combined, "combine_luminance: Y + the photo's I, Q")
L.save_figure(fig, LESSON, "combine_luminance")

# %% [markdown]
# ## 3. Colour histogram matching
#
# The second method keeps the ordinary three-channel transfer and changes the painting instead:
# every painting pixel $x$ gets the same affine map
#
# $$x' = A x + b, \qquad b = \mu_C - A\mu_S, \qquad A\,\Sigma_S A^\top = \Sigma_C ,$$
#
# with $\mu$ and $\Sigma$ the mean and covariance of the pixel colours (`color_statistics`,
# with $\varepsilon = 10^{-5}$ added to the diagonal so that the covariances are invertible).
# Then the new pixels have mean $A\mu_S + b = \mu_C$ and covariance $A\Sigma_SA^\top =
# \Sigma_C$: the painting now has the photo's average colour and the photo's spread of colours,
# in the photo's directions. The map is applied **without clipping**: a few pixels land outside
# $[0, 1]$, the network does not mind, and clipping them would undo part of the match.
#
# **Many solutions.** If $A$ solves the equation, so does $\Sigma_C^{1/2} R\, \Sigma_S^{-1/2}$
# for every orthogonal $R$ (a rotation or reflection of the *whitened* colours, which have
# identity covariance). The covariance cannot say which painting colour should go to which
# photo colour; each method picks an $R$:
#
# * **pca** (the default, the authors' choice; from Hertzmann et al.'s *Image Analogies*):
#   $A = \Sigma_C^{1/2}\Sigma_S^{-1/2}$, the symmetric square roots from eigendecompositions,
#   $S^p = V\mathrm{diag}(\lambda^p)V^\top$ (`spd_power`). $\Sigma_S^{-1/2}$ shrinks or
#   stretches the painting's colour cloud along **its own principal axes** until it is round;
#   $\Sigma_C^{1/2}$ stretches the round cloud along the **photo's** principal axes. $A$ itself
#   is not symmetric, but $A\Sigma_S^{1/2} = \Sigma_C^{1/2}$ is — the property that singles it
#   out.
# * **cholesky**: $\Sigma = LL^\top$ with $L$ lower triangular, $A = L_C L_S^{-1}$. Whitening
#   with $L_S^{-1}$ is Gram–Schmidt on the channels *in order*: R first, then G with R's part
#   removed, then B. $A$ is lower triangular, so the new R depends on the old R only — the
#   result depends on the order of the channels.
# * **sym**: the linear Monge–Kantorovich map (Pitié & Kokaram, 2007),
#   $A = \Sigma_S^{-1/2}\big(\Sigma_S^{1/2}\Sigma_C\Sigma_S^{1/2}\big)^{1/2}\Sigma_S^{-1/2}$,
#   the only symmetric positive-definite solution. Of all solutions it moves the colours least,
#   $\mathbb{E}\lVert x' - x\rVert^2 = \lVert\mu_C - \mu_S\rVert^2 + \mathrm{tr}\big((A - I)
#   \Sigma_S (A - I)^\top\big)$ smallest: the optimal transport between the two Gaussians.
#
# ### The three maps on a drawn cloud
#
# First in two dimensions, where everything can be seen: a "painting" cloud of 600 points with
# covariance $\Sigma_S$ (long axis horizontal) and a "photo" covariance $\Sigma_C$ (smaller,
# long axis at 45°). Each point is coloured by its angle around the centre *in the whitened
# cloud* $\Sigma_S^{-1/2}x$ (a hue wheel), so that one can follow where the points go. All
# three maps land on the photo's ellipse (dashed); they differ in the turn
# $R = \Sigma_C^{-1/2} A\, \Sigma_S^{1/2}$ they give the whitened cloud on the way (in each
# title): none for pca, which whitens and re-stretches along the principal axes; for cholesky
# the one that makes $A$ triangular (the new first coordinate is a multiple of the old first
# coordinate alone); for sym the one that moves the points least (smallest RMS move).

# %%
def ellipse_of(ax, mean, cov, **style):
    """The 2-sigma ellipse of a 2-D Gaussian: mean + 2 V diag(sqrt(lambda)) (cos t, sin t)."""
    lam, V = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(*(mean[:, None] + 2 * (V * np.sqrt(lam)) @ np.stack([np.cos(t), np.sin(t)])), **style)


def rotation(degrees):
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


cov_s2 = np.diag([1.0, 0.1])
cov_c2 = rotation(45) @ np.diag([0.6, 0.06]) @ rotation(45).T
white = np.random.default_rng(1).standard_normal((2, 600))
cloud = color.spd_power(cov_s2, 0.5) @ white  # covariance Sigma_S (mean 0)
hue = plt.cm.hsv((np.arctan2(white[1], white[0]) + np.pi) / (2 * np.pi))
fig, axes = plt.subplots(1, 4, figsize=(16, 4.3), sharex=True, sharey=True, layout="constrained")
axes[0].scatter(*cloud, s=5, c=hue)
axes[0].set_title("painting cloud: covariance Σ_S", fontsize=10)
for ax, method in zip(axes[1:], color.METHODS, strict=True):
    A2 = color.color_transform_matrix(cov_s2, cov_c2, method)
    assert np.allclose(A2 @ cov_s2 @ A2.T, cov_c2, atol=1e-12)
    D = A2 - np.eye(2)
    R = color.spd_power(cov_c2, -0.5) @ A2 @ color.spd_power(cov_s2, 0.5)  # orthogonal
    turn = np.degrees(np.arctan2(R[1, 0], R[0, 0]))
    ax.scatter(*(A2 @ cloud), s=5, c=hue)
    move = np.sqrt(np.trace(D @ cov_s2 @ D.T))
    ax.set_title(f"{method}: turn R {turn:.1f}°, RMS move {move:.3f}", fontsize=10)
for ax in axes:
    ellipse_of(ax, np.zeros(2), cov_s2, color="0.5", linewidth=1)
    ellipse_of(ax, np.zeros(2), cov_c2, color="k", linestyle="--", linewidth=1.5)
    ax.set_aspect("equal")
fig.suptitle("A Σ_S Aᵀ = Σ_C three ways (gray: Σ_S's ellipse, dashed: Σ_C's); "
             "colour = angle in the whitened cloud")
L.save_figure(fig, LESSON, "transforms_2d")

# %% [markdown]
# ### On the photo and the painting
#
# **Checks**, in float64 on the two images: each $A$ solves the equation; each has its defining
# structure; sym moves least; pca and sym ignore the channel order (swap R and B before and
# after: the same result), cholesky does not; and the matched painting has the photo's mean and
# covariance.

# %%
mu_c, cov_c = color.color_statistics(photo)
mu_s, cov_s = color.color_statistics(painting)
L.say(f"photo:    mean {mu_c.round(3)}, std per channel {np.sqrt(np.diag(cov_c)).round(3)}",
      f"painting: mean {mu_s.round(3)}, std per channel {np.sqrt(np.diag(cov_s)).round(3)}")
P = np.eye(3)[[2, 1, 0]]  # RGB -> BGR
matrices, matched = {}, {}
for method in color.METHODS:
    A = color.color_transform_matrix(cov_s, cov_c, method)
    matrices[method] = A
    residual = np.abs(A @ cov_s @ A.T - cov_c).max()
    D = A - np.eye(3)
    moved = np.sqrt(np.sum((mu_c - mu_s) ** 2) + np.trace(D @ cov_s @ D.T))
    A_bgr = color.color_transform_matrix(P @ cov_s @ P.T, P @ cov_c @ P.T, method)
    order = np.abs(P.T @ A_bgr @ P - A).max()
    matched[method] = color.match_colors(painting, photo, method)
    mu_m, cov_m = color.color_statistics(matched[method])
    outside = np.mean((matched[method] < 0) | (matched[method] > 1))
    eps_share = np.abs(1e-5 * (A @ A.T - np.eye(3))).max()
    L.say(f"{method:>8}: A =", *(f"            {row}" for row in A.round(3)),
          f"          |A Σ_S Aᵀ - Σ_C| = {residual:.1e}; RMS colour move {moved:.4f}; "
          f"channel order changes A by {order:.1e}",
          f"          matched painting: |μ - μ_C| = {np.abs(mu_m - mu_c).max():.1e}, "
          f"|Σ - Σ_C| = {np.abs(cov_m - cov_c).max():.1e} "
          f"(of |Σ_C| = {np.abs(cov_c).max():.3f}; the ε's share, |ε(AAᵀ - I)|, is "
          f"{eps_share:.1e}); {outside:.2%} of values outside [0, 1]")
    assert residual < 1e-12 and np.abs(mu_m - mu_c).max() < 1e-5
    # exactly: the new pixels' covariance is A (Σ_S - εI) Aᵀ = Σ_C - ε A Aᵀ (float32 pixels)
    assert np.abs((cov_m - 1e-5 * np.eye(3)) - (cov_c - 1e-5 * A @ A.T)).max() < 1e-6

pca, chol, sym = (matrices[m] for m in color.METHODS)
B = pca @ color.spd_power(cov_s, 0.5)
assert np.allclose(B, B.T, atol=1e-12) and np.linalg.eigvalsh((B + B.T) / 2).min() > 0
assert np.all(np.triu(chol, 1) == 0)
assert np.array_equal(sym, sym.T) and np.linalg.eigvalsh(sym).min() > 0


def colour_move(A):
    D = A - np.eye(3)
    return np.trace(D @ cov_s @ D.T)


assert colour_move(sym) <= min(colour_move(pca), colour_move(chol)) + 1e-15
L.say("structure: A_pca Σ_S^½ symmetric positive definite, A_chol lower triangular, "
      "A_sym symmetric positive definite and moving least -- all checked")

# %%
fig, axes = plt.subplots(1, 5, figsize=(18, 3.8))
show(axes[0], photo, "photo (the palette)")
show(axes[1], painting, "painting")
for ax, method in zip(axes[2:], color.METHODS, strict=True):
    show(ax, matched[method], f"painting, {method}")
L.save_figure(fig, LESSON, "color_transforms")
for a, b in (("pca", "cholesky"), ("pca", "sym"), ("cholesky", "sym")):
    gap = 255 * np.abs(np.clip(matched[a], 0, 1) - np.clip(matched[b], 0, 1))
    L.say(f"{a} vs {b}: mean |difference| {gap.mean():.1f} 8-bit levels, largest {gap.max():.0f}")

# %% [markdown]
# ### What each transform does to the colour distribution
#
# The colours of an image are a cloud of points in $\mathbb{R}^3$; its mean and covariance
# describe it as an ellipsoid. Below, two flat views of that cloud in YIQ coordinates: the
# **colour plane** $(I, Q)$ and **brightness against orange–blue** $(Y, I)$. Gray points:
# the photo's pixels, dashed: its 2σ ellipse. Coloured points: painting pixels, each drawn in
# its own colour (clipped to display), solid: their 2σ ellipse. The points are a random sample
# of the pixels; the ellipses come from all of them (`color_statistics`). A projection of a
# covariance is the covariance of the projection ($P\Sigma P^\top$ for the two rows $P$ of $T$),
# so when the 3-D covariances agree, every flat view's ellipses agree too.

# %%
def projected_ellipse(ax, image, rows, **style):
    """The 2-sigma ellipse of ``image``'s colours seen in the YIQ coordinates ``rows``."""
    mean, cov = color.color_statistics(image, eps=0.0)
    P = T[list(rows)]  # (2, 3): RGB -> the two YIQ coordinates
    ellipse_of(ax, P @ mean, P @ cov @ P.T, **style)


def yiq_points(image, count, seed=0):
    """(YIQ (3, count), RGB (count, 3)) of ``count`` random pixels of ``image``."""
    pixels = image[0].reshape(3, -1)
    pick = np.random.default_rng(seed).choice(pixels.shape[1], min(count, pixels.shape[1]),
                                              replace=False)
    return T @ pixels[:, pick], np.clip(pixels[:, pick].T, 0, 1)


points = 4000 if not L.FAST else 1500
photo_pts, _ = yiq_points(photo.astype(np.float64), points)
panels = [("painting", painting)] + [(m, matched[m]) for m in color.METHODS]
planes = [((1, 2), "I", "Q"), ((0, 1), "Y", "I")]
fig, axes = plt.subplots(2, 4, figsize=(16, 8), sharex="row", sharey="row", layout="constrained")
for col, (name, image) in enumerate(panels):
    pts, rgb = yiq_points(image.astype(np.float64), points, seed=1)
    for row, ((a, b), xa, ya) in enumerate(planes):
        ax = axes[row, col]
        ax.scatter(photo_pts[a], photo_pts[b], s=2, c="0.75", linewidths=0)
        ax.scatter(pts[a], pts[b], s=3, c=rgb, linewidths=0)
        projected_ellipse(ax, image, (a, b), color="crimson", linewidth=1.5)
        projected_ellipse(ax, photo, (a, b), color="k", linestyle="--", linewidth=1.5)
        ax.set_xlabel(xa)
        ax.set_ylabel(ya)
        ax.set_title(name if name == "painting" else f"painting, {name}", fontsize=10)
fig.suptitle("Colour clouds in YIQ: photo gray / dashed, painting in its colours / solid red")
L.save_figure(fig, LESSON, "color_clouds")

# %% [markdown]
# All three transforms give the same ellipse: they solve the same equation. Where they differ
# is **which painting colour goes where** — the $R$ of the family above. The arrows below start
# at 60 painting colours (drawn in their own colour) and end where each method sends them, in
# the $(I, Q)$ plane; the title gives the root-mean-square move over all pixels.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True, sharey=True)
src, src_rgb = yiq_points(painting.astype(np.float64), 60, seed=2)
src_rgb_pixels = T_inv @ src  # the same 60 pixels in RGB (float64)
for ax, method in zip(axes, color.METHODS, strict=True):
    A = matrices[method]
    dst = T @ (A @ src_rgb_pixels + (mu_c - A @ mu_s)[:, None])
    for k in range(src.shape[1]):
        ax.annotate("", xy=dst[1:, k], xytext=src[1:, k],
                    arrowprops={"arrowstyle": "->", "color": "0.4", "lw": 0.8})
    ax.scatter(src[1], src[2], s=18, c=src_rgb, edgecolors="k", linewidths=0.3, zorder=3)
    ax.scatter(dst[1], dst[2], s=4, c="k", zorder=3)  # where they land (also sets the limits)
    projected_ellipse(ax, photo, (1, 2), color="k", linestyle="--", linewidth=1)
    move = np.sqrt(np.sum((mu_c - mu_s) ** 2) + colour_move(A))
    ax.set_title(f"{method}: RMS colour move {move:.4f}", fontsize=10)
    ax.set_xlabel("I")
axes[0].set_ylabel("Q")
L.save_figure(fig, LESSON, "color_moves")

# %% [markdown]
# **Channel order.** Recolour with the channels taken in the order B, G, R (permute the
# painting and the photo, transform, permute back). pca and sym give the same painting; cholesky
# gives another, because its triangular $A$ treats the first channel differently.

# %%
def match_in_bgr(method):
    to_bgr = lambda image: image[:, ::-1]  # noqa: E731 - a flip of the channel axis
    return to_bgr(color.match_colors(to_bgr(painting), to_bgr(photo), method))


fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for method in color.METHODS:
    diff = np.abs(match_in_bgr(method) - matched[method]).max()
    L.say(f"{method:>8}: B, G, R order vs R, G, B order: max |difference| {diff:.1e}")
    if method == "cholesky":
        assert diff > 1e-3
    else:
        assert diff < 1e-5
chol_bgr = match_in_bgr("cholesky")
show(axes[0], matched["cholesky"], "cholesky, channels R, G, B")
show(axes[1], chol_bgr, "cholesky, channels B, G, R")
show(axes[2], 5 * np.abs(chol_bgr - matched["cholesky"]).max(axis=1, keepdims=True),
     "|difference| x 5 (largest channel)")
L.save_figure(fig, LESSON, "channel_order")

# %% [markdown]
# ## 4. Several styles
#
# With several paintings (`minist stylize` takes more than one style) each one is matched to
# the photo on its own: `luminance_inputs(photo, styles)` matches every luminance,
# `histogram_inputs(photo, styles, method)` recolours every painting. Their sizes may differ;
# only their statistics are compared.
#
# The second "painting" here is drawn by minist from three colours, so its colours lie close to
# a plane and $\Sigma_S$ is nearly singular: $A$ must stretch a lot in the missing direction,
# and then the $\varepsilon$ on the diagonal shows. Exactly, the recoloured pixels have
# covariance $A(\Sigma_S - \varepsilon I)A^\top = \Sigma_C - \varepsilon AA^\top$; with
# $\lVert A\rVert$ in the tens, $\varepsilon AA^\top$ is no longer negligible next to
# $\Sigma_C$. The check below prints both numbers.

# %%
second = L.drawn_style(size, seed=3)  # a second "painting", drawn by minist
styles = [painting, second]
_, style_ys = color.luminance_inputs(photo, styles)
recoloured = color.histogram_inputs(photo, styles, "pca")
eps = color.DEFAULT_EPS
for k, (style, y, image) in enumerate(zip(styles, style_ys, recoloured, strict=True)):
    A = color.color_transform_matrix(color.color_statistics(style)[1], cov_c, "pca")
    mu_k, cov_k = color.color_statistics(image, eps=0.0)
    exact = np.abs(cov_k - (cov_c - eps * A @ A.T)).max()
    L.say(f"style {k}: luminance mean/std {y.mean(dtype=np.float64):.4f}/"
          f"{y.std(dtype=np.float64):.4f} (photo {content_y.mean(dtype=np.float64):.4f}/"
          f"{content_y.std(dtype=np.float64):.4f}); colours |μ - μ_C| "
          f"{np.abs(mu_k - mu_c).max():.1e}, |Σ - Σ_C| "
          f"{np.abs(cov_k + eps * np.eye(3) - cov_c).max():.1e}, "
          f"|Σ - (Σ_C - ε A Aᵀ)| {exact:.1e}; |A| = {np.linalg.norm(A, 2):.1f}")
    assert np.abs(mu_k - mu_c).max() < 1e-5 and exact < 1e-6

# %% [markdown]
# ## 5. What to see
#
# The figures are in `tutorials/figures/09_color_control/`. What follows describes the Tübingen
# photo and Starry Night (`../shared`, or your own copies through `MINIST_CONTENT` and
# `MINIST_STYLE`); with the images minist draws when those are missing every check still holds,
# but the pictures are simpler.
#
# * **`yiq_channels`**: $Y$ is the black-and-white photo with all its detail. The photo's $I$
#   is red (orange) on the roofs and the yellow and pink house fronts and blue in the sky; its
#   $Q$ is faint everywhere (within about ±0.08: the photo has little purple or green). In the
#   painting, $I$ draws the blue swirls in blue and the yellow stars and moon in red; in $Q$ the
#   stars and moon show blue (yellow lies on the green side of $Q$).
# * **`structure_in_luminance`**: with $I$ and $Q$ blurred the photo looks almost unchanged —
#   colour bleeds a little across the thinnest edges (roof lines, window frames) — while
#   blurring $Y$ by the same amount blurs the whole picture. The mean change is about three
#   times smaller for the colour blur (printed above).
# * **`luminance_inputs`**: the matched painting luminance $L_{S'}$ has less contrast than
#   $L_S$ (its standard deviation drops from about 0.24 to the photo's 0.18) and the photo's
#   mean. In the histograms $L_{S'}$ (dashed) is $L_S$ (dotted) squeezed and shifted, the same
#   shape: the match is of mean and spread only, not of the histogram's shape (the photo's tall
#   peak near 0.5 does not appear).
# * **`combine_luminance`**: the stand-in's swirls carry the photo's colour layout — blue in the
#   upper half where the sky is, an orange-red band across the middle where the roofs are,
#   dark brownish blue below. The printed mean $I, Q$ difference is below a tenth of an 8-bit
#   level; the clip acts on a few percent of the pixels, and the others keep the photo's
#   $I, Q$ to float rounding.
# * **`transforms_2d`**: all three clouds fill the dashed ellipse exactly; the hue wheel shows
#   the turn — none for pca, 27.5° for cholesky, 15.1° for sym — and sym has the smallest RMS
#   move (0.608 against 0.647 and 0.634).
# * **`color_transforms`**: the painting recoloured with the photo's palette. The deep
#   ultramarine and cobalt become the photo's lighter, grayer sky blue; the yellow stars and
#   moon turn orange to peach like the roofs; the cypress and the village turn dark brown like
#   the trees and the water. The three methods look alike for this pair: they differ by 3 to 6
#   8-bit levels on average and by a few tens of levels at most (printed above). Well under
#   0.1% of the values fall outside $[0, 1]$; they are clipped only for display.
# * **`color_clouds`**: before, the painting's ellipse (red) is larger, shifted and tilted
#   differently from the photo's (dashed) in both views; after each transform the red ellipse
#   lies exactly on the dashed one. The point clouds keep the painting's own shape (in the $(Y, I)$ view a
#   bent band: dark, then blue, then bright yellow or orange), not the photo's: only the mean
#   and covariance are matched.
# * **`color_moves`**: the yellow colours move up towards the photo's oranges, the blues move
#   right, towards gray. The three panels look alike for this pair, as the small RMS
#   differences say (0.132, 0.130 and 0.126 at full size: sym moves least, as it must).
# * **`channel_order`**: cholesky with the channels in the order B, G, R gives a visibly
#   different painting (up to 0.22 in a value; the difference image lights up at the moon, the
#   stars and the bright strokes); pca and sym give the same painting to float rounding.
#
# **Fast mode** (`MINIST_LESSON_FAST=1`, as CI runs it) uses 96-pixel images instead of 320:
# the pictures are coarse, the blur is 2.4 pixels instead of 8, the clouds have 1500 points
# instead of 4000, and the numbers move a little (the statistics of a smaller image: the
# channel-order difference is at most 0.09, the methods differ by up to about 30 levels). Every
# statement above can still be seen, only coarser; `transforms_2d` does not depend on the
# images and is the same in both modes.

# %% [markdown]
# ## Exercises
#
# * **`ex_yiq`** — implement `minist.color.apply_color_matrix` ($x' = Ax + b$ on every pixel,
#   for `(N, 3, H, W)` and `(3, H, W)` images), `rgb_to_yiq` and `yiq_to_rgb` (with the exact
#   inverse). Check: `python tutorials/check.py ex_yiq` (or `pytest -m ex_yiq`).
# * **`ex_color_transform`** — implement `minist.color.spd_power` ($S^p$ by
#   eigendecomposition) and `pca_transform` ($A = \Sigma_C^{1/2}\Sigma_S^{-1/2}$).
#   Check: `python tutorials/check.py ex_color_transform` (or `pytest -m ex_color_transform`).
#
# The checks prove the functions by properties, not stored answers: the per-pixel map against a
# loop, the YIQ matrix against its NTSC construction, both round trips, grays without colour;
# the square roots against the Denman–Beavers iteration (inverses only, no eigenvectors), the
# covariance equation, $A\Sigma_S^{1/2}$ symmetric positive definite, rotations of colour space.
# This lesson calls no other exercise's function (it uses no network). In a student version it
# runs before these two are written only up to the first section that needs one of them, and
# says which (the student version holds no other implementation of them): write the functions,
# check them, and run the lesson again. Try afterwards: derive the `sym` solution of
# $A\Sigma_SA^\top = \Sigma_C$ yourself (section 3 says which property picks it), compare your
# matrix with `minist.color.sym_transform`, and check that it moves the colours less than pca on
# your own painting (`MINIST_STYLE=path/to/painting.jpg`).
