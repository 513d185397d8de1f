r"""How much memory a style transfer needs, estimated before the run, and the check that uses it.

A run that does not fit should fail in its first second with one clear line, not after minutes
with a killed process. The peak of a style transfer iteration is easy to predict because minist's
layers allocate in a fixed pattern; :func:`estimate_peak_bytes` replays that pattern on a ledger
of live bytes instead of arrays. For an image of :math:`S = HW` pixels, ``i`` bytes per number:

* **Forward** (kept for the backward, :mod:`minist.vgg`): each convolution's input (its cache
  holds a reference), each ReLU's output where it is the mask :math:`[x > 0]` (not before a max
  pooling, whose output supplies the mask), each max-pool's argmax (1 byte per *output*
  element), the requested features. A convolution and its ReLU are one operation with one output.
  Transient: Winograd's blocks of :math:`V, M` (:func:`minist.layers.winograd.block_plan`), or
  im2col's padded input and one block of columns (``im2col_block_bytes``).
* **Backward**: the caches stay alive throughout; at each layer the incoming gradient and the
  outgoing one coexist, and a requested layer's loss gradient is made when the backward reaches
  it and added in place. The peak is reached in block 1, where the 64-channel maps live.
* **State**: the Winograd transforms of the weights (:math:`(m+2)^2/9` times the weights, for
  the forward and the input-gradient kernels; while a layer's are made, on its first call, two
  float64 copies more), the targets (content features; one Gram per style layer, or with
  spatial control one per region, and the region's guide at each layer), the content image,
  the image, the last finite one, the last gradient, and what the optimizer actually used
  holds (:meth:`minist.optim.Optimizer.state_bytes`: Adam :math:`m, v` and its temporaries;
  L-BFGS :math:`2\,\text{history}` pairs and its line search's arrays). A luminance run
  (``--original-colors luminance``) optimises a one-channel image and shows the network its
  gray RGB.
* **Targets**: before the first iteration, a forward pass on the content image and one on each
  style image (at its own size: ``--style-scale``, several styles) keep their features, Grams
  and guides; this is the peak when the paintings are larger than the photo.

The weights themselves are loaded before the check runs, so they are not counted (the memory
available then is what is left beside them). For VGG-19 with the default layers and L-BFGS the
estimate is about 2.25 kB per pixel in float32 (2.6 GiB at 1024 px, 9.2 GiB at 2048 px, 36 GiB
at 4096 px), dominated by the block-1 maps (64 channels at full resolution), plus about
0.4 GiB of transforms. The modelled peak is multiplied by ``SAFETY`` and ``OVERHEAD`` is added:
on the CPU the estimate is tested against the measured peak resident set of runs across sizes,
several styles, masks and colour modes (``tests/test_memory.py``): never below it, at most 15%
plus ``OVERHEAD`` above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minist.architectures import BLOCK_CHANNELS, LayerSpec, layer_table
from minist.errors import MinistError
from minist.execution import ExecutionConfig, default_config
from minist.layers import conv, winograd
from minist.vgg import plan_operations

# The planner replays what the layers do under an execution config (minist.execution): the same
# algorithm choice, tile size, block sizes and threads. `config` below is one.

# The model replays the arrays minist allocates; what it leaves out (allocator rounding, small
# temporaries, Python objects) is the margin: modelled peak x SAFETY + OVERHEAD. On the CPU the
# replay is tested against the measured peak RSS (tests/test_memory.py: never below it, at most
# 15% + OVERHEAD above). On the GPU (Winograd too, as on the CPU) the 30% margin measured
# 1.4x CuPy's pool high-water mark at 4096 px (README); tests/test_memory.py compares the two
# where a GPU is present.
SAFETY = {"cpu": 1.0, "cuda": 1.30}
OVERHEAD = {"cpu": 16 * 2**20, "cuda": 256 * 2**20}  # interpreter/cuBLAS work space, bytes


class _Ledger:
    """Live bytes and their high-water mark, as arrays are allocated and freed."""

    def __init__(self, start: int = 0):
        self.live = start
        self.peak = start

    def alloc(self, n: int) -> None:
        self.live += n
        self.peak = max(self.peak, self.live)

    def free(self, n: int) -> None:
        self.live -= n

    def transient(self, n: int) -> None:
        """An array that lives only inside one call (it is freed before the next line)."""
        self.peak = max(self.peak, self.live + n)


def _shapes(layer_specs: list[LayerSpec], height: int, width: int) -> list[tuple[int, int, int]]:
    """(channels, h, w) of each layer's output; 2x2 stride-2 pooling floors odd sizes."""
    out, h, w = [], height, width
    for spec in layer_specs:
        if spec.kind == "pool":
            h, w = (h - 2) // 2 + 1, (w - 2) // 2 + 1
        out.append((spec.out_channels, h, w))
    return out


class _PlannedOp(NamedTuple):
    """One operation of :func:`minist.vgg.plan_operations` (a layer, or a convolution and its ReLU)
    with its shapes: ``shape`` its output, ``before`` its input (c, h, w)."""

    kind: str
    name: str  # the name of its output
    shape: tuple
    before: tuple
    mask_kept: bool  # conv_relu: the ReLU's output is kept as its mask (not before max pooling)


def _plan(layer_specs, height, width, wanted, pooling: str) -> list[_PlannedOp]:
    """The operations of :func:`minist.vgg.vgg_forward` (:func:`minist.vgg.plan_operations`),
    sized."""
    shapes = dict(zip([s.name for s in layer_specs], _shapes(layer_specs, height, width),
                      strict=True))
    plan, prev = [], (3, height, width)
    for op in plan_operations(layer_specs, wanted, pooling):
        shape = shapes[op.spec.name]
        mask_kept = not (op.kind == "conv_relu" and op.pool_mask)
        plan.append(_PlannedOp(op.kind, op.spec.name, shape, prev, mask_kept))
        prev = shape
    return plan


def _winograd_blocks(C: int, F: int, h: int, w: int, i: int, config: ExecutionConfig) -> int:
    """Bytes of the V and M blocks of one Winograd call: those of the plan the call itself makes
    (:func:`minist.layers.winograd.block_plan`: one block per worker thread, and the smaller
    last block, allocated while the full-size one is still held)."""
    m = config.winograd_tile
    workers, rows = winograd.block_plan(C, F, h, w, i, m, config)
    total = workers * winograd.block_bytes(C, F, w, i, m, rows)
    last = -(-h // m) % rows
    return total + (winograd.block_bytes(C, F, w, i, m, last) if last else 0)


def _transforming(C: int, F: int, config: ExecutionConfig) -> int:
    """Bytes live, besides the result, while :func:`minist.layers.winograd.weight_transform`
    makes the transform of a layer's ``F x C x 3 x 3`` kernel: ``G w G^T`` and its transposed
    copy, :math:`\alpha^2 F C` numbers each, in float64 (a layer's first call)."""
    return 2 * (config.winograd_tile + 2) ** 2 * C * F * 8


def _conv_forward(ledger, C, hi, wi, c, h, w, i, config, first=False) -> None:
    """One convolution's forward: its output is allocated (and kept by the caller's logic).
    ``first``: the layer's first call, which transforms its weights."""
    if config.uses_winograd(C):
        if first:
            ledger.transient(_transforming(C, c, config))
        ledger.alloc(c * h * w * i)  # y (the kernels read the image unpadded)
        ledger.transient(_winograd_blocks(C, c, h, w, i, config))
        return
    K = 9 * C
    rows = conv.rows_per_chunk(config.im2col_block_bytes, K, h, w, i)
    work = C * (hi + 2) * (wi + 2) * i + K * rows * w * i  # x~, one block of columns
    ledger.alloc(work)
    ledger.alloc(c * h * w * i)  # y
    ledger.transient(c * rows * w * i)  # W_mat X_col of one block
    ledger.free(work)


def _conv_backward(ledger, C, hi, wi, c, h, w, i, config, first=False) -> None:
    """One convolution's input gradient: allocates dx (the caller frees the incoming one).
    ``first``: the layer's first backward, which transforms its flipped weights."""
    if config.uses_winograd(c):  # dx = dy * flip(w)^T: a convolution with c input channels
        if first:
            ledger.transient(_transforming(c, C, config))
        ledger.alloc(C * hi * wi * i)
        ledger.transient(_winograd_blocks(c, C, hi, wi, i, config))
        return
    K = 9 * c  # stride 1: the forward im2col of dy padded by 1, with C outputs
    rows = conv.rows_per_chunk(config.im2col_block_bytes, K, hi, wi, i)
    work = c * (h + 2) * (w + 2) * i + K * rows * wi * i
    ledger.alloc(work)
    ledger.alloc(C * hi * wi * i)
    ledger.transient(C * rows * wi * i)
    ledger.free(work)


def _forward(ledger: _Ledger, plan, height, width, i, wanted, config, first=False) -> None:
    """Replay :func:`minist.vgg.vgg_forward` on ``ledger`` (what its caches keep stays live);
    ``first``: the network's first forward pass (it transforms the weights)."""
    x_bytes = 3 * height * width * i
    ledger.transient(x_bytes)  # s I, before - mu / sigma
    ledger.alloc(x_bytes)  # x_0 = T(I), kept by conv1_1's cache
    for k, op in enumerate(plan):
        c, h, w = op.shape
        C, hi, wi = op.before
        n = c * h * w  # elements of this operation's output
        if op.kind in ("conv", "conv_relu"):
            _conv_forward(ledger, C, hi, wi, c, h, w, i, config, first)  # ReLU fused
        elif op.kind == "relu":
            ledger.alloc(n * i)  # y = max(x, 0), kept; the cache's mask [x > 0] is y itself
        else:
            ledger.alloc(n)  # argmax, kept
            ledger.alloc(n * i)  # y
        # The input stays alive if a convolution's cache holds it, a ReLU's mask is it, or it
        # is a requested feature.
        kept = (op.kind in ("conv", "conv_relu") or k == 0 or plan[k - 1].name in wanted
                or (plan[k - 1].kind == "conv_relu" and plan[k - 1].mask_kept))
        if not kept:
            ledger.free(C * hi * wi * i)


def _backward(ledger, plan, height, width, i, wanted, config, regions: int = 0,
              first: bool = False) -> None:
    """Replay :func:`minist.vgg.vgg_backward` (caches already counted). Each layer's loss
    gradient is made when the backward reaches it and added in place: at most two more arrays
    of the layer's size while it is made (content: ``F - P`` and its scaled copy; guided, one
    term per region: ``F o T``, ``dF`` and the running sum)."""
    dx = 0  # bytes of the current gradient
    for op in reversed(plan):
        c, h, w = op.shape
        C, hi, wi = op.before
        n, m = c * h * w, C * hi * wi
        if op.name in wanted:
            ledger.alloc(n * i)  # the layer's loss gradient
            ledger.transient((2 if regions > 1 else 1) * n * i)
            if dx:  # dx += g
                ledger.free(n * i)
            else:
                dx = n * i
        if not dx:
            continue
        if op.kind in ("conv", "conv_relu"):
            if op.kind == "conv_relu" and not config.uses_winograd(c) and op.mask_kept:
                ledger.alloc(n * i)  # dz = dy * [y > 0]
                ledger.free(dx)
                dx = n * i
            _conv_backward(ledger, C, hi, wi, c, h, w, i, config, first)
        elif op.kind == "relu":
            ledger.transient(m)  # [y > 0]
            ledger.alloc(m * i)  # dy * [y > 0]
        else:
            ledger.transient(n * (1 + i))  # dy * [y > 0] (ReLU below) or dy * (argmax == t)
            ledger.alloc(m * i)  # dx
        ledger.free(dx)
        dx = m * i
    ledger.alloc(3 * height * width * i)  # dI = J_T^T dx_0
    ledger.free(dx)


def _transform_bytes(layer_specs, config: ExecutionConfig, i: int) -> int:
    """The Winograd weight transforms kept for the run (forward and input-gradient kernels)."""
    alpha2 = (config.winograd_tile + 2) ** 2
    total = 0
    for spec in layer_specs:
        if spec.kind == "conv":
            if config.uses_winograd(spec.in_channels):
                total += alpha2 * spec.in_channels * spec.out_channels * i
            if config.uses_winograd(spec.out_channels):
                total += alpha2 * spec.in_channels * spec.out_channels * i
    return total


def _run_layers(architecture, layers, block_channels):
    table = layer_table(architecture, tuple(block_channels))
    names = [spec.name for spec in table]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise MinistError(f"unknown layer {unknown[0]!r} for {architecture}")
    deepest = max(names.index(name) for name in layers)
    return table[: deepest + 1]


def optimizer_bytes(optimizer, n_elements: int, itemsize: int) -> int:
    """What ``optimizer`` (an :class:`~minist.optim.Optimizer` instance, or a name for the
    default one, :func:`minist.optim.make_optimizer`) holds and allocates in a step for an
    iterate of ``n_elements`` numbers: its own ``state_bytes``."""
    from minist.optim import Optimizer, make_optimizer

    if not isinstance(optimizer, Optimizer):
        optimizer = make_optimizer(optimizer)
    return optimizer.state_bytes(n_elements, itemsize)


def _feature_bytes(layer_specs, height, width, names, i) -> dict[str, int]:
    """Bytes of the features of each of ``names`` for an image of ``height x width``."""
    shapes = dict(zip([s.name for s in layer_specs], _shapes(layer_specs, height, width),
                      strict=True))
    return {name: math.prod(shapes[name]) * i for name in names}


def _forward_peak(ledger: _Ledger, layer_specs, height, width, i, wanted, pooling, config) -> None:
    """A forward pass whose cache is dropped at once (``net.forward(...)[0]``): its peak on
    ``ledger``, then only the requested features stay (the caller keeps what it derives)."""
    start = ledger.live
    wanted = set(wanted)
    names = [s.name for s in layer_specs]
    layer_specs = layer_specs[: max(names.index(name) for name in wanted) + 1]
    _forward(ledger, _plan(layer_specs, height, width, wanted, pooling), height, width, i, wanted,
             config, first=True)
    ledger.live = start
    ledger.alloc(sum(_feature_bytes(layer_specs, height, width, wanted, i).values()))


def estimate_peak_bytes(
    architecture: str,
    layers: Sequence[str],
    height: int,
    width: int,
    dtype=np.float32,
    optimizer="adam",
    device: str = "cpu",
    block_channels: Sequence[int] = BLOCK_CHANNELS,
    *,
    content_layers: Sequence[str] = (),
    style_layers: Sequence[str] | None = None,
    style_sizes: Sequence[tuple[int, int]] | None = None,
    regions: int = 0,
    color: str | None = None,
    weight_bytes: int = 0,
    pooling: str = "max",
    config: ExecutionConfig | None = None,
) -> int:
    """Peak memory a style transfer run at ``height x width`` adds to the process (bytes;
    module docstring): what it allocates once its network is loaded.

    ``layers``: every requested layer (content and style); ``content_layers``: those whose
    features are kept as targets; ``style_layers``: those with Gram targets (default: the
    layers that are not content layers). ``style_sizes``: (h, w)
    of each style image at the run's size (default: one, the content's size). ``regions``:
    with spatial control, the number of masked regions (one per style image; their guided
    Grams and guides, :mod:`minist.masks`); ``color``: ``--original-colors`` (``"luminance"``
    optimises a one-channel image and shows the network its gray RGB; ``"histogram"`` adds
    each style's colour-matched copy). ``optimizer``: an :class:`~minist.optim.Optimizer` or
    a name (its default settings); its ``state_bytes`` count. ``weight_bytes``: weights not
    yet loaded (0: the network is loaded already). ``config``: the execution config of the run
    (default: the defaults for ``device``).

    The peak is the larger of the targets' forward passes and one iteration (forward and
    backward), on top of the run's state, times ``SAFETY[device]``, plus ``OVERHEAD[device]``.
    """
    if device not in OVERHEAD:
        raise MinistError(f"--device: unknown device {device!r}")
    if config is None:
        config = default_config(device)
    device = config.device
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise MinistError("no layers requested")
    content_layers = [name for name in dict.fromkeys(content_layers) if name in layers]
    if style_layers is None:
        style_layers = [name for name in layers if name not in content_layers]
    style_layers = [name for name in dict.fromkeys(style_layers) if name in layers]
    i = np.dtype(dtype).itemsize
    layer_specs = _run_layers(architecture, layers, block_channels)
    shapes = dict(zip([s.name for s in layer_specs], _shapes(layer_specs, height, width),
                      strict=True))
    style_sizes = list(style_sizes or [(height, width)])
    pixels = height * width
    rgb = 3 * pixels * i
    channels = 1 if color == "luminance" else 3  # of the image the optimizer updates

    # The targets: content features P^l, one Gram A^l per style layer (with spatial control
    # one per region, and the region's guide T^l at the layer).
    content = sum(math.prod(shapes[name]) for name in content_layers) * i
    grams = sum(shapes[name][0] ** 2 for name in style_layers) * i * max(1, regions)
    guides = sum(math.prod(shapes[name][1:]) for name in style_layers) * i * regions
    transforms = _transform_bytes(layer_specs, config, i)
    fixed = weight_bytes + transforms

    # One iteration: the content image, the image, the last finite one, the last gradient
    # (a luminance run: one channel each, and the gray RGB the network sees), the optimizer.
    variable = channels * pixels * i
    images = rgb + 3 * variable + (rgb if color == "luminance" else 0)
    state = (fixed + content + grams + guides + images
             + optimizer_bytes(optimizer, channels * pixels, i))
    wanted = set(layers)
    iteration = _Ledger(state)
    plan = _plan(layer_specs, height, width, wanted, pooling)
    _forward(iteration, plan, height, width, i, wanted, config)
    _backward(iteration, plan, height, width, i, wanted, config, regions, first=True)

    # Building the targets: the images at the run's size (and their colour views), a forward
    # pass on the content image, then one on each style image whose Grams are kept (with
    # spatial control, with the region's content and style guides, and F o T at each layer).
    style_rgb = sum(3 * h * w * i for h, w in style_sizes)
    views = {"luminance": rgb + style_rgb, "histogram": style_rgb}.get(color, 0)
    targets = _Ledger(fixed + rgb + style_rgb + views)
    if content_layers:
        _forward_peak(targets, layer_specs, height, width, i, content_layers, pooling, config)
    for h, w in style_sizes:
        if not style_layers:
            break
        start = targets.live
        if regions:
            targets.alloc(2 * (pixels + h * w) * i)
        _forward_peak(targets, layer_specs, h, w, i, style_layers, pooling, config)
        if regions:
            targets.transient(max(_feature_bytes(layer_specs, h, w, style_layers, i).values()))
        targets.live = start
        targets.alloc(grams // max(1, regions) + guides // max(1, regions))
    peak = max(iteration.peak, targets.peak)
    return int(SAFETY[device] * peak) + OVERHEAD[device]


# --------------------------------------------------------------------------- what is available


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup (v2 or v1) memory limit, when there is one."""
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (v1 + "limit_in_bytes", v1 + "usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - usage)
    return None


def available_bytes(device: str = "cpu") -> int | None:
    """Memory a new run can use now: CPU MemAvailable (and any cgroup limit); GPU free + pool.

    ``None`` when it cannot be told (then no check is made).
    """
    if device == "cuda":
        from minist.backend import cupy_or_none

        cupy = cupy_or_none()
        if cupy is None:
            return None
        free, _ = cupy.cuda.runtime.memGetInfo()
        pool = cupy.get_default_memory_pool()
        return int(free + pool.total_bytes() - pool.used_bytes())
    candidates = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(candidates) if candidates else None


# ----------------------------------------------------------------------------- the check


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``300 MiB``: binary units, as free(1) and nvidia-smi print them."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale or unit == "MiB":
            return f"{n / scale:.1f} {unit}"
    raise AssertionError  # unreachable


def _round_down(px: int) -> int:
    """Two significant figures, rounded down: 4372 -> 4300, 517 -> 510, 64 -> 64."""
    if px < 100:
        return px
    unit = 10 ** (len(str(px)) - 2)
    return px // unit * unit


def largest_fitting_size(needs, available: int, low: int, high: int) -> int | None:
    """The largest ``size`` in ``[low, high]`` with ``needs(size) <= available`` (bisection).

    ``needs`` must grow with ``size``; ``None`` when even ``low`` does not fit.
    """
    if needs(low) > available:
        return None
    while low < high:  # invariant: needs(low) fits; the answer lies in [low, high]
        mid = (low + high + 1) // 2
        if needs(mid) <= available:
            low = mid
        else:
            high = mid - 1
    return low


def check_fits(
    architecture: str,
    layers: Sequence[str],
    height: int,
    width: int,
    dtype=np.float32,
    optimizer="adam",
    device: str = "cpu",
    block_channels: Sequence[int] = BLOCK_CHANNELS,
    *,
    available: int | None = None,
    size: int | None = None,
    style_sizes: Sequence[tuple[int, int]] | None = None,
    minimum: int = 1,
    **estimate_options,
) -> int:
    """Raise :class:`MinistError` when the run would not fit; return the estimated peak.

    ``size`` is the ``--size`` the user gave (the longest side; default ``max(height,
    width)``); ``style_sizes``: (h, w) of each style image at that size (default: one, the
    content's size). The message names the largest size that fits, found by bisection with
    every image scaled alike. ``available`` defaults to :func:`available_bytes`;
    ``estimate_options`` go to :func:`estimate_peak_bytes`.
    """
    size = size or max(height, width)
    style_sizes = list(style_sizes or [(height, width)])

    def scaled(n: int, s: int) -> int:
        return max(1, round(n * s / size))

    def needs(s: int) -> int:
        return estimate_peak_bytes(
            architecture, layers, scaled(height, s), scaled(width, s), dtype, optimizer,
            device, block_channels,
            style_sizes=[(scaled(h, s), scaled(w, s)) for h, w in style_sizes],
            **estimate_options)

    need = needs(size)
    if available is None:
        available = available_bytes(device)
    if available is None or need <= available:
        return need
    largest = largest_fitting_size(needs, available, max(1, minimum), size)
    hint = (f"the largest size that fits is about {_round_down(largest)} px" if largest
            else "even the smallest image does not fit")
    raise MinistError(
        f"--size {size}: needs about {format_bytes(need)} of memory but "
        f"{format_bytes(available)} is available on {device}; {hint}"
    )


def _block_channels(net) -> tuple[int, ...]:
    """The widths of the five blocks ``net`` has (tiny test networks differ from VGG's)."""
    widths = dict(enumerate(BLOCK_CHANNELS, start=1))
    for spec in net.layer_specs:
        if spec.kind == "conv" and spec.name.endswith("_1"):
            widths[int(spec.name[4])] = spec.out_channels
    return tuple(widths[b] for b in range(1, 6))


def check_transfer_fits(net, options, content_shape, style_shapes, style_layers, optimizer, *,
                        available: int | None = None) -> int:
    """The check :class:`minist.stylize.StyleTransfer` runs before it builds its targets (a
    run with ``memory_check=False`` does not call it): raise :class:`MinistError` in one line
    when the run would not fit; return the estimated peak.

    ``net``: the loaded :class:`~minist.vgg.VGG`; ``options``: the run's options (read:
    ``content_layers``, ``size``, ``original_colors``, ``content_masks``);
    ``content_shape``/``style_shapes``: the shapes (1, 3, H, W) of the content image and of
    every style image at this size; ``style_layers``: the style layers at this size;
    ``optimizer``: the :class:`~minist.optim.Optimizer` the run uses (or its name).
    ``available``: bytes free (default: :func:`available_bytes` of the network's device).
    """
    layers = list(options.content_layers) + list(style_layers)
    H, W = content_shape[2], content_shape[3]
    return check_fits(
        net.architecture,
        layers,
        H,
        W,
        net.dtype,
        optimizer,
        net.device,
        _block_channels(net),
        available=available,
        size=options.size,
        style_sizes=[(shape[2], shape[3]) for shape in style_shapes],
        minimum=net.minimum_input_size(layers),
        content_layers=list(options.content_layers),
        style_layers=list(style_layers),
        regions=len(style_shapes) if options.content_masks is not None else 0,
        color=options.original_colors,
        pooling=net.pooling,
        config=net.config,
    )
