# %% [markdown]
# # Lesson 3 — VGG and what its layers see
#
# Gatys et al. describe images by the activations of VGG, a network trained to recognise
# objects in photographs. This lesson assembles lessons 1–2 into that network, looks at what
# its layers respond to, and checks its hand-written backward pass — the gradient with respect
# to the **image**, which is all style transfer needs (the weights stay fixed).
#
# | what | code |
# |---|---|
# | the layer tables of VGG-16 and VGG-19 | `minist.architectures.layer_table` |
# | preprocessing $x_0 = T(I)$, backward | `minist.preprocessing.preprocess_forward`, `_backward` |
# | forward to the deepest requested layer | `minist.vgg.vgg_forward` (`minist.vgg.VGG.forward`) |
# | backward to the image, gradients given at several layers | `minist.vgg.vgg_backward` |
# | loading weights | `minist.weights.store.load_weights` |
#
# Exercises it runs: `ex_relu`, `ex_vgg_backward`. In a student's copy it says in one line which
# are not written yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import time

import numpy as np

from minist.architectures import conv_shapes, downsampling_factor, layer_table
from minist.images import load_image
from minist.preprocessing import TORCHVISION, postprocess, preprocess_backward, preprocess_forward
from minist.vgg import VGG, vgg_backward, vgg_forward
from minist.weights.store import load_weights

LESSON = "03_vgg_features"
L.begin(LESSON, needs=("ex_relu", "ex_vgg_backward"))  # the exercises this lesson runs
rng = np.random.default_rng(0)
choice = L.find_weights()
L.say(f"weights: {choice.note}")
weights = load_weights(choice.path)
net = VGG(weights, device="cpu")  # float32, max pooling
print(f"{weights.architecture}: {weights.source}")
BACKWARD = L.written("ex_vgg_backward")  # in a student's copy: this lesson's exercise, done?

# %% [markdown]
# ## 1. The layer table
#
# VGG is five **blocks**. Block $b$ has 2–4 convolutions `conv{b}_{i}` ($3\times3$, stride 1,
# pad 1: the size is kept), each followed by its ReLU `relu{b}_{i}`, and ends with a
# $2\times2$, stride-2 pooling `pool{b}` that halves the size. Widths are 64, 128, 256, 512,
# 512 channels. VGG-16 has 2, 2, 3, 3, 3 convolutions per block, VGG-19 has 2, 2, 4, 4, 4.
# Only this `features` part (no classifier) is used for style transfer, so any image size works.
# Gatys et al. used VGG-19; VGG-16's layers have the same names up to `conv{b}_3`.


# %%
def print_tables():
    """VGG-19's table, with a column saying which layers VGG-16 has too."""
    in_16 = {spec.name for spec in layer_table("vgg16")}
    for arch in ("vgg19", "vgg16"):
        shapes = conv_shapes(arch)
        total = sum(np.prod(w) + np.prod(b) for w, b in shapes.values())
        print(f"{arch}: {len(shapes)} conv layers, {total / 1e6:.1f} M parameters")
    print(f"  {'layer':8s} {'kind':5s} {'channels':>10s} {'size':>6s} {'weights':>9s}  VGG-16")
    shapes = conv_shapes("vgg19")
    for spec in layer_table("vgg19"):
        conv = spec.kind == "conv"
        n = f"{np.prod(shapes[spec.name][0]):,}" if conv else ""
        channels = f"{spec.in_channels}->{spec.out_channels}" if conv else ""
        size = "1/" + str(downsampling_factor("vgg19", spec.name))
        print(f"  {spec.name:8s} {spec.kind:5s} {channels:>10s} {size:>6s} {n:>9s}  "
              f"{'yes' if spec.name in in_16 else '-'}")


print_tables()

# %% [markdown]
# ("size" is the feature map's side relative to the input's: $H_l = \lfloor H / 2^{b-1}
# \rfloor$ in block $b$, and $\lfloor H/2^b \rfloor$ after `pool{b}`.)
#
# ## 2. Preprocessing
#
# The network was trained on images prepared in one particular way, recorded in the weight
# file. minist always optimises an RGB image $I \in [0, 1]$ and maps it to the network input
#
# $$
# x_{0;\,n,c,h,w} = T(I) = \frac{s\, I_{n,\pi(c),h,w} - \mu_c}{\sigma_c},
# $$
#
# with pixel scale $s$ (1 for torchvision, 255 for the original Caffe/Keras weights), channel
# order $\pi$ (RGB, or BGR for Caffe), per-channel mean $\mu$ and std $\sigma$. $T$ is affine
# and per channel, so its backward is a per-channel scale: $\partial\mathcal{L}/\partial
# I_{\pi(c)} = (s/\sigma_c)\, \partial\mathcal{L}/\partial x_{0;c}$.

# %%
prep = weights.preprocessing
size = L.lesson_size(224 if not L.FAST else 128)
photo = load_image(L.content_image_path(), size)
x0, prep_cache = preprocess_forward(photo, prep)
print("preprocessing of these weights:", prep.describe())
print("image I:    per-channel mean", photo.mean(axis=(0, 2, 3)).round(3),
      "std", photo.std(axis=(0, 2, 3)).round(3))
print("input x_0:  per-channel mean", x0.mean(axis=(0, 2, 3)).round(3),
      "std", x0.std(axis=(0, 2, 3)).round(3), "(about 0 and 1 for a typical photo)")
err = np.abs(postprocess(x0, prep) - photo).max()
print(f"postprocess(T(I)) == I: max error {err:.1e}")
g = rng.standard_normal(x0.shape).astype(np.float32)
scale = np.array([prep.pixel_scale / s for s in prep.std], np.float32).reshape(1, 3, 1, 1)
expected = g * scale if prep.channel_order == "RGB" else (g * scale)[:, ::-1]
print("preprocess_backward == (s / sigma) dx_0 (channels reordered):",
      np.allclose(preprocess_backward(g, prep_cache), expected))
assert err < 1e-5

# %% [markdown]
# ## 3. Forward: only as deep as needed
#
# Writing $f_k$ for step $k$ of the table (a convolution, a ReLU or a pooling),
#
# $$
# x_k = f_k(x_{k-1}), \qquad k = 1, \dots, K,
# $$
#
# where $K$ is the **deepest requested layer**: `vgg_forward` stops there (style transfer
# never looks deeper), and returns the activation of every requested layer, of shape
# $(N, C_l, H_l, W_l)$. Asking for a shallow layer is much cheaper:

# %%
for layers in (["relu1_1"], ["relu3_1"], ["relu1_1", "relu5_1"]):
    start = time.perf_counter()
    feats, cache = net.forward(photo, layers)
    seconds = time.perf_counter() - start
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feats.items())
    print(f"requested {layers}: ran {len(cache.layer_caches)} of {len(net.layer_specs)} layers "
          f"in {seconds * 1e3:.0f} ms -> {shapes}")

# %% [markdown]
# ## 4. What the layers see
#
# Six channels each of `relu1_1` … `relu5_1` for the content photo (the six with the largest
# spatial variation; each map scaled to its own range, black = 0). What to look for, with real
# weights: the maps **halve in size** from block to block; `relu1_1` looks like the photo
# filtered — edges, colour patches, the sky; by `relu3_1` the maps pick out textured regions
# (the façades, the trees, the reflections); `relu4_1` and `relu5_1` are coarse and sparse,
# firing on a few larger parts of the scene, and one channel alone no longer lets you read the
# photo. (Some deep channels light up along the image's edge: they respond to the zero
# padding, which looks like a dark frame to the network.) Lesson 4 reconstructs the photo
# from each of these layers and shows the same loss of detail with depth.

# %%
plt = L.pyplot()
layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
feats, cache = net.forward(photo, layers)
n_show = 6
fig, axes = plt.subplots(len(layers), n_show + 1, figsize=(2.1 * (n_show + 1), 9))
for r, name in enumerate(layers):
    a = feats[name][0]  # (C_l, H_l, W_l)
    top = np.argsort(a.reshape(a.shape[0], -1).std(axis=1))[::-1][:n_show]
    axes[r, 0].imshow(L.to_hwc(photo))
    axes[r, 0].set_ylabel(f"{name}\n{a.shape[2]}x{a.shape[1]}", fontsize=9)
    for c, ch in enumerate(top, start=1):
        axes[r, c].imshow(a[ch], cmap="magma", vmin=0, vmax=max(a[ch].max(), 1e-12),
                          interpolation="nearest")
        axes[r, c].set_title(f"channel {ch}", fontsize=8)
    for ax in axes[r]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle(f"feature maps of {weights.architecture} ({choice.path.name}), photo {size}px")
L.save_figure(fig, LESSON, "feature_maps")
for name in layers:
    a = feats[name]
    print(f"{name}: shape {tuple(a.shape)}, {100 * float((a > 0).mean()):.0f}% of values > 0")

# %% [markdown]
# ## 5. Backward: gradients handed in at several layers
#
# Style transfer puts a loss on several layers at once, $\mathcal{L} = \sum_l \mathcal{L}_l(x_l)$.
# The chain rule, run backwards through the layers, gives the gradient reaching $x_k$ as what is
# handed in at layer $k$ (if it is a requested layer) **plus** what flows back from above:
#
# $$
# \bar x_k = \frac{\partial \mathcal{L}_k}{\partial x_k} + J_{f_{k+1}}^\top\, \bar x_{k+1},
# \qquad \bar I = J_T^\top\, \bar x_0 ,
# $$
#
# where $J_{f}^\top \bar x$ is exactly the backward of lessons 1–2 (`conv2d_backward`'s
# $dx$, `relu_backward`, `pool_backward`). `vgg_backward(grads, cache)` starts at the deepest
# layer that has a gradient, walks the cached layers in reverse and adds `grads[name]` where the
# chain passes `name`. So one backward pass serves every layer, and it is **linear** in the
# handed-in gradients — which we check:

# %%
if BACKWARD:
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    feats, cache = net.forward(photo, layers)
    g = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in feats.items()}
    together = net.backward(g, cache)
    separately = sum(net.backward({k: v}, cache) for k, v in g.items())
    err = np.abs(together - separately).max() / np.abs(together).max()
    print(f"backward(all layers) vs sum of backward(each layer): relative difference {err:.1e}")
    assert err < 1e-4  # float32
else:
    L.not_yet("ex_vgg_backward", "the backward's linearity check (section 5)")

# %% [markdown]
# ### Receptive fields
#
# Hand in a gradient at **one position** of a layer (all its channels, at the centre) and look
# at where the image gradient is non-zero: that is the set of pixels the position depends on,
# its *receptive field*. Each $3\times3$ convolution widens it by 2 steps of the current
# resolution and each pooling doubles the step, so it grows from 3 px at `relu1_1` to over 100 px
# at `relu5_1` (dashed squares: the theoretical size, computed below from the layer table).
# "Non-zero" means above $10^{-5}$ of the largest value: the float32 Winograd convolutions leave
# rounding residues of about $10^{-7}$ of it a few pixels outside the field, which a strict
# `!= 0` would count.


# %%
def receptive_field(arch, layer):
    """Side of the receptive field of one position of ``layer``, in input pixels."""
    side, step = 1, 1
    for spec in layer_table(arch):
        if spec.kind == "conv":
            side += 2 * step  # a 3x3 kernel reaches one position further on each side
        elif spec.kind == "pool":
            side += step  # a 2x2 window reaches one more input position
            step *= 2
        if spec.name == layer:
            return side
    raise ValueError(layer)


if BACKWARD:
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    feats, cache = net.forward(photo, layers)
    H, W = photo.shape[2:]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3))
    for ax, name in zip(axes, layers, strict=True):
        a = feats[name]
        g = np.zeros_like(a)
        g[:, :, a.shape[2] // 2, a.shape[3] // 2] = 1.0
        d_image = np.abs(vgg_backward({name: g}, cache)).sum(axis=(0, 1))
        rf = receptive_field(weights.architecture, name)
        ys, xs = np.nonzero(d_image > 1e-5 * d_image.max())  # above float32 rounding
        seen = (ys.max() - ys.min() + 1) if len(ys) else 0
        ax.imshow(d_image ** 0.5, cmap="gray")
        step = downsampling_factor(weights.architecture, name)  # input pixels per position
        cy = (a.shape[2] // 2) * step + (step - 1) / 2  # centre of the chosen position, in pixels
        cx = (a.shape[3] // 2) * step + (step - 1) / 2
        ax.add_patch(plt.Rectangle((cx - rf / 2, cy - rf / 2), rf, rf, fill=False, ls="--",
                                   ec="tab:orange"))
        ax.set_title(f"{name}: {seen} px seen, theory {rf} px", fontsize=9)
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.axis("off")
        capped = f" (capped by the {H}-px image)" if rf > H else ""
        print(f"{name}: image gradient non-zero over {seen} rows{capped}; theoretical receptive "
              f"field {rf} px")
    fig.suptitle("|d image| for one centre position of each layer (sqrt scale)")
    L.save_figure(fig, LESSON, "receptive_fields")
else:
    L.not_yet("ex_vgg_backward", "the receptive-field figure")

# %% [markdown]
# ## 6. The gradient check
#
# Finite differences on a **tiny random VGG** in float64 (the real one is float32 and far too
# big to perturb pixel by pixel): VGG-19's layer table with 2–5 channels per block instead of
# 64–512, He-initialised weights $w \sim \mathcal{N}(0, 2/\text{fan-in})$ so activations keep
# their scale, a $16\times16$ image, and gradients handed in at four layers at once. The scalar
# is $\mathcal{L}(I) = \sum_l \langle g_l, x_l(I) \rangle$, whose gradient is `vgg_backward(g)`.

# %%
arch, channels = "vgg19", (2, 3, 4, 5, 5)
params = {}
for name, (w_shape, b_shape) in conv_shapes(arch, channels).items():
    fan_in = w_shape[1] * w_shape[2] * w_shape[3]
    params[name] = (rng.standard_normal(w_shape) * np.sqrt(2.0 / fan_in),
                    rng.standard_normal(b_shape) * 0.1)
layer_specs = layer_table(arch, channels)
image = rng.uniform(0, 1, (1, 3, 16, 16))  # float64
layers = ["relu1_1", "conv2_2", "relu3_1", "relu5_1"]


numerical_gradient, relative_error = L.numerical_gradient, L.relative_error  # lesson 01


if BACKWARD:
    for pooling in ("max", "avg"):
        feats, cache = vgg_forward(image, params, layer_specs, TORCHVISION, layers, pooling)
        g = {k: rng.standard_normal(v.shape) for k, v in feats.items()}

        def loss():
            f, _ = vgg_forward(image, params, layer_specs, TORCHVISION, layers,
                               pooling)  # noqa: B023
            return sum(float(np.sum(f[k] * g[k])) for k in layers)  # noqa: B023

        analytic = vgg_backward(g, cache)
        numeric = numerical_gradient(loss, image)
        err = relative_error(analytic, numeric)
        print(f"tiny {arch} ({pooling} pooling), gradients at {layers}: relative error {err:.1e}")
        assert err < 1e-7
else:
    L.not_yet("ex_vgg_backward", "the gradient check of section 6")

# %% [markdown]
# ## Exercise
#
# * **`ex_vgg_backward`** — `minist.vgg.vgg_backward` (section 5): walk the cached layers in
#   reverse, accumulate the handed-in gradients where the chain passes their layer, call each
#   layer's backward, and finish with `preprocess_backward`. Check:
#   `python tutorials/check.py ex_vgg_backward` (or `pytest -m ex_vgg_backward`)
#
# The check runs finite differences on tiny random networks (both poolings, both preprocessings)
# and compares with gradients handed in one layer at a time. Then rerun this lesson.
