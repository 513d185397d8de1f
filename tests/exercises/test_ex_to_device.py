"""Exercise ex_to_device: ``minist.backend.to_device`` (lesson 08).

On the CPU: NumPy in, NumPy out, no copy when nothing changes, a cast when asked, one-line
errors naming ``--device``. On a GPU (``pytest -m gpu``, skipped without CuPy and a device):
the round trip CPU -> GPU -> CPU keeps the values, and arrays already there are not copied.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect

from minist.backend import cupy_or_none, device_of, to_device
from minist.errors import MinistError

pytestmark = pytest.mark.ex_to_device
gpu = pytest.mark.gpu


def test_cpu_to_cpu_is_free_and_casts_when_asked():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    same = to_device(a, "cpu")
    expect(isinstance(same, np.ndarray), f"to_device(a, 'cpu') returned {type(same).__name__}, "
           "not a NumPy array")
    expect(np.shares_memory(same, a), "to_device(a, 'cpu') copied a NumPy array: already on "
           "the CPU, it must come back without a copy")
    expect(np.shares_memory(to_device(a, "cpu", np.float64), a),
           "to_device(a, 'cpu', float64) copied a float64 array: no copy when nothing changes")
    cast = to_device(a, "cpu", np.float32)
    expect(cast.dtype == np.float32 and device_of(cast) == "cpu",
           f"to_device(a, 'cpu', float32) gave {cast.dtype} on {device_of(cast)}")
    expect(np.array_equal(cast, a), "to_device(a, 'cpu', float32) changed the values")


def test_unknown_device_is_a_one_line_error():
    with pytest.raises(MinistError, match="--device"):
        to_device(np.zeros(3), "tpu")


@pytest.mark.skipif(cupy_or_none() is not None, reason="CuPy is installed")
def test_cuda_without_cupy_says_what_to_install():
    with pytest.raises(MinistError, match="--device cuda.*CuPy"):
        to_device(np.zeros(3), "cuda")


@gpu
def test_round_trip_through_the_gpu():
    cupy = cupy_or_none()
    a = np.random.default_rng(16).standard_normal((2, 3, 4, 5))
    on_gpu = to_device(a, "cuda")
    assert isinstance(on_gpu, cupy.ndarray) and device_of(on_gpu) == "cuda"
    assert to_device(on_gpu, "cuda") is on_gpu  # already there: no copy
    g32 = to_device(on_gpu, "cuda", np.float32)
    assert isinstance(g32, cupy.ndarray) and g32.dtype == np.float32
    back = to_device(on_gpu, "cpu")
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(to_device(g32, "cpu"), a.astype(np.float32))
