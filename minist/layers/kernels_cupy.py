r"""GPU kernels for max pooling: the CuPy counterpart of :mod:`minist.layers.kernels_numba`,
same functions and signatures (the Winograd transforms are in
:mod:`minist.layers.winograd_cupy`).

* :func:`max_pool_forward_kernel` -- one CUDA thread per output element: the maximum of its
  :math:`k \times k` window and the raster index of the first maximum (strict ``>``), in one
  pass, where the slices version runs :math:`k^2` comparisons, ``where`` and ``maximum`` kernels.
* :func:`max_pool_backward_kernel` -- :math:`dx` zeroed, then one thread per output element adds
  :math:`dy` at its argmax (a plain store when windows cannot overlap, ``atomicAdd`` when they
  can).

Compiled by CuPy at first use; equations in :mod:`minist.layers.pool`.
"""

from __future__ import annotations

import functools

import numpy as np

_THREADS = 256
CTYPES = {"float32": "float", "float64": "double", "uint8": "unsigned char", "int32": "int"}

_FORWARD = r"""
extern "C" __global__ void max_pool_forward(const T* x, int P, int H, int W, int k, int s,
                                            int Ho, int Wo, T* y, I* argmax) {
  long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= (long long)P * Ho * Wo) return;
  int j = (int)(o % Wo), i = (int)((o / Wo) % Ho);
  long long p = o / ((long long)Ho * Wo);
  const T* plane = x + p * H * W;
  T best = plane[(long long)(i * s) * W + j * s];
  int arg = 0;
  for (int a = 0; a < k; ++a)
    for (int b = 0; b < k; ++b) {
      T v = plane[(long long)(i * s + a) * W + j * s + b];
      if (v > best) { best = v; arg = a * k + b; }
    }
  y[o] = best;
  argmax[o] = (I)arg;
}
"""

_BACKWARD = r"""
extern "C" __global__ void max_pool_backward(const T* dy, const I* argmax, int P, int H, int W,
                                             int k, int s, int Ho, int Wo, int overlap, T* dx) {
  long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= (long long)P * Ho * Wo) return;
  int j = (int)(o % Wo), i = (int)((o / Wo) % Ho);
  long long p = o / ((long long)Ho * Wo);
  int t = (int)argmax[o];
  long long target = p * H * W + (long long)(i * s + t / k) * W + j * s + t % k;
  if (overlap) atomicAdd(dx + target, dy[o]); else dx[target] += dy[o];
}
"""


@functools.cache
def _kernel(name: str, dtype_name: str, index_name: str):
    import cupy

    source = _FORWARD if name == "max_pool_forward" else _BACKWARD
    header = f"typedef {CTYPES[dtype_name]} T;\ntypedef {CTYPES[index_name]} I;\n"
    return cupy.RawKernel(header + source, name)


def launch(kernel, n: int, args) -> None:
    """Run ``kernel`` on ``n`` threads, ``_THREADS`` a block (here and in winograd_cupy)."""
    kernel(((n + _THREADS - 1) // _THREADS,), (_THREADS,), args)


def max_pool_forward_kernel(x, k, s, y, argmax, parallel: bool = True) -> None:
    """Max pooling of ``x`` ``(P, H, W)`` into ``y`` and ``argmax`` ``(P, Ho, Wo)`` (contiguous;
    ``parallel`` is there for the CPU kernels' signature: a GPU always runs in parallel)."""
    import cupy

    x = cupy.ascontiguousarray(x)
    P, H, W = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    i32 = np.int32
    launch(_kernel("max_pool_forward", x.dtype.name, argmax.dtype.name), y.size,
            (x, i32(P), i32(H), i32(W), i32(k), i32(s), i32(Ho), i32(Wo), y, argmax))


def max_pool_backward_kernel(dy, argmax, k, s, dx, parallel: bool = True) -> None:
    """Gradient of max pooling into ``dx`` ``(P, H, W)``: every element written (zeros first)."""
    import cupy

    dy = cupy.ascontiguousarray(dy)
    P, H, W = dx.shape
    Ho, Wo = dy.shape[1], dy.shape[2]
    dx.fill(0)
    i32 = np.int32
    launch(_kernel("max_pool_backward", dy.dtype.name, argmax.dtype.name), dy.size,
            (dy, argmax, i32(P), i32(H), i32(W), i32(k), i32(s), i32(Ho), i32(Wo),
             i32(s < k), dx))
