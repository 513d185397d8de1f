"""The memory planner: it grows with the image, over-estimates a measured run (slightly), and
refuses a run that does not fit with one line naming the largest size that does."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist import memory
from minist.architectures import BLOCK_CHANNELS
from minist.bench import CpuMemory, synthetic_images, synthetic_weights
from minist.errors import MinistError
from minist.layer_choice import PAPER_STYLE_LAYERS
from minist.memory import (
    check_fits,
    estimate_peak_bytes,
    largest_fitting_size,
)
from minist.stylize import DEFAULT_CONTENT_LAYERS, StyleTransfer
from minist.vgg import VGG

LAYERS = list(DEFAULT_CONTENT_LAYERS) + list(PAPER_STYLE_LAYERS)
SIZES = st.integers(min_value=16, max_value=3000)


@settings(max_examples=60, deadline=None)
@given(a=SIZES, b=SIZES, arch=st.sampled_from(["vgg16", "vgg19"]),
       optimizer=st.sampled_from(["gd", "adam", "lbfgs"]), device=st.sampled_from(["cpu", "cuda"]))
def test_estimate_grows_with_the_image(a, b, arch, optimizer, device):
    small, large = sorted((a, b))
    args = (arch, LAYERS)
    kw = dict(optimizer=optimizer, device=device, content_layers=DEFAULT_CONTENT_LAYERS)
    assert estimate_peak_bytes(*args, small, small, **kw) <= estimate_peak_bytes(
        *args, large, large, **kw)
    assert estimate_peak_bytes(*args, small, large, **kw) <= estimate_peak_bytes(
        *args, large, large, **kw)


def test_estimate_counts_dtype_optimizer_state_and_layers():
    def est(**kw):
        args = {"architecture": "vgg19", "layers": LAYERS, "height": 512, "width": 512, **kw}
        return estimate_peak_bytes(**args)

    # float64 doubles every float array; the 1-byte masks and argmaxes stay (overhead aside)
    f32, f64 = est() - memory.OVERHEAD["cpu"], est(dtype=np.float64) - memory.OVERHEAD["cpu"]
    assert 1.75 < f64 / f32 < 2.0
    # L-BFGS keeps 2 * history image-sized arrays (3 x 512 x 512 float32 each)
    image = 3 * 512 * 512 * 4
    lbfgs, adam = est(optimizer="lbfgs", lbfgs_history=20), est(optimizer="adam")
    assert lbfgs - adam == pytest.approx(memory.SAFETY * (40 - 2 + 2) * image, rel=0.02)
    # stopping at relu3_1 needs less than going to relu5_1
    assert est(layers=["relu1_1", "relu3_1"]) < est()


def test_estimate_is_about_two_kilobytes_per_pixel_for_vgg19():
    """Large images: the activations dominate and the estimate is quadratic in the side."""
    e = {s: estimate_peak_bytes("vgg19", LAYERS, s, s) - memory.OVERHEAD["cpu"]
         for s in (2048, 4096)}
    per_px = (e[4096] - e[2048]) / (4096**2 - 2048**2)  # the part that grows with the image
    assert 1500 < per_px < 3000
    fixed = e[2048] - per_px * 2048**2  # weights and their Winograd transforms
    assert 0 < fixed < 0.1 * e[2048]


def _measured_run_peak(block_channels, size):
    """Peak RSS above the baseline of building a transfer and running two Adam steps."""
    weights = synthetic_weights("vgg19", block_channels)
    net = VGG(weights)
    content, style = synthetic_images(size)
    probe = CpuMemory()
    probe.start_step()  # reset VmHWM to the current resident set
    st_ = StyleTransfer(content, style, network=net, size=size, optimizer="adam")
    st_.step()
    st_.step()
    probe.end_step()
    if probe.peak is None:
        pytest.skip("/proc/self/clear_refs cannot reset the peak RSS here")
    return probe.peak


def _measured_in_a_fresh_process(block_channels, size):
    """:func:`_measured_run_peak` in a new interpreter, so that memory freed (and kept) by
    earlier tests in this process cannot hide part of the peak."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from test_memory import _measured_run_peak as m; "
        "import pytest\n"
        "try:\n"
        "    m((16, 16, 16, 16, 16), 160)\n"  # first use: JIT-compiled kernels (Winograd
        # from 16 channels), BLAS buffers, worker threads
        "    print(json.dumps(m(tuple(json.loads(sys.argv[2])), int(sys.argv[3]))))\n"
        "except pytest.skip.Exception:\n"
        "    print('null')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tests), json.dumps(block_channels),
                          str(size)], capture_output=True, text=True, timeout=300, check=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    if peak is None:
        pytest.skip("/proc/self/clear_refs cannot reset the peak RSS here")
    return peak


def test_estimate_over_estimates_a_measured_run_slightly():
    """A quarter-width VGG-19 at 256 px (Winograd in every layer but conv1_1, as in the real
    network): measured peak <= estimate, and between 80% and 125% of the model before its
    margins (the fixed margin alone is as large as this run)."""
    channels = tuple(c // 4 for c in BLOCK_CHANNELS)
    size = 256
    measured = _measured_in_a_fresh_process(channels, size)
    estimate = estimate_peak_bytes("vgg19", LAYERS, size, size, block_channels=channels,
                                   content_layers=DEFAULT_CONTENT_LAYERS, weight_bytes=0)
    modelled = (estimate - memory.OVERHEAD["cpu"]) / memory.SAFETY  # without the margins
    assert measured <= estimate, (measured, estimate)
    assert 0.8 * modelled <= measured <= 1.25 * modelled, (measured, modelled)


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
    """The run of the measured test above: the same estimate whatever the thread count (its
    layers have too few blocks to be split between threads)."""
    from minist.execution import ExecutionConfig

    channels = tuple(c // 4 for c in BLOCK_CHANNELS)
    estimates = {estimate_peak_bytes("vgg19", LAYERS, 256, 256, block_channels=channels,
                                     content_layers=DEFAULT_CONTENT_LAYERS, weight_bytes=0,
                                     config=ExecutionConfig(threads=n))
                 for n in (1, 2, 16, 64)}
    assert len(estimates) == 1


def test_largest_fitting_size_is_the_boundary():
    needs = lambda s: 1000 + 7 * s * s  # noqa: E731  a monotone cost
    for available in (1007, 1034, 5000, 10**6, 10**9):
        s = largest_fitting_size(needs, available, 1, 100_000)
        assert needs(s) <= available and needs(s + 1) > available
    assert largest_fitting_size(needs, 1006, 1, 100) is None


@settings(max_examples=30, deadline=None)
@given(available=st.integers(min_value=2**30, max_value=2**37))  # >= weights + transforms
def test_refusal_names_sizes_and_the_largest_that_fits(available):
    size = 8192
    need = estimate_peak_bytes("vgg19", LAYERS, size, size)
    if need <= available:
        assert check_fits("vgg19", LAYERS, size, size, available=available) == need
        return
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
    assert float(match.group(1)) == pytest.approx(need / 2**30, abs=0.06)
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
    monkeypatch.setenv(memory.SKIP_ENV, "1")  # the escape hatch
    StyleTransfer(content, style, **options).step()


def test_non_square_and_scaled_style_images_are_checked(tiny_vgg_files, monkeypatch):
    """The check sees the real content and style shapes (here a 2x larger style image)."""
    seen = {}

    def fake_check(*args, **kwargs):
        seen.update(kwargs, height=args[2], width=args[3])
        return 0

    monkeypatch.setattr(memory, "check_fits", fake_check)
    rng = np.random.default_rng(0)
    content = rng.uniform(size=(1, 3, 40, 80)).astype(np.float32)
    style = rng.uniform(size=(1, 3, 64, 64)).astype(np.float32)
    StyleTransfer(content, style, weights=tiny_vgg_files["vgg19", "torchvision"], size=80,
                  style_scale=2.0)
    assert (seen["height"], seen["width"], seen["size"]) == (40, 80, 80)
    assert seen["style_scale"] == pytest.approx(2.0)
