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
# # Lesson 8 — Running on a GPU
#
# Nothing in the mathematics of lessons 1–7 mentions a device. minist runs the same lines on the
# CPU (NumPy) and on an NVIDIA GPU (CuPy, a NumPy look-alike whose arrays live in GPU memory).
# This lesson shows the one rule that makes that work, the few places where the device is
# chosen, the CUDA kernels written for the losses, and — when a GPU is present — how much faster
# it is. Without a GPU (a laptop, the project's CI) the lesson runs on the CPU, says what it
# cannot show, and still measures where the CPU's time goes.
#
# From the command line the whole difference is one option:
#
# ```sh
# pip install -e '.[cuda]'        # CuPy for CUDA 12
# minist stylize photo.jpg painting.jpg -o out.png --device cuda
# ```
#
# Run it: `python tutorials/08_gpu.py` from the repository root (or open it as a notebook with
# Jupytext). `MINIST_LESSON_FAST=1` makes it small and quick.
#
# Exercises it runs: `ex_to_device`, `ex_relu`, `ex_vgg_backward`, `ex_content_loss`, `ex_gram`,
# `ex_style_loss`, `ex_tv_loss`. In a student's copy it says in one line which are not written
# yet, and skips (or stops at) what needs them.

# %%
import sys, pathlib
sys.path.insert(0, str(pathlib.Path.cwd() if "__file__" not in globals() else pathlib.Path(__file__).resolve().parent))
import lesson_utils as L

# %%
import re
import time

import numpy as np

from minist.backend import (
    get_array_module,
    gpu_available,
    resolve_device,
    to_device,
    to_numpy,
)
from minist.errors import MinistError
from minist.layers import (
    conv2d_backward,
    conv2d_forward,
    pool_backward,
    pool_forward,
    relu_backward,
    relu_forward,
)
from minist.losses import get_loss_backend, reference
from minist.preprocessing import preprocess_forward
from minist.stylize import StyleTransfer
from minist.vgg import VGG
from minist.weights.store import load_weights

LESSON = "08_gpu"
L.begin(LESSON, needs=(  # the exercises this lesson runs
    "ex_to_device", "ex_relu", "ex_vgg_backward", "ex_content_loss", "ex_gram",
    "ex_style_loss", "ex_tv_loss",
))
plt = L.pyplot()

# %% [markdown]
# ## 1. The array module follows the arrays
#
# Every numerical function in minist starts with
#
# ```python
# xp = get_array_module(x)     # cupy if x is a CuPy array, else numpy
# ```
#
# and then writes `xp.zeros`, `xp.sum`, `x @ y` … — never `np.` on data. So
# `minist.losses.reference.style_layer_loss(F, A)` computes on the GPU when `F` lives there,
# with the same lines. The device is *chosen* in a few places only, all in `minist/backend.py`:
#
# | `minist.backend.` | what it does |
# |---|---|
# | `get_array_module(*arrays)` | `cupy` if any argument is a CuPy array, else `numpy` |
# | `resolve_device(name)` | checks `"cpu"`/`"cuda"`; one-line error saying what is missing |
# | `to_device(x, device, dtype)` | copies to the device (only if needed), casts |
# | `to_numpy(x)` | back to a NumPy array (copies from the GPU) |
# | `gpu_available()` | CuPy installed and a CUDA GPU visible |
#
# `minist.vgg.VGG(weights, device=...)` moves the weights once; `StyleTransfer` moves the image
# once (`to_device`); after that every array an operation produces is on the same device, and
# only scalars (`float(loss)`) and the final image (`to_numpy`) come back.

# %%
GPU = gpu_available()
L.say(f"CuPy with a CUDA GPU available: {GPU}")
try:
    resolve_device("cuda")
except MinistError as error:
    L.say(f"resolve_device('cuda') says: {error}")
    L.say("WITHOUT A GPU this lesson cannot show GPU timings or the CUDA kernels running; it runs "
          "every step on the CPU and measures the CPU instead.")
devices = ["cpu", "cuda"] if GPU else ["cpu"]

# %% [markdown]
# **Check: one code path.** The same function on the same numbers on every device we have, and
# `to_device`/`to_numpy` round trips that keep the values (and cast when asked).

# %%
rng = np.random.default_rng(0)
F = rng.standard_normal((64, 900)).astype(np.float32)
A = reference.gram_matrix(rng.standard_normal((64, 900)).astype(np.float32))
values = {}
for device in devices:
    F_dev, A_dev = to_device(F, device), to_device(A, device)
    E, dF = reference.style_layer_loss(F_dev, A_dev)
    xp = get_array_module(dF)
    values[device] = (float(E), to_numpy(dF))
    L.say(f"{device:>4}: get_array_module -> {xp.__name__:<6} E = {float(E):.6f}")
    back = to_numpy(to_device(F, device, np.float64))
    assert back.dtype == np.float64 and np.array_equal(back, F.astype(np.float64))
if GPU:
    rel = np.abs(values["cuda"][1] - values["cpu"][1]).max() / np.abs(values["cpu"][1]).max()
    L.say(f"CPU vs GPU: |dE| = {abs(values['cuda'][0] - values['cpu'][0]):.1e}, "
          f"max relative gradient difference {rel:.1e} (float32 rounding)")
    assert rel < 1e-4

# %% [markdown]
# ## 2. Faster kernels for the losses, same numbers
#
# The readable loss functions (`minist.losses.reference`) make several passes over memory: a
# difference, a square, a sum. `minist.losses` dispatches each call to the fastest version for
# the array's device (`minist.losses.dispatch.get_loss_backend`):
#
# * CPU: Numba kernels (`minist/losses/kernels_numba.py`) where they win;
# * GPU: CUDA kernels (`minist/losses/kernels_cupy.py`), compiled by CuPy on first use. One
#   kernel, `diff_sumsq`, forms $d = a - b$, writes the gradient and adds $d^2$ to a float64
#   sum in one pass (the content loss, Eq. 1–2, and $G - A$ of the style loss, Eq. 4); another
#   computes the squared total variation and its gradient with one thread per pixel. The Gram
#   matrix and the style gradient's product (lesson 05) are matrix products: cuBLAS, through
#   `@`.
#
# **Check.** Each dispatched function against the reference, on every device we have.

# %%
image = rng.uniform(0, 1, (1, 3, 96, 128)).astype(np.float32)
P = rng.standard_normal(F.shape).astype(np.float32)
for device in devices:
    F_dev, P_dev, A_dev, x_dev = (to_device(a, device) for a in (F, P, A, image))
    fast = get_loss_backend(F_dev)
    pairs = {
        "content_loss": (fast.content_loss(F_dev, P_dev), reference.content_loss(F_dev, P_dev)),
        "style_layer_loss": (fast.style_layer_loss(F_dev, A_dev),
                             reference.style_layer_loss(F_dev, A_dev)),
        "tv_loss": (fast.tv_loss(x_dev), reference.tv_loss(x_dev)),
    }
    for name, ((v1, g1), (v2, g2)) in pairs.items():
        dv = abs(float(v1) - float(v2)) / abs(float(v2))
        dg = float(abs(g1 - g2).max() / abs(g2).max())
        L.say(f"{device:>4} {name:<17} from {fast.choice[name]:<9}: value rel. diff {dv:.1e}, "
              f"gradient rel. diff {dg:.1e}")
        assert dv < 1e-5 and dg < 1e-5
if not GPU:
    L.say("(no GPU: the CUDA kernels were not run here)")


# %% [markdown]
# ## 3. Where the time goes: VGG layer by layer
#
# One iteration of style transfer is one forward and one backward pass through VGG (plus the
# losses, which are cheap). We time each layer's forward and backward — the convolutions are
# matrix products (Winograd or im2col + GEMM, lesson 1), ReLU and pooling only move memory — and sum them
# per block. On a GPU the work is *launched* asynchronously, so each timing waits for the
# device to finish (`synchronize`) before reading the clock.

# %%
def synchronize(xp):
    """Wait until the device has finished the work queued so far (no-op on the CPU)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def best_time(fn, xp, repeats):
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    synchronize(xp)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(xp)
        best = min(best, time.perf_counter() - start)
    return best


def layer_times(net, image, repeats):
    """{(block, kind): seconds of forward + backward} for every step of ``net``."""
    xp = get_array_module(net.params["conv1_1"][0])
    x, _ = preprocess_forward(to_device(image, net.device, net.dtype), net.preprocessing)
    times = {}
    for spec in net.layer_specs:
        if spec.kind == "conv":
            w, b = net.params[spec.name]

            def forward(x=x, w=w, b=b, name=spec.name):  # as the network runs it: its
                return conv2d_forward(x, w, b, stride=1, pad=1, config=net.config,  # config and
                                      weight_cache=net.weight_caches[name])  # kept transforms

            def backward(dy, cache):
                return conv2d_backward(dy, cache)[0]
        elif spec.kind == "relu":
            def forward(x=x):
                return relu_forward(x)

            backward = relu_backward
        else:
            def forward(x=x):
                return pool_forward(x, net.pooling, kernel=2, stride=2)

            backward = pool_backward
        y, cache = forward()
        dy = xp.ones_like(y)
        seconds = best_time(forward, xp, repeats)
        seconds += best_time(lambda dy=dy, cache=cache, bwd=backward: bwd(dy, cache), xp, repeats)
        block = int(re.search(r"\d", spec.name).group())  # conv3_2 -> block 3
        kind = "conv" if spec.kind == "conv" else "relu + pool"
        times[block, kind] = times.get((block, kind), 0.0) + seconds
        x = y
    return times


choice = L.find_weights()
L.say(choice.note + " (timings do not depend on the weights' values)")
weights = load_weights(choice.path)
nets = {device: VGG(weights, device=device) for device in devices}
size = L.lesson_size(256 if not L.FAST else 128)
repeats = L.iterations(5, 2)
timing_image = rng.uniform(0, 1, (1, 3, max(size * 3 // 4, 32), max(size, 32)))  # 5 poolings
timing_image = timing_image.astype(np.float32)
per_layer = {device: layer_times(net, timing_image, repeats) for device, net in nets.items()}
for device, times in per_layer.items():
    total = sum(times.values())
    conv = sum(v for (_, kind), v in times.items() if kind == "conv")
    L.say(f"{device:>4}: one forward + backward through {len(nets[device].layer_specs)} layers at "
          f"{size} px: {1e3 * total:.1f} ms, {100 * conv / total:.0f}% of it in convolutions")

# %% [markdown]
# ## 4. A whole style transfer, on every device we have
#
# The same `StyleTransfer` with `device="cpu"` and `device="cuda"`. The loss and gradient at the
# first image must agree up to float32 rounding; the time per iteration is what changes.

# %%
iters = L.iterations(10, 3)
seconds_per_iter, first = {}, {}
for device, net in nets.items():
    st = StyleTransfer(L.content_image_path(), L.style_image_path(), network=net, size=size,
                       iters=iters, device=device, optimizer="lbfgs")
    e = st.evaluate(st.image)
    first[device] = (e.total, to_numpy(e.grad))
    st.run()
    seconds_per_iter[device] = float(np.median([r.seconds for r in st.history]))
    L.say(f"{device:>4}: {size} px, {1e3 * seconds_per_iter[device]:.0f} ms per iteration "
          f"(median of {iters}), loss {st.history[0].total:.2f} -> {st.history[-1].total:.2f}")
if GPU:
    g_cpu, g_gpu = first["cpu"][1], first["cuda"][1]
    rel = np.abs(g_gpu - g_cpu).max() / np.abs(g_cpu).max()
    L.say(f"same image, CPU vs GPU: loss {first['cpu'][0]:.5f} vs {first['cuda'][0]:.5f}, "
          f"max relative gradient difference {rel:.1e}")
    L.say(f"GPU speed-up per iteration: {seconds_per_iter['cpu'] / seconds_per_iter['cuda']:.1f}x")
else:
    L.say("no GPU: no CPU/GPU comparison here; run this lesson on a machine with CuPy and an "
          "NVIDIA GPU to see it")

# %% [markdown]
# ## 5. What to see
#
# Left: forward + backward time per VGG block, split into convolutions and the rest. The
# convolutions dominate; block 1 has the largest feature maps and few channels, block 4 and 5 the
# most channels on small maps. How the time splits over the blocks depends on the algorithm each
# convolution gets (Winograd or im2col + GEMM, lesson 1) and on the machine: run the lesson twice
# on a shared machine and the bars move. Right: seconds per style-transfer iteration for each
# device we have (with a GPU, expect one or two orders of magnitude between the bars; without one
# only the CPU bar is drawn and the title says so).

# %%
fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 1]})
blocks = np.arange(1, 6)
width = 0.8 / len(devices)
for k, device in enumerate(devices):
    times = per_layer[device]
    conv = np.array([1e3 * times.get((b, "conv"), 0.0) for b in blocks])
    rest = np.array([1e3 * times.get((b, "relu + pool"), 0.0) for b in blocks])
    offset = (k - (len(devices) - 1) / 2) * width
    ax.bar(blocks + offset, conv, width, label=f"{device}: conv", color=f"C{2 * k}")
    ax.bar(blocks + offset, rest, width, bottom=conv, label=f"{device}: relu + pool",
           color=f"C{2 * k + 1}")
ax.set_xticks(blocks, [f"block {b}" for b in blocks])
ax.set_ylabel("ms (forward + backward)")
ax.set_yscale("log" if GPU else "linear")
ax.set_title(f"VGG layer times at {size} px")
ax.legend(fontsize=8)
ax2.bar(devices, [seconds_per_iter[d] for d in devices], color=["C0", "C2"][: len(devices)])
ax2.set_ylabel("seconds per iteration")
ax2.set_title("style transfer" + ("" if GPU else " (no GPU on this machine)"))
L.save_figure(fig, LESSON, "timings")

# %% [markdown]
# ## Exercise
#
# * **`ex_to_device`** — implement `minist.backend.to_device(array, device, dtype=None)`: copy
#   to `"cpu"` or `"cuda"` only when needed, cast when `dtype` is given, and give the one-line
#   error of `resolve_device` for an unknown or unavailable device. Check:
#   `python tutorials/check.py ex_to_device` (or `pytest -m ex_to_device`; the GPU half runs
#   only where a GPU is).
#
# Try afterwards: on a GPU, time `minist.losses.reference.tv_loss` against the CUDA kernel
# (`minist.losses.kernels_cupy.tv_loss`) on a 512 x 512 image and compare with the table in
# `minist/losses/kernels_cupy.py`.
