"""``minist bench``: it runs and prints its table, counts the FLOPs the network really does,
measures memory, and (when PyTorch is there) times the same work in PyTorch."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import minist.vgg
from minist import bench
from minist.bench import (
    LAYERS,
    TINY_CHANNELS,
    CpuMemory,
    MinistStep,
    Result,
    conv_flops,
    format_table,
    synthetic_weights,
)
from minist.cli import main

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _bench(capsys, *argv):
    code = main(["bench", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _table_rows(out):
    return [line.split() for line in out.splitlines() if line.startswith(("cpu ", "cuda "))]


def test_bench_runs_vgg19_and_prints_a_table(capsys):
    code, out, err = _bench(capsys, "--sizes", "32", "--repeat", "1", "--warmup", "0")
    assert code == 0, err
    assert "ms/iter" in out and "GFLOP/s" in out and "peak mem" in out
    assert "cpu:" in out and "date:" in out and "BLAS threads" in out
    (row,) = _table_rows(out)
    assert row[:3] == ["cpu", "32", "minist"]
    ms, gflops = float(row[3]), float(row[4])
    # GFLOP/s x ms = the FLOPs of one iteration / 10^6: VGG-19 to relu5_1 at 32 px does
    # 2 x 739,639,296 FLOPs (test_flop_count_of_vgg19_at_32_px)
    assert ms > 0 and gflops * ms == pytest.approx(1_479.278592, rel=0.02)


def test_flop_count_of_vgg19_at_32_px():
    """By hand, 2 * 9 * C_in * C_out * H * W per convolution: conv1_1 3,538,944; conv1_2
    75,497,472; (16 px) conv2_1 37,748,736, conv2_2 75,497,472; (8 px) conv3_1 37,748,736,
    conv3_2..4 3 x 75,497,472; (4 px) conv4_1 37,748,736, conv4_2..4 3 x 75,497,472; (2 px)
    conv5_1 18,874,368: 739,639,296 forward, as many for the input gradients."""
    flops = conv_flops("vgg19", LAYERS, 32, 32)
    assert (flops.forward, flops.input_grad, flops.total) == (739_639_296, 739_639_296,
                                                              1_479_278_592)


def test_bench_options_are_checked(capsys):
    for argv, needle in ((["--sizes", "0"], "--sizes"), (["--sizes", "a,b"], "--sizes"),
                         (["--repeat", "0"], "--repeat"), (["--threads", "0"], "--threads")):
        code, _, err = _bench(capsys, "--tiny", *argv)
        assert code == 2 and err.count("\n") == 1 and needle in err, (argv, err)


def test_flop_count_by_hand():
    """VGG-16 up to relu2_1 on a 9 x 7 image: conv1_1, conv1_2 at 9x7, pool -> 4x3, conv2_1."""
    flops = conv_flops("vgg16", ["relu2_1"], 9, 7, (4, 6, 8, 8, 8))
    # 2 * 9 * (3 * 4 * 63 + 4 * 4 * 63 + 4 * 6 * 12) = 18 * (756 + 1008 + 288) = 36,936
    assert (flops.forward, flops.input_grad, flops.total) == (36_936, 36_936, 73_872)


def test_flop_count_is_what_the_network_runs(monkeypatch):
    """Count the multiply-adds of every convolution a bench iteration calls, forward and dx.

    Every convolution entry point the network uses (``conv2d_forward``, ``conv2d_backward``
    and any other ``conv2d*`` it imports) is wrapped: forward ones are called as
    ``f(x, w, ...)`` and return the output first; backward ones as ``f(dy, cache, ...)``.
    """
    counted = {"forward": 0, "backward": 0}

    def counting(fn, backward):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if backward:
                dy, cache = args[0], args[1]
                w = cache.conv.w if hasattr(cache, "conv") else cache.w  # fused conv + ReLU
                counted["backward"] += 2 * w.size * dy.shape[2] * dy.shape[3]
            else:
                w, y = args[1], out[0]
                counted["forward"] += 2 * w.size * y.shape[2] * y.shape[3]
            return out

        return wrapped

    size = 37  # odd: pooling floors
    step = MinistStep(synthetic_weights("vgg19", TINY_CHANNELS), size, "cpu")
    entry_points = [name for name in dir(minist.vgg) if "conv2d" in name and "loops" not in name
                    and callable(getattr(minist.vgg, name))]
    assert "conv2d_forward" in entry_points and "conv2d_backward" in entry_points
    for name in entry_points:
        fn = getattr(minist.vgg, name)
        monkeypatch.setattr(minist.vgg, name, counting(fn, backward="backward" in name))
    step.step()
    expected = conv_flops("vgg19", LAYERS, size, size, TINY_CHANNELS)
    assert (counted["forward"], counted["backward"]) == (expected.forward, expected.input_grad)


def test_synthetic_weights_stop_at_the_deepest_layer_and_are_he_scaled():
    weights = synthetic_weights("vgg19")
    assert list(weights.params)[-1] == "conv5_1"
    w, _ = weights.params["conv3_2"]
    assert w.dtype == np.float32
    assert np.std(w) == pytest.approx(np.sqrt(2.0 / (9 * 256)), rel=0.02)
    again = synthetic_weights("vgg19")
    assert all(np.array_equal(a[0], b[0]) for a, b in
               zip(weights.params.values(), again.params.values(), strict=True))


def test_cpu_memory_probe_sees_an_allocation():
    probe = CpuMemory()
    probe.start_step()
    block = np.ones(50 * 2**20 // 8)  # 50 MiB, touched
    del block
    probe.end_step()
    if probe.peak is None:
        pytest.skip("/proc/self/clear_refs cannot reset the peak RSS here")
    assert 49 * 2**20 <= probe.peak < 60 * 2**20


def test_table_prints_ratios_against_torch():
    rows = [Result("minist", "cpu", 512, 300.0, 10.0, 2 * 2**30, 1.0, (300.0,)),
            Result("torch", "cpu", 512, 200.0, 15.0, 4 * 2**30, 1.0 + 1e-6, (200.0,))]
    table = format_table(rows)
    ratio = next(line for line in table.splitlines() if "minist/torch" in line)
    assert "x1.50" in ratio and "x0.50" in ratio and "rel. diff 1.0e-06" in ratio
    assert "2.0 GiB" in table and "4.0 GiB" in table


def test_compare_torch_without_torch_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    monkeypatch.delitem(sys.modules, "minist.bench_torch", raising=False)
    code, out, err = _bench(capsys, "--tiny", "--sizes", "32", "--repeat", "1", "--warmup", "0",
                            "--compare-torch")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("minist: error: --compare-torch: PyTorch is not installed")


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_runs_the_same_step():
    """Same weights, images, losses and Adam: the losses agree over several iterations."""
    from minist.bench_torch import TorchStep

    weights = synthetic_weights("vgg19", TINY_CHANNELS)
    ours, theirs = MinistStep(weights, 40, "cpu"), TorchStep(weights, 40, "cpu")
    for _ in range(4):
        assert ours.step() == pytest.approx(theirs.step(), rel=1e-4)
    image = ours.transfer.result()
    assert np.abs(image - theirs.image.detach().numpy()).max() < 1e-3


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_bench_compare_torch_prints_both_and_the_ratio(capsys):
    code, out, err = _bench(capsys, "--tiny", "--sizes", "32", "--repeat", "1", "--warmup", "0",
                            "--compare-torch")
    assert code == 0, err
    assert [row[2] for row in _table_rows(out)] == ["minist", "torch"]
    assert "minist/torch" in out and "torch " in out


@pytest.mark.gpu
def test_bench_on_the_gpu_measures_device_memory(capsys):
    results = bench.run_bench([64], ["cuda"], repeat=1, warmup=1, tiny=True,
                              compare_torch=HAS_TORCH and _torch_cuda(), out=lambda line: None)
    ours = results[0]
    assert ours.impl == "minist" and ours.device == "cuda"
    assert ours.peak_bytes is not None and ours.peak_bytes > 0 and ours.ms > 0
    assert len(results) == (2 if HAS_TORCH and _torch_cuda() else 1)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_bench_on_the_gpu_compares_with_torch(capsys):
    if not _torch_cuda():
        pytest.skip("PyTorch has no CUDA here")
    ours, theirs = bench.run_bench([64], ["cuda"], repeat=1, warmup=1, tiny=True,
                                   compare_torch=True, out=lambda line: None)
    assert (ours.impl, theirs.impl) == ("minist", "torch")
    assert theirs.loss == pytest.approx(ours.loss, rel=1e-3)
    assert theirs.peak_bytes > 0


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_thread_counts_are_put_back(monkeypatch):
    """The bench's thread counts hold for its block only: BLAS, Numba and PyTorch (a stand-in
    here) are back to their counts after it, also when the block raises."""
    import numba

    from minist.threads import blas_threads

    before = blas_threads()
    if before is None:
        pytest.skip("NumPy's BLAS thread count cannot be read or set here")
    numba_before = numba.get_num_threads()
    n = 1 if before > 1 or numba_before > 1 else 2  # another count than now

    class Torch:
        threads = 5

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, k):
            self.threads = k

    torch = Torch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    with pytest.raises(KeyboardInterrupt), bench.thread_counts(n):
        assert blas_threads() == n and torch.threads == n
        assert numba.get_num_threads() == min(n, numba.config.NUMBA_NUM_THREADS)
        raise KeyboardInterrupt
    assert (blas_threads(), numba.get_num_threads(), torch.threads) == (before, numba_before, 5)


def test_a_probe_that_costs_time_is_read_in_an_untimed_run():
    """CuPy's tracking allocator slows every allocation: its peak comes from an iteration of
    its own, and the timed iterations run without it (PyTorch's probe costs nothing)."""
    events = []

    class Probe:
        costs_time = True
        peak = 123

        def start_step(self):
            events.append("start")

        def end_step(self):
            events.append("end")

        def close(self):
            events.append("close")

    class Step:
        def step(self):
            events.append("step")
            return 1.0

        def synchronize(self):
            pass

    result = bench.measure(Step, "minist", "cpu", 8, 100, repeat=3, warmup=1,
                           probe_factory=Probe)
    assert events == ["step", "start", "step", "end", "close", "step", "step", "step"]
    assert result.peak_bytes == 123 and len(result.times_ms) == 3
