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
# # Lesson 10 — Coarse-to-fine: large images whose strokes are not tiny
#
# Run a style transfer at 256 px and at 1024 px and the larger result does not look like a
# larger copy of the smaller one: its brush strokes are smaller, and the painting's big
# structures are gone. Gatys et al. (2017, "Controlling Perceptual Factors in Neural Style
# Transfer", §6) explain why — VGG measures everything in *pixels* — and fix it by running the
# transfer at a small size first and refining the result at larger and larger sizes. This
# lesson measures the receptive fields, shows the effect, builds the schedule minist uses
# (`minist/scales.py`), and times it.
#
# Run it: `python tutorials/10_coarse_to_fine.py` from the repository root (or open it as a
# notebook with Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick.
#
# Exercises it runs: `ex_scales`, `ex_relu`, `ex_vgg_backward`, `ex_content_loss`, `ex_gram`,
# `ex_style_loss`, `ex_tv_loss`. In a student's copy it says in one line which are not written
# yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import statistics
import time

import numpy as np

from minist.images import load_image
from minist.layer_choice import PAPER_STYLE_LAYERS, style_layers_for_size
from minist.scales import auto_sizes, receptive_fields, schedule
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import load_weights

LESSON = "10_coarse_to_fine"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_scales", "ex_relu", "ex_vgg_backward", "ex_content_loss", "ex_gram", "ex_style_loss",
    "ex_tv_loss",
))
plt = L.pyplot()

# %% [markdown]
# ## 1. Receptive fields are measured in pixels
#
# A unit of a convolutional layer depends on a square of input pixels, its **receptive field**.
# Walk the network from the image: a $3\times3$ convolution lets each unit see one more
# neighbour on every side of the units below it, and a $2\times2$ pooling with stride 2 makes
# neighbouring units $j$ times further apart in the image. With $r$ the side of the field and
# $j$ the distance between neighbouring units, both counted in input pixels and starting from
# $r_0 = j_0 = 1$:
#
# $$\text{conv } 3\times3:\; r \leftarrow r + 2j, \qquad
#   \text{pool } 2\times2, \text{ stride } 2:\; r \leftarrow r + j,\; j \leftarrow 2j.$$
#
# Code: **`minist.scales.receptive_fields(net.layer_specs)`**. The numbers do not depend on the image
# size: at 256 px a unit of relu5_1 sees half of the picture, at 1024 px an eighth.
#
# **Check.** Backpropagate 1 from a single unit of a VGG whose weights are all positive (so no
# two paths cancel): the gradient with respect to the image is non-zero exactly on the pixels
# the unit sees. Its extent must be the receptive field.

# %%
choice = L.find_weights()
L.say(choice.note)
net = VGG(load_weights(choice.path))
fields = receptive_fields(net.layer_specs)
style_layers = [n for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
                if n in net.layer_names]
L.say("receptive field in pixels: "
      + ", ".join(f"{n} {fields[n]}" for n in style_layers + ["relu4_2"] if n in fields))


def support_of_one_unit(layer, size):
    """The side of the square of pixels one central unit depends on (positive weights)."""
    from minist.weights.store import VGGWeights

    widths = (2, 2, 2, 2, 2)
    params = {s.name: (np.full((s.out_channels, s.in_channels, 3, 3), 0.1),
                       np.ones(s.out_channels))
              for s in net.layer_specs if s.kind == "conv"}
    params = {name: (w[:2, : 2 if w.shape[1] > 3 else 3], b[:2]) for name, (w, b) in params.items()}
    probe = VGG(VGGWeights(net.architecture, params, net.preprocessing, "probe", "none",
                           widths), dtype=np.float64, pooling="avg")
    feats, cache = probe.forward(np.full((1, 3, size, size), 0.5), [layer])
    g = np.zeros_like(feats[layer])
    g[0, 0, g.shape[2] // 2, g.shape[3] // 2] = 1.0
    rows = np.flatnonzero(np.abs(probe.backward({layer: g}, cache)).sum(axis=(0, 1, 3)))
    return int(rows[-1] - rows[0] + 1)


for layer in style_layers[:4]:
    measured = support_of_one_unit(layer, 160)
    L.say(f"{layer}: recursion {fields[layer]:>3} px, measured {measured:>3} px")
    assert measured == fields[layer]

# %% [markdown]
# The figure draws these squares on the photo at two sizes, shown at the same display size:
# the squares of the larger image cover a quarter of the area.

# %%
content_path, style_path = L.content_image_path(), L.style_image_path()
small, large = (64, 128) if L.FAST else (256, 512)
small, large = L.lesson_size(small), 2 * L.lesson_size(small)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, size in zip(axes, (small, large), strict=True):
    photo = load_image(content_path, size)
    ax.imshow(L.to_hwc(photo), extent=(0, photo.shape[3], photo.shape[2], 0))
    for name, colour in (("relu3_1", "yellow"), (style_layers[-1], "red")):
        r = fields[name]
        y0, x0 = photo.shape[2] / 2 - r / 2, photo.shape[3] / 2 - r / 2
        ax.add_patch(plt.Rectangle((x0, y0), r, r, fill=False, color=colour, lw=2,
                                   label=f"{name}: {r} px"))
    ax.set_title(f"{size} px")
    ax.legend(loc="lower right", fontsize=8)
    ax.axis("off")
L.save_figure(fig, LESSON, "receptive_fields")

# %% [markdown]
# ## 2. What that does to a style transfer
#
# The style loss matches the statistics (Gram matrices) of what each unit sees. The largest
# structure it can reproduce is about as large as the deepest style layer's receptive field —
# in pixels. So the same transfer at twice the size paints strokes that are, relative to the
# picture, half as large, and the painting's large shapes (Starry Night's big swirls) no
# longer fit in any receptive field. Below: the same settings at two sizes, shown at the same
# display size. (The painting is resized with the output, `style_scale = 1`, as by default;
# both runs use the paper's five style layers, named, so that only the size changes.)

# %%
iters = L.iterations(150, 8)
settings = dict(network=net, iters=iters, optimizer="lbfgs", init="content", seed=0,
                style_layers=[n for n in PAPER_STYLE_LAYERS if n in fields])


def show_side_by_side(panels, name):
    """One figure of (image, title) panels in a row, saved as ``name``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5))
    for ax, (image, title) in zip(axes, panels, strict=True):
        ax.imshow(L.to_hwc(image))
        ax.set_title(title)
        ax.axis("off")
    L.save_figure(fig, LESSON, name)


single = {}
for size in (small, large):
    start = time.perf_counter()
    st = StyleTransfer(content_path, style_path, size=size, **settings)
    single[size] = (st.run(), st.history[-1].total, time.perf_counter() - start)
    L.say(f"{size} px, one scale, {iters} iterations: loss {single[size][1]:.3g} "
          f"in {single[size][2]:.1f} s")

show_side_by_side([(single[size][0], f"{size} px, one scale") for size in (small, large)],
                  "two_sizes")

# %% [markdown]
# ### The other side: the smaller picture loses its content
#
# At the smaller size the deepest style layers see a large part of the picture — relu5_1 half
# of its width at 256 px, relu4_1 a quarter. A Gram matrix of such units describes the
# painting's *composition* (where its moon and its big swirls are), and matching it paints that
# composition over the photo: with the classic pair (tubingen and The Starry Night) at 256 px,
# the church tower and the outlines of the houses fade. Lowering the style weight β does not fix it (β = 1000, 300 and 30 give
# nearly the same image at 256 px: every layer's term is normalised, so β shifts the balance
# less than one expects); leaving out the layers that see too much does. minist's default,
# `--style-layers auto` (**`minist.layer_choice.style_layers_for_size`**), keeps a style layer
# when its receptive field is at most a fifth of the longest side:
#
# $$\mathcal L_{	ext{style}}(s) = \{\, l \in \{	ext{relu1\_1}, \dots, 	ext{relu5\_1}\} :
#   r_l \le s/5 \,\}.$$
#
# Below, the layers it chooses at each size, and the smaller size again with them.

# %%
for size in (128, 256, 512, 1024):
    L.say(f"{size:>4} px: {', '.join(style_layers_for_size(net.layer_specs, size))}")
st = StyleTransfer(content_path, style_path, size=small, **{**settings, "style_layers": "auto"})
chosen = st.style_layers_at(small)
auto_small = st.run()
show_side_by_side([(single[small][0],
                    f"{small} px, the paper's {len(settings['style_layers'])} style layers"),
                   (auto_small, f"{small} px, auto: {', '.join(chosen)}")], "auto_layers")

# %% [markdown]
# ## 3. The schedule
#
# Coarse-to-fine runs the transfer at a sequence of sizes, smallest first. Each scale rebuilds
# all its targets — content features and Gram matrices — from the original images at its own
# size. The big structures are settled at the small sizes, where the receptive fields cover
# much of the picture; the larger sizes add detail to an image that is already nearly done.
#
# Each scale starts from the previous result $x^{(k-1)}$, upsampled with Lanczos ($U$). An
# upsampled image is a blurred one: it has nothing above the frequencies the smaller size could
# hold. minist fills that band from the image the run starts from, $s^{(k)}$ at this scale (the
# photo, unless `--init` says otherwise), minus what of it the smaller size kept ($U D s^{(k)}$,
# with $D$ the resize down), and clips to $[0, 1]$
# (**`minist.scales.carry_over`**):
#
# $$x_0^{(k)} = \Pi_{[0,1]}\big(U x^{(k-1)} + s^{(k)} - U D s^{(k)}\big).$$
#
# With no iterations at the coarse scale, $x^{(k-1)} = D s^{(k)}$ and the start is the photo
# itself — a single-scale run's start. With iterations, the coarse result replaces only the
# frequencies it can represent; the photo's edges and windows come back for the finer scale to
# paint over (`--scale-detail none` starts from $U x^{(k-1)}$ alone).
#
# minist's automatic schedule (`minist stylize ... --scales auto`,
# **`minist.scales.auto_sizes`**) steps down from the output size by $\sqrt 2$ — each scale
# has half the pixels of the next — and stops at 256 px (or where the chosen layers would no
# longer fit):
#
# $$s_k = \frac{s}{\sqrt2^{\,k}} \;\ge\; s_{\min}, \qquad \text{run } \dots, s_2, s_1, s_0 = s.$$
#
# Why not smaller: the first scale decides the composition. At 256 px the auto layers keep the
# photo's layout (section 2); at 128 px tubingen's houses are a few pixels tall, the painting's
# swirls and moons are painted over them, and no finer scale paints them back.
#
# An iteration costs about as much as the image has pixels (next section), so a scale $k$ steps
# below the output costs $2^{-k}$ of an output-size iteration, and *all* the coarser scales
# together cost less than one more pass at the output size: $\sum_{k \ge 1} 2^{-k} < 1$.

# %%
for size in (256, 512, 1024, 2048):
    sizes = auto_sizes(size)
    cost = sum((s / size) ** 2 for s in sizes[:-1])
    L.say(f"--size {size:>4} --scales auto: {', '.join(map(str, sizes))}  "
          f"(an iteration at every coarser scale: {cost:.2f} of one at {size} px)")

# %% [markdown]
# ## 4. Time grows with the pixels
#
# One iteration is a forward and a backward pass: every convolution touches every position, so
# its time is proportional to $H \times W$ — doubling the side makes it four times slower.
# Measured here, the median of a few iterations at each size:

# %%
sizes = [s for s in ((48, 64, 96, 128) if L.FAST else (128, 181, 256, 362))]
times = []
for size in sizes:
    st = StyleTransfer(content_path, style_path, size=size, network=net, optimizer="adam")
    st.step()  # the first step also warms up
    times.append(statistics.median(st.step().seconds for _ in range(3)))
    L.say(f"{size:>4} px: {1e3 * times[-1]:7.1f} ms per iteration")
pixels = [s * s for s in sizes]
slope = np.polyfit(pixels, times, 1)[0]
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(np.array(pixels) / 1e6, 1e3 * np.array(times), "o-")
ax.set_xlabel("megapixels (longest side squared)")
ax.set_ylabel("ms per iteration")
ax.set_title(f"about {1e3 * slope * 1e6:.0f} ms per megapixel here")
L.save_figure(fig, LESSON, "time_per_size")

# %% [markdown]
# ## 5. Coarse-to-fine against one scale
#
# The same output size as the larger run of section 2, now with the automatic schedule from
# the smaller size of section 2 (256 px in the full lesson, where it is what `scales="auto"`
# does; 64 px in the fast mode). Compare the wall time and the loss at the output size, and
# look at the two images.

# %%
plan = schedule(large, iters // 2, "auto", smallest=small)
start = time.perf_counter()
st = StyleTransfer(content_path, style_path, size=large, scales=plan.sizes,
                   scale_iters=[iters // 2] * (len(plan.sizes) - 1), **{**settings,
                                                                        "iters": iters // 2})
multi = st.run()
multi_time = time.perf_counter() - start
finals = [r.total for r in st.history if r.scale == large]
L.say(f"coarse-to-fine {plan.sizes}, {iters // 2} iterations each: loss at {large} px "
      f"{finals[-1]:.3g} in {multi_time:.1f} s",
      f"one scale at {large} px, {iters} iterations:            loss {single[large][1]:.3g} "
      f"in {single[large][2]:.1f} s")

show_side_by_side([(single[large][0], f"one scale, {iters} iterations, {single[large][2]:.0f} s"),
                   (multi, f"coarse-to-fine {'-'.join(map(str, plan.sizes))}, {multi_time:.0f} s")],
                  "coarse_to_fine")

# %% [markdown]
# ## 6. What to see
#
# * **Receptive fields**: the coloured squares are the same number of pixels on both photos;
#   on the larger one they cover a quarter of the area.
# * **Two sizes, one scale**: at the larger size the brush strokes are smaller relative to the
#   picture and the painting's largest swirls are broken into smaller ones; at the smaller size
#   the same settings paint much larger strokes over the scene.
# * **Auto layers**: with the layers whose receptive field is at most a fifth of the side, the
#   smaller picture keeps its tower and the outlines of its houses under the same strokes and
#   colours (at 256 px: relu1_1–relu3_1).
# * **Coarse-to-fine**: the result keeps the coarse run's large strokes and adds detail, and the
#   photo's edges — windows, gables, the tower — come back at each finer scale from the photo's
#   own detail; at the full lesson's sizes it takes less time than the single-scale run of the
#   same length at the output size, because most of its iterations run on smaller images.
#
# In the fast mode (64 and 128 px, a handful of iterations) the images are thumbnails and the
# strokes barely form, and the fixed cost of building each scale's targets outweighs the
# cheaper iterations, so the two runs take about as long; the receptive-field check and the
# time-per-pixel line are what it shows. Run the lesson without `MINIST_LESSON_FAST` (256 and
# 512 px) to see the strokes and the saving.
#
# ## Exercises
#
# * **`ex_scales`** — implement `minist.scales.auto_sizes(size, smallest)` (the schedule of
#   section 3) and `minist.scales.receptive_fields(steps)` (the recursion of section 1).
#   Check: `pytest -m ex_scales` (or `python tutorials/check.py ex_scales`). The check measures
#   receptive fields with the backward pass, as section 1 does — not with stored numbers.
