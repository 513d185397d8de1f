r"""``minist bench``: how long one style transfer iteration takes, how fast, and in how much memory.

One iteration is exactly :meth:`minist.stylize.StyleTransfer.step` with the paper's layers
(content ``relu4_2``; style ``relu1_1 ... relu5_1``: the default from 660 px up) and Adam:
forward through VGG-19 to ``relu5_1``, the losses and their gradients, the backward to the
image, the update. The network
has synthetic, seeded He-initialised weights (:func:`synthetic_weights`), so no file is needed
and every machine measures the same numbers.

**FLOPs.** A 3x3 convolution from :math:`C_{in}` to :math:`C_{out}` channels on an
:math:`H \times W` map costs :math:`2 \cdot 9\, C_{in} C_{out} H W` floating-point operations
forward (a multiply and an add per weight per output position), and the same again for the
gradient with respect to its input (:math:`W^\top dY`, then col2im). Weight gradients are never
computed. :func:`conv_flops` adds these up over the convolutions actually run; GFLOP/s is that
count over the median time, so it measures how close the whole step comes to a pure-GEMM rate.

**Time**: median of ``repeat`` iterations after ``warmup`` untimed ones (GPU: synchronised).

**Peak memory.** CPU: the process's peak resident set (``VmHWM``, reset before each timed step
through ``/proc/self/clear_refs``) minus its resident set before the run was built, freed memory
returned to the OS first (``malloc_trim``). So it counts everything the run holds -- targets,
image, optimizer state -- plus what one step allocates; the weights (shared with the PyTorch
side, never copied on the CPU) are not counted. GPU: the high-water mark of bytes in live arrays
(CuPy's memory pool, tracked by a wrapping allocator; PyTorch's ``max_memory_allocated``) above
those before the run was built; here the weights copied to the device are counted.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minist.architectures import BLOCK_CHANNELS, conv_shapes, layer_table
from minist.backend import resolve_device
from minist.errors import MinistError
from minist.layer_choice import PAPER_STYLE_LAYERS
from minist.preprocessing import TORCHVISION
from minist.stylize import DEFAULT_CONTENT_LAYERS
from minist.threads import available_cores, blas_scope, blas_threads
from minist.weights.store import VGGWeights

ARCHITECTURE = "vgg19"
DEFAULT_SIZES = (256, 512)
TINY_CHANNELS = (4, 4, 6, 6, 8)  # --tiny: a narrow VGG-19 that runs in milliseconds (smoke tests)
LAYERS = tuple(DEFAULT_CONTENT_LAYERS) + PAPER_STYLE_LAYERS


# ---------------------------------------------------------------------------- the work counted


def synthetic_weights(
    architecture: str = ARCHITECTURE,
    block_channels: Sequence[int] = BLOCK_CHANNELS,
    seed: int = 0,
    layers: Sequence[str] = LAYERS,
) -> VGGWeights:
    r"""He-initialised random weights up to the convolution the deepest of ``layers`` needs.

    :math:`w \sim \mathcal{N}(0, 2 / (9 C_{in}))` keeps the activations' scale through the
    ReLUs (He et al. 2015), so the losses and timings look like a real network's.
    """
    names = [spec.name for spec in layer_table(architecture, tuple(block_channels))]
    deepest = max(names.index(name) for name in layers)
    needed = {name for name in names[: deepest + 1] if name.startswith("conv")}
    rng = np.random.default_rng(seed)
    params = {}
    for name, (w_shape, b_shape) in conv_shapes(architecture, tuple(block_channels)).items():
        if name not in needed:
            break
        fan_in = w_shape[1] * w_shape[2] * w_shape[3]
        w = rng.standard_normal(w_shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b = (rng.standard_normal(b_shape, dtype=np.float32) * np.float32(0.01))
        params[name] = (w, b)
    return VGGWeights(architecture, params, TORCHVISION, f"synthetic (seed {seed})", "none",
                      tuple(int(c) for c in block_channels))


class FlopCount(NamedTuple):
    forward: int  # sum over the convolutions run of 2 * 9 * C_in * C_out * H * W
    input_grad: int  # the same for their input gradients

    @property
    def total(self) -> int:
        return self.forward + self.input_grad


def conv_flops(
    architecture: str,
    layers: Sequence[str],
    height: int,
    width: int,
    block_channels: Sequence[int] = BLOCK_CHANNELS,
) -> FlopCount:
    """Convolution FLOPs of one iteration: forward and input gradient (module docstring)."""
    table = layer_table(architecture, tuple(block_channels))
    names = [spec.name for spec in table]
    deepest = max(names.index(name) for name in layers)
    h, w, forward = height, width, 0
    for spec in table[: deepest + 1]:
        if spec.kind == "pool":
            h, w = (h - 2) // 2 + 1, (w - 2) // 2 + 1  # 2x2, stride 2, floor
        elif spec.kind == "conv":
            forward += 2 * 9 * spec.in_channels * spec.out_channels * h * w
    return FlopCount(forward, forward)  # dX_col = W^T dY: the same multiply-adds as the forward


def synthetic_images(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'photo' and a stripy 'painting', (1, 3, size, size) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    phase = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    content = np.stack([0.5 + 0.4 * np.sin(3 * x + 2 * y + p) for p in phase])
    style = np.stack([0.5 + 0.4 * np.sin(40 * x * (c + 1) - 25 * y + p)
                      for c, p in enumerate(phase)])
    noise = rng.uniform(-0.05, 0.05, size=(2, 3, size, size)).astype(np.float32)
    content, style = np.clip(content + noise[0], 0, 1), np.clip(style + noise[1], 0, 1)
    return content[None].astype(np.float32), style[None].astype(np.float32)


# ------------------------------------------------------------------------------ the two steps


class MinistStep:
    """One :meth:`StyleTransfer.step` per call, on a :class:`VGG` built from ``weights``."""

    name = "minist"

    def __init__(self, weights: VGGWeights, size: int, device: str, seed: int = 0,
                 threads: int | None = None):
        from minist.execution import ExecutionConfig
        from minist.stylize import StyleTransfer
        from minist.vgg import VGG

        content, style = synthetic_images(size, seed)
        net = VGG(weights, config=ExecutionConfig(device=device, threads=threads))
        self.device = device
        self.transfer = StyleTransfer(content, style, network=net, size=size, optimizer="adam",
                                      device=device, content_layers=DEFAULT_CONTENT_LAYERS,
                                      style_layers=PAPER_STYLE_LAYERS)

    def step(self) -> float:
        """Run one iteration; return the total loss at the image it started from."""
        return self.transfer.step().total

    def synchronize(self) -> None:
        if self.device == "cuda":
            import cupy

            cupy.cuda.Device().synchronize()


# ------------------------------------------------------------------------------ peak memory


def _status_kib(field: str) -> int | None:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) if match else None


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS counts live data only."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: RSS may include free pages
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class CpuMemory:
    """Peak RSS above a baseline (module docstring); ``peak`` is ``None`` where Linux's
    ``/proc/self/clear_refs`` cannot reset the high-water mark."""

    def __init__(self):
        _release_freed_memory()
        self.base = _status_kib("VmRSS")
        self.peak_kib = None

    def start_step(self) -> None:
        _release_freed_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            self.base = None

    def end_step(self) -> None:
        hwm = _status_kib("VmHWM")
        if self.base is not None and hwm is not None:
            self.peak_kib = max(self.peak_kib or 0, hwm)

    @property
    def peak(self) -> int | None:
        if self.base is None or self.peak_kib is None:
            return None
        return (self.peak_kib - self.base) * 1024

    def close(self) -> None:
        pass


class CupyMemory:
    """High-water mark of CuPy's pool ``used_bytes`` above a baseline, via a wrapping allocator.

    The wrapper is a Python call per allocation, so it costs time: :func:`measure` reads the
    peak in an untimed iteration of its own and times the others without it."""

    costs_time = True

    def __init__(self):
        import cupy

        self.cupy = cupy
        self.pool = cupy.get_default_memory_pool()
        cupy.cuda.Device().synchronize()
        self.pool.free_all_blocks()
        self.base = self.high = self.pool.used_bytes()

        def tracking_malloc(nbytes):
            memory = self.pool.malloc(nbytes)
            self.high = max(self.high, self.pool.used_bytes())
            return memory

        cupy.cuda.set_allocator(tracking_malloc)

    def start_step(self) -> None:
        self.high = max(self.high, self.pool.used_bytes())

    def end_step(self) -> None:
        pass

    @property
    def peak(self) -> int:
        return self.high - self.base

    def close(self) -> None:
        self.cupy.cuda.set_allocator(self.pool.malloc)


def memory_probe(device: str):
    return CupyMemory() if device == "cuda" else CpuMemory()


# ---------------------------------------------------------------------------------- timing


class Result(NamedTuple):
    impl: str  # "minist" or "torch"
    device: str
    size: int
    ms: float  # median milliseconds per iteration
    gflops: float  # conv FLOPs / median time
    peak_bytes: int | None
    loss: float  # total loss at the first iteration (same image for both implementations)
    times_ms: tuple[float, ...]


def measure(
    make_step: Callable[[], object],
    impl: str,
    device: str,
    size: int,
    flops: int,
    repeat: int,
    warmup: int,
    probe_factory: Callable[[], object] | None = None,
) -> Result:
    """Build a step with ``make_step`` and time it: ``warmup`` untimed runs, then ``repeat``."""
    probe = (probe_factory or (lambda: memory_probe(device)))()
    try:
        step = make_step()
        loss = None
        for _ in range(warmup):
            value = step.step()
            loss = value if loss is None else loss
        if getattr(probe, "costs_time", False):  # peak memory in a run of its own, untimed
            probe.start_step()
            value = step.step()
            step.synchronize()
            probe.end_step()
            loss = value if loss is None else loss
            peak = probe.peak
            probe.close()
            probe = None
        times = []
        for _ in range(max(1, repeat)):
            if probe is not None:
                probe.start_step()
            start = time.perf_counter()
            value = step.step()
            step.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
            if probe is not None:
                probe.end_step()
            loss = value if loss is None else loss
        if probe is not None:
            peak = probe.peak
    finally:
        if probe is not None:
            probe.close()
    ms = statistics.median(times)
    del step
    _release_freed_memory()
    return Result(impl, device, size, ms, flops / (ms * 1e-3) / 1e9, peak, float(loss),
                  tuple(times))


# --------------------------------------------------------------------------- threads, machine


@contextlib.contextmanager
def thread_counts(n: int | None):
    """Run the block with NumPy's BLAS, the calling thread's Numba loops
    (:func:`minist.threads.blas_scope`) and PyTorch, if loaded, on ``n`` threads; every count
    is put back after. ``None``: the counts as they are."""
    if n is None:
        yield
        return
    import sys

    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    with blas_scope(n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(torch_before)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown BLAS"


def _memory_total() -> str:
    from minist.memory import format_bytes

    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        return format_bytes(kib * 1024)
    except (OSError, AttributeError):
        return "? GiB"


def machine_description(devices: Sequence[str], torch_module=None) -> list[str]:
    """Lines naming the date, CPU, cores, memory, BLAS and threads, GPU, library versions."""
    import numba

    cores = available_cores()
    lines = [
        f"date: {dt.datetime.now().astimezone().isoformat(timespec='minutes')}",
        f"cpu: {_cpu_model()}, {cores} cores available, {_memory_total()} memory",
        f"numpy {np.__version__} ({_blas_name()}, {blas_threads()} BLAS threads), "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads), "
        f"python {platform.python_version()}",
    ]
    if "cuda" in devices:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        lines.append(f"gpu: {name}, {props['totalGlobalMem'] / 2**30:.0f} GiB, "
                     f"cupy {cupy.__version__}, CUDA runtime {runtime}")
    if torch_module is not None:
        lines.append(f"torch {torch_module.__version__} ({torch_module.get_num_threads()} CPU "
                     "threads: torch's default, the same count as NumPy's BLAS)")
    return lines


# ---------------------------------------------------------------------------------- tables


def _fmt_memory(n: int | None) -> str:
    from minist.memory import format_bytes

    return "-" if n is None else format_bytes(n)


def format_table(results: Sequence[Result]) -> str:
    """The results as an aligned text table; with PyTorch rows, the minist/torch ratios."""
    header = ("device", "size", "impl", "ms/iter", "GFLOP/s", "peak mem", "loss at start")
    rows = [header]
    by_key = {(r.device, r.size, r.impl): r for r in results}
    for r in results:
        rows.append((r.device, f"{r.size}", r.impl, f"{r.ms:.1f}", f"{r.gflops:.3g}",
                     _fmt_memory(r.peak_bytes), f"{r.loss:.6g}"))
        other = by_key.get((r.device, r.size, "minist"))
        if r.impl == "torch" and other is not None:
            mem = ("-" if not (r.peak_bytes and other.peak_bytes)
                   else f"x{other.peak_bytes / r.peak_bytes:.2f}")
            rel = abs(other.loss - r.loss) / max(abs(r.loss), 1e-30)
            rows.append(("", "", "minist/torch", f"x{other.ms / r.ms:.2f}", "", mem,
                         f"rel. diff {rel:.1e}"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if c in (1, 3, 4, 5) else cell.ljust(w)
                       for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the command


def conv_algorithms(devices: Sequence[str]) -> str:
    """One phrase per device: which convolution algorithm and arithmetic minist uses there."""
    from minist.execution import default_config

    parts = []
    for device in devices:
        config = default_config(device)
        if config.winograd:
            m = config.winograd_tile
            algorithm = (f"Winograd F({m}x{m}, 3x3) for 3x3 layers with >= "
                         f"{config.winograd_min_channels} channels, else im2col + GEMM")
        else:
            algorithm = "im2col + GEMM"
        parts.append(f"{device}: {algorithm}, float32")
    return "; ".join(parts)


def run_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    devices: Sequence[str] = ("cpu",),
    repeat: int = 5,
    warmup: int = 2,
    compare_torch: bool = False,
    tiny: bool = False,
    threads: int | None = None,
    out: Callable[[str], None] = print,
) -> list[Result]:
    """Measure every (device, size) and print the machine and the table through ``out``."""
    torch_side = None
    if compare_torch:
        from minist import bench_torch  # raises one line when PyTorch is not installed

        torch_side = bench_torch
        torch_side.require_torch()
    devices = [resolve_device(d) for d in devices]
    torch_module = torch_side.require_torch() if torch_side else None
    with thread_counts(threads):  # put back when the bench ends
        channels = TINY_CHANNELS if tiny else BLOCK_CHANNELS
        weights = synthetic_weights(ARCHITECTURE, channels)
        for line in machine_description(devices, torch_module):
            out(line)
        net = "VGG-19" + (f" (tiny, widths {channels})" if tiny else "")
        out(f"step: {net} forward to relu5_1, content relu4_2 + style relu1_1..relu5_1 losses, "
            f"backward to the image, Adam; median of {repeat} after {warmup} warm-up")
        out(f"minist convolutions: {conv_algorithms(devices)}")
        results = []
        for device in devices:  # first use of each code path (JIT, BLAS buffers) is not measured
            tiny_weights = synthetic_weights(ARCHITECTURE, TINY_CHANNELS)
            MinistStep(tiny_weights, 32, device, threads=threads).step()
            if torch_side is not None:
                torch_side.TorchStep(tiny_weights, 32, device).step()
            for size in sizes:
                flops = conv_flops(ARCHITECTURE, LAYERS, size, size, channels).total
                try:
                    results.append(measure(
                        lambda s=size, d=device: MinistStep(weights, s, d, threads=threads),
                        "minist", device, size, flops, repeat, warmup))
                except MinistError as exc:  # the memory planner refused: say so, go on
                    out(f"{device} {size}: skipped: {exc}")
                    continue
                if torch_side is not None:
                    results.append(measure(
                        lambda s=size, d=device: torch_side.TorchStep(weights, s, d),
                        "torch", device, size, flops, repeat, warmup,
                        probe_factory=lambda d=device: torch_side.memory_probe(d)))
        out("")
        out(format_table(results))
        return results
