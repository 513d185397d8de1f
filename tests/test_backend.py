"""The device is chosen in one place; asking for cuda without CuPy or a GPU is one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from minist import backend
from minist.errors import MinistError


def test_numpy_arrays_use_numpy():
    x = np.zeros(3, np.float32)
    assert backend.get_array_module(x) is np
    assert backend.get_array_module(x, 1.0, None) is np
    assert backend.device_of(x) == "cpu"
    y = backend.to_device(x, "cpu", np.float64)
    assert y.dtype == np.float64 and backend.to_numpy(y) is y


def test_unknown_device():
    with pytest.raises(MinistError, match="--device: unknown device 'tpu'"):
        backend.resolve_device("tpu")


def test_cuda_without_cupy_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    with pytest.raises(MinistError) as info:
        backend.resolve_device("cuda")
    message = str(info.value)
    assert "\n" not in message and "CuPy is not installed" in message and "minist[cuda]" in message
    with pytest.raises(MinistError, match="CuPy is not installed"):
        backend.to_device(np.zeros(2), "cuda")


def test_cuda_without_gpu_is_one_clear_line(monkeypatch):
    class FakeRuntime:
        @staticmethod
        def getDeviceCount():  # noqa: N802 - the CUDA runtime name
            raise RuntimeError("cudaErrorNoDevice")

    class FakeCupy:
        ndarray = type("ndarray", (), {})

        class cuda:  # noqa: N801 - mimics the cupy.cuda namespace
            runtime = FakeRuntime

    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy)
    assert not backend.gpu_available()
    with pytest.raises(MinistError, match="found no CUDA GPU"):
        backend.resolve_device("cuda")


def test_cli_reports_cuda_problem_in_one_line(monkeypatch, capsys, tmp_path):
    from minist.cli import main
    from minist.images import save_image

    for name in ("a.png", "b.png"):
        save_image(tmp_path / name, np.full((1, 3, 8, 8), 0.5, np.float32))
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    code = main(["stylize", a, b, "-o", str(tmp_path / "o.png"), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--device cuda" in err[0]


@pytest.mark.gpu
def test_cupy_arrays_use_cupy():
    import cupy

    x = cupy.zeros(3, cupy.float32)
    assert backend.get_array_module(np.zeros(1), x) is cupy
    assert backend.resolve_device("cuda") == "cuda"
    back = backend.to_numpy(backend.to_device(np.arange(4.0), "cuda"))
    np.testing.assert_array_equal(back, np.arange(4.0))
