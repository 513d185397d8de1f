"""The memory planner: it grows with the image, over-estimates a measured run (slightly), and
refuses a run that does not fit with one line naming the largest size that does."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist import memory
from minist.architectures import BLOCK_CHANNELS
from minist.bench import synthetic_images, synthetic_weights
from minist.errors import MinistError
from minist.layer_choice import PAPER_STYLE_LAYERS
from minist.memory import (
    check_fits,
    estimate_peak_bytes,
    largest_fitting_size,
)
from minist.optim import LBFGS, Adam, GradientDescent
from minist.stylize import DEFAULT_CONTENT_LAYERS, StyleTransfer
from minist.vgg import VGG

LAYERS = list(DEFAULT_CONTENT_LAYERS) + list(PAPER_STYLE_LAYERS)
SIZES = st.integers(min_value=16, max_value=3000)


@settings(max_examples=60, deadline=None)
@given(a=SIZES, b=SIZES, arch=st.sampled_from(["vgg16", "vgg19"]),
       optimizer=st.sampled_from(["gd", "adam", "lbfgs"]), device=st.sampled_from(["cpu", "cuda"]))
def test_estimate_grows_with_the_image(a, b, arch, optimizer, device):
    """Larger images need more, up to the Winograd blocks: a convolution builds its transforms
    in blocks of rows (:func:`minist.layers.winograd.block_plan`), a full block and a smaller
    last one, so a slightly smaller image can hold up to two blocks more than a larger one."""
    from minist.execution import ExecutionConfig

    small, large = sorted((a, b))
    args = (arch, LAYERS)
    kw = dict(optimizer=optimizer, device=device, content_layers=DEFAULT_CONTENT_LAYERS)
    blocks = 2 * ExecutionConfig(device=device).winograd_block_bytes
    assert estimate_peak_bytes(*args, small, small, **kw) <= estimate_peak_bytes(
        *args, large, large, **kw) + blocks
    assert estimate_peak_bytes(*args, small, large, **kw) <= estimate_peak_bytes(
        *args, large, large, **kw) + blocks
    assert estimate_peak_bytes(*args, small, small, **kw) < estimate_peak_bytes(
        *args, 4 * large, 4 * large, **kw)  # and grow they do


def test_estimate_counts_dtype_optimizer_state_and_layers():
    def est(**kw):
        args = {"architecture": "vgg19", "layers": LAYERS, "height": 512, "width": 512, **kw}
        return estimate_peak_bytes(**args)

    # float64 doubles every float array; the 1-byte masks and argmaxes stay (overhead aside)
    f32, f64 = est() - memory.OVERHEAD["cpu"], est(dtype=np.float64) - memory.OVERHEAD["cpu"]
    assert 1.75 < f64 / f32 < 2.0
    # The optimizer actually used counts, an instance with its own settings too. By hand, for
    # n = 3 x 512 x 512 = 786,432 float32 numbers: Adam holds m, v, m^, v^ and x - update,
    # 5 x 4n = 15,728,640 bytes; L-BFGS with 20 pairs 46 x 4n + 3n = 147,062,784 bytes; with
    # 5 pairs 16 x 4n + 3n = 52,690,944 bytes. (The iteration is the peak at 512 px.)
    adam = est(optimizer="adam")
    assert est(optimizer=LBFGS(history=20)) - adam == 147_062_784 - 15_728_640
    assert est(optimizer="lbfgs") == est(optimizer=LBFGS(history=20))
    assert est(optimizer=LBFGS(history=5)) - adam == 52_690_944 - 15_728_640
    # stopping at relu3_1 needs less than going to relu5_1
    assert est(layers=["relu1_1", "relu3_1"]) < est()


@pytest.mark.parametrize("make", [lambda: GradientDescent(lr=0.1, momentum=0.5),
                                  lambda: Adam(lr=0.1), lambda: LBFGS(history=3)],
                         ids=["gd", "adam", "lbfgs"])
def test_optimizer_state_bytes_bound_what_its_steps_allocate(make):
    """NumPy reports its arrays to tracemalloc: the most a step allocates above the caller's
    arrays (x, its loss gradient) stays within ``state_bytes``, over enough steps to fill an
    L-BFGS history, on a quadratic."""
    optimizer = make()
    n = 200_000
    target = np.random.default_rng(0).uniform(0.2, 0.8, n).astype(np.float32)

    def evaluate(x):
        d = x - target
        return float(d @ d), d

    x = np.full(n, 0.5, np.float32)
    optimizer.evaluate(x, evaluate)  # as a run does at the start of each iteration
    tracemalloc.start()
    try:
        held = 0
        for _ in range(6):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            x_new = optimizer.step(x, evaluate)
            _, peak = tracemalloc.get_traced_memory()
            held = max(held, peak - before)
            x = x_new
            optimizer.evaluate(x, evaluate)
    finally:
        tracemalloc.stop()
    # the evaluations a step makes (L-BFGS's line search) hold one gradient each: 4n bytes
    assert held - 4 * n <= optimizer.state_bytes(n, 4)
    assert held >= 2 * 4 * n  # the bound is not met by counting nothing


# ------------------------------------------------------------- the estimate against a measurement

# The fixed margin (bytes): the estimate's own overhead, memory.OVERHEAD["cpu"] = 16 MiB (thread
# stacks, the BLAS's per-thread buffers, the interpreter's growth: what the measurement's warm-up
# has already paid), plus 8 MiB for the allocator's slack between two runs of one case.
MARGIN = 24 * 2**20
QUARTER = tuple(c // 4 for c in BLOCK_CHANNELS)  # Winograd in every layer but conv1_1, as VGG


def _measure(case: dict) -> dict:
    """In a fresh interpreter: the estimate the run's own check makes, and the peak RSS the
    run adds (building the transfer, its targets and ``iters`` iterations) above the resident
    set of the process once minist is imported, its kernels loaded and the network built."""
    from minist.bench import _release_freed_memory, _status_kib
    from minist.optim import LBFGS

    def run_inputs(size):
        options = {"size": size, "optimizer": case.get("optimizer", "adam")}
        if "history" in case:
            options["optimizer"] = LBFGS(history=case["history"])
        if "color" in case:
            options["original_colors"] = case["color"]
        if "style_scale" in case:
            options["style_scale"] = case["style_scale"]
        styles = [synthetic_images(size, seed=k)[1] for k in range(case.get("styles", 1))]
        if case.get("masks"):  # one vertical band of the photo per style
            bands = np.array_split(np.arange(size), len(styles))
            options["content_masks"] = [np.zeros((size, size), np.float32) for _ in styles]
            for mask, band in zip(options["content_masks"], bands, strict=True):
                mask[:, band] = 1
        return synthetic_images(size)[0], styles, options

    # First use of every code path the case takes (kernels compiled or loaded from Numba's
    # cache, the BLAS's per-thread buffers, threads): the same case on another network instance
    # of the same widths (the run's own weight transforms are part of what it costs).
    content, styles, options = run_inputs(case["size"])
    warm = StyleTransfer(content, styles, network=VGG(synthetic_weights(
        "vgg19", tuple(case["widths"]))), **options)
    warm.step()
    warm.step()
    del warm
    net = VGG(synthetic_weights("vgg19", tuple(case["widths"])))
    estimates = []
    check = memory.check_transfer_fits

    def recording_check(*args, **kwargs):
        estimates.append(check(*args, **kwargs))
        return estimates[-1]

    memory.check_transfer_fits = recording_check
    _release_freed_memory()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark from here: VmHWM = VmRSS
    base = _status_kib("VmRSS") * 1024
    transfer = StyleTransfer(content, styles, network=net, **options)
    for _ in range(case.get("iters", 3)):
        transfer.step()
    peak = _status_kib("VmHWM") * 1024
    return {"estimate": max(estimates), "measured": peak - base}


def _measured_in_a_fresh_process(case: dict) -> dict:
    """:func:`_measure` in a new interpreter, so that memory an earlier test freed (and the
    allocator kept) cannot hide part of the peak, and ``ru_maxrss`` is this run's."""
    import json
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from test_memory import _measure; "
            "print(json.dumps(_measure(json.loads(sys.argv[2]))))")
    out = subprocess.run([sys.executable, "-c", code, str(tests), json.dumps(case)],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = {
    "128 px": {"size": 128},
    "192 px": {"size": 192},
    "128 px, 3 styles, histogram": {"size": 128, "styles": 3, "color": "histogram"},
    "128 px, style scale 2": {"size": 128, "style_scale": 2.0},
    "128 px, 3 masks": {"size": 128, "styles": 3, "masks": True},
    "128 px, luminance, gd": {"size": 128, "color": "luminance", "optimizer": "gd"},
    "128 px, L-BFGS (2 pairs)": {"size": 128, "history": 2, "iters": 4},
    "256 px": pytest.param({"size": 256}, marks=pytest.mark.slow),
    "192 px, 2 masks, luminance": pytest.param(
        {"size": 192, "styles": 2, "masks": True, "color": "luminance"}, marks=pytest.mark.slow),
}


def _can_reset_the_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_the_peak(),
                    reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_estimate_bounds_the_measured_peak(case):
    """A quarter-width VGG-19 (16 ... 128 channels, same algorithms per layer as the real one):
    the estimate of the run's own check is never below the measured peak RSS, and at most 15%
    above it plus the fixed margin."""
    result = _measured_in_a_fresh_process({"widths": QUARTER, **case})
    estimate, measured = result["estimate"], result["measured"]
    assert measured > 10 * 2**20, result  # the run was measured (tens of MiB at these sizes)
    assert measured <= estimate <= 1.15 * measured + MARGIN, result


@pytest.mark.parametrize("threads", [1, 2, 3, 64])
def test_planner_counts_the_winograd_blocks_the_convolution_allocates(monkeypatch, threads):
    """The planner follows the convolution's own plan (winograd.block_plan): one block per
    worker thread only when there are enough blocks per thread, so its estimate does not grow
    with the machine's core count for layers that run on one thread."""
    from minist.execution import ExecutionConfig
    from minist.layers import winograd as wg

    allocated = []
    real = wg._product_buffer

    def spy(xp, count, rows, cols, dtype):
        allocated.append(count * rows * cols * np.dtype(dtype).itemsize)
        return real(xp, count, rows, cols, dtype)

    monkeypatch.setattr(wg, "_product_buffer", spy)
    config = ExecutionConfig(threads=threads)
    C, F, H, W = 16, 16, 11000, 32  # enough tile rows for 3 workers, not for 64
    x = np.zeros((1, C, H, W), np.float32)
    w, b = np.zeros((F, C, 3, 3), np.float32), np.zeros(F, np.float32)
    wg.winograd_conv3x3(x, w, b, m=4, config=config)
    workers, _ = wg.block_plan(C, F, H, W, 4, 4, config)
    assert workers == (1 if threads in (1, 64) else threads)
    assert sum(allocated) == memory._winograd_blocks(C, F, H, W, 4, config)


def test_estimate_does_not_grow_with_the_core_count():
    """A quarter-width run at 256 px: the same estimate whatever the thread count (its layers
    have too few blocks to be split between threads)."""
    from minist.execution import ExecutionConfig

    estimates = {estimate_peak_bytes("vgg19", LAYERS, 256, 256, block_channels=QUARTER,
                                     content_layers=DEFAULT_CONTENT_LAYERS,
                                     config=ExecutionConfig(threads=n))
                 for n in (1, 2, 16, 64)}
    assert len(estimates) == 1


def test_largest_fitting_size_is_the_boundary():
    needs = lambda s: 1000 + 7 * s * s  # noqa: E731  a monotone cost
    for available in (1007, 1034, 5000, 10**6, 10**9):
        s = largest_fitting_size(needs, available, 1, 100_000)
        assert needs(s) <= available and needs(s + 1) > available
    assert largest_fitting_size(needs, 1006, 1, 100) is None


NEED_8192 = estimate_peak_bytes("vgg19", LAYERS, 8192, 8192)


def test_a_run_that_fits_is_let_through():
    assert NEED_8192 > 2**36  # over 64 GiB: every size drawn below is refused
    assert check_fits("vgg19", LAYERS, 8192, 8192, available=NEED_8192) == NEED_8192


@settings(max_examples=30, deadline=None)
@given(available=st.integers(min_value=2**30, max_value=2**36))  # >= weights + transforms
def test_refusal_names_sizes_and_the_largest_that_fits(available):
    size = 8192
    with pytest.raises(MinistError) as info:
        check_fits("vgg19", LAYERS, size, size, available=available, minimum=16)
    message = str(info.value)
    assert "\n" not in message
    match = re.fullmatch(
        r"--size 8192: needs about ([\d.]+) GiB of memory but ([\d.]+) (GiB|MiB) is available "
        r"on cpu; the largest size that fits is about (\d+) px",
        message,
    )
    assert match, message
    assert float(match.group(1)) == pytest.approx(NEED_8192 / 2**30, abs=0.06)
    largest = int(match.group(4))
    assert estimate_peak_bytes("vgg19", LAYERS, largest, largest) <= available
    # rounded down to two significant figures: the next step up no longer fits
    step = 10 ** max(0, len(str(largest)) - 2) if largest >= 100 else 1
    assert estimate_peak_bytes("vgg19", LAYERS, largest + 2 * step, largest + 2 * step) > available


def test_refusal_when_nothing_fits():
    with pytest.raises(MinistError, match=r"--size 512: .* even the smallest image does not fit"):
        check_fits("vgg19", LAYERS, 512, 512, available=2**20, minimum=16)


def test_available_bytes_on_the_cpu():
    available = memory.available_bytes("cpu")
    meminfo = Path("/proc/meminfo").read_text()
    total = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) * 1024
    assert available is not None and 0 < available <= total


def test_style_transfer_refuses_before_building_targets(tiny_vgg_files, monkeypatch):
    content, style = synthetic_images(64)
    options = dict(weights=tiny_vgg_files["vgg19", "torchvision"], size=64, optimizer="adam")
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 1000)
    with pytest.raises(MinistError, match=r"^--size 64: needs about .* available on cpu; "):
        StyleTransfer(content, style, **options)
    StyleTransfer(content, style, memory_check=False, **options).step()  # the run option


def test_the_check_sees_every_image_the_masks_the_colours_and_the_optimizer(tiny_vgg_files,
                                                                             monkeypatch):
    """What the run's check is told: every style image's shape (here 2x larger), the masked
    regions, the colour mode and the optimizer instance the run uses."""
    seen = {}

    def fake_check(*args, **kwargs):
        seen.update(kwargs, height=args[2], width=args[3], optimizer=args[5])
        return 0

    monkeypatch.setattr(memory, "check_fits", fake_check)
    rng = np.random.default_rng(0)
    content = rng.uniform(size=(1, 3, 40, 80)).astype(np.float32)
    styles = [rng.uniform(size=(1, 3, 64, 64)).astype(np.float32),
              rng.uniform(size=(1, 3, 30, 60)).astype(np.float32)]
    masks = [np.ones((40, 80), np.float32), np.ones((40, 80), np.float32)]
    optimizer = LBFGS(history=7)
    StyleTransfer(content, styles, weights=tiny_vgg_files["vgg19", "torchvision"], size=80,
                  style_scale=2.0, content_masks=masks, original_colors="luminance",
                  optimizer=optimizer)
    assert (seen["height"], seen["width"], seen["size"]) == (40, 80, 80)
    assert seen["style_sizes"] == [(160, 160), (80, 160)]
    assert (seen["regions"], seen["color"]) == (2, "luminance")
    assert seen["optimizer"] is optimizer


def test_masks_styles_and_colours_add_to_the_estimate():
    def est(**kw):
        return estimate_peak_bytes("vgg19", LAYERS, 256, 256, content_layers=["relu4_2"], **kw)

    plain = est()
    assert est(regions=2, style_sizes=[(256, 256)] * 2) > plain
    assert est(style_sizes=[(512, 512)]) > plain  # the targets' forward on a larger painting
    assert est(color="luminance") < plain  # a one-channel image and optimizer state


@pytest.mark.gpu
@pytest.mark.parametrize("case", [{"size": 512}, {"size": 1024},
                                  {"size": 512, "styles": 2, "masks": True,
                                   "color": "luminance"}],
                         ids=["512 px", "1024 px", "512 px, 2 masks, luminance"])
def test_estimate_bounds_the_gpu_pool_high_water_mark(case):
    """On the GPU, the full-width VGG-19: the estimate is never below the high-water mark of
    CuPy's pool (bytes in live arrays, above those before the run was built), and at most
    1.5 x it + 256 MiB (the GPU's margins: 30% and 256 MiB)."""
    import cupy

    from minist.bench import CupyMemory
    from minist.execution import ExecutionConfig

    size = case["size"]
    content = synthetic_images(size)[0]
    styles = [synthetic_images(size, seed=k)[1] for k in range(case.get("styles", 1))]
    options = {"size": size, "optimizer": "adam", "device": "cuda"}
    if case.get("masks"):
        bands = np.array_split(np.arange(size), len(styles))
        options["content_masks"] = [np.zeros((size, size), np.float32) for _ in styles]
        for mask, band in zip(options["content_masks"], bands, strict=True):
            mask[:, band] = 1
    if "color" in case:
        options["original_colors"] = case["color"]
    net = VGG(synthetic_weights("vgg19"), config=ExecutionConfig(device="cuda"))
    estimates = []
    check = memory.check_transfer_fits

    def recording_check(*args, **kwargs):
        estimates.append(check(*args, **kwargs))
        return estimates[-1]

    probe = CupyMemory()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(memory, "check_transfer_fits", recording_check)
            transfer = StyleTransfer(content, styles, network=net, **options)
        for _ in range(3):
            transfer.step()
        cupy.cuda.Device().synchronize()
        measured = probe.peak
    finally:
        probe.close()
    estimate = max(estimates)
    assert measured > 0
    assert measured <= estimate <= 1.5 * measured + 256 * 2**20, (estimate, measured)
