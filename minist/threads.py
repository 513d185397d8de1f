"""CPU threads: how many NumPy's BLAS uses, and handing whole chunks of work to that many threads.

minist's CPU convolutions spend their time in BLAS GEMMs with small Numba kernels in between.
Two ways to use several cores: BLAS's own threads inside each GEMM (right for big GEMMs), or one
Python thread per core, each running whole chunks -- kernel, single-threaded GEMM, kernel -- so
that no core waits for another between the steps (right for many small GEMMs;
:mod:`minist.layers.winograd` chooses). The Numba kernels release the GIL (``nogil``) and so does
NumPy's ``matmul``, so the threads really run at once.

Only OpenBLAS (what NumPy's wheels ship) can be told its thread count here; with another BLAS,
:func:`blas_single_threaded` says so and the caller keeps BLAS's own threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


@functools.cache
def _openblas_function(suffix: str):
    """An OpenBLAS entry point (``set_num_threads``/``get_num_threads``) of NumPy's BLAS or None."""
    import numpy  # noqa: F401 - loads NumPy's BLAS, so that it shows in the process's maps

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for path in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for tail in ("64_", ""):
                fn = getattr(lib, f"{prefix}_{suffix}{tail}", None)
                if fn is not None:
                    if suffix == "get_num_threads":
                        fn.restype = ctypes.c_int
                    return fn
    return None


def openblas_threads(n: int | None = None) -> int | None:
    """Set (when ``n``) and return OpenBLAS's thread count; ``None`` when NumPy's BLAS is not an
    OpenBLAS this can reach."""
    setter, getter = _openblas_function("set_num_threads"), _openblas_function("get_num_threads")
    if setter is None or getter is None:
        return None
    if n is not None:
        setter(ctypes.c_int(n))
    return int(getter())


def blas_threads(n: int | None = None) -> int | None:
    """Set (when ``n``) and return NumPy's BLAS thread count (OpenBLAS directly, other BLAS
    libraries through ``threadpoolctl`` when it is installed); ``None`` if it cannot be told."""
    count = openblas_threads(n)
    if count is not None:
        return count
    try:
        import threadpoolctl
    except ImportError:
        return None
    if n is not None:
        threadpoolctl.threadpool_limits(n, user_api="blas")
    counts = [i["num_threads"] for i in threadpoolctl.threadpool_info()
              if i.get("user_api") == "blas"]
    return counts[0] if counts else None


_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def blas_single_threaded():
    """Run the block with OpenBLAS on one thread; yields the thread count it had before (the
    number of worker threads to use), or 1 when it cannot be controlled (then nothing changes).

    Nested or concurrent uses are serialised: only one block at a time changes the count.
    """
    with _BLAS_LOCK:
        before = openblas_threads()
        if before is None or before < 2:
            yield 1
            return
        openblas_threads(1)
        try:
            yield before
        finally:
            openblas_threads(before)


@functools.cache
def worker_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` Python threads, made once and kept for the process."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minist")
