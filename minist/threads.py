"""CPU threads: how many NumPy's BLAS and Numba use, scoped to a run's work; whole blocks of work
handed to worker threads.

minist's CPU convolutions spend their time in BLAS GEMMs with small Numba kernels in between.
Two ways to use several cores: BLAS's own threads inside each GEMM (right for big GEMMs), or one
Python thread per core, each running whole chunks -- kernel, single-threaded GEMM, kernel -- so
that no core waits for another between the steps (right for many small GEMMs;
:func:`minist.layers.winograd.block_plan` chooses). The Numba kernels release the GIL
(``nogil``) and so does NumPy's ``matmul``, so the threads really run at once.

**One count per process.** A BLAS library has a single thread count for the whole process:
OpenBLAS's ``openblas_set_num_threads`` (and, in the pthreads builds NumPy ships, its
``openblas_set_num_threads_local`` too) changes it for every thread; threadpoolctl's limits are
process-wide for the same reason (and for OpenBLAS it ignores changes from any thread but the
first that made one). So minist scopes the count to a run's work instead: :func:`blas_scope`
sets it for a block of work (a forward pass, a step of the optimiser) under a process-wide lock,
and puts it back after. Two runs in two threads of one process take turns, block by block, each
with its own thread count (:attr:`minist.execution.ExecutionConfig.threads`): neither changes
the other's arithmetic or thread count, and each gets the threads it would have alone -- the
results equal those of the same runs one after the other. For runs that should really run *at
once*, use processes (``minist sweep`` does); each then owns its BLAS. Numba's thread count is
already per thread (``numba.set_num_threads`` affects the calling thread only);
:func:`blas_scope` sets it too, so its parallel reductions sum in the same chunks every time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


@functools.cache
def _openblas_function(suffix: str):
    """An OpenBLAS entry point (``set_num_threads``/``get_num_threads``) of NumPy's BLAS or None.

    Called directly through ctypes rather than through threadpoolctl: threadpoolctl (3.x)
    lets only the first Python thread that changed OpenBLAS's count change it again (its
    "controlling thread") and silently ignores the others, because the count is process-wide;
    minist's scopes must set it from whichever thread's run holds :func:`blas_scope`'s lock.
    """
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
    """Set (when ``n``) and return NumPy's BLAS thread count, process-wide: OpenBLAS directly,
    another BLAS (MKL, BLIS) through threadpoolctl when it is installed; ``None`` when it cannot
    be told. Prefer :func:`blas_scope`, which puts it back."""
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


_LOCK = threading.RLock()


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


@functools.cache
def process_threads() -> int:
    """The BLAS thread count this process had when minist first asked (1 if it cannot be told):
    what a run has when it is alone, and the default of ``ExecutionConfig.threads``.

    Read under the scopes' lock, so never while a scope has changed it.
    """
    with _LOCK:
        return blas_threads() or 1


@contextlib.contextmanager
def blas_scope(threads: int):
    """Run the block with NumPy's BLAS and the calling thread's Numba loops on ``threads``
    threads, then put both counts back (module docstring).

    Scopes in other threads wait until this one ends; scopes nest within one thread (the
    Winograd workers' single-threaded GEMMs run inside a run's scope).
    """
    import numba

    with _LOCK:
        process_threads()  # the count before any change, remembered once
        before = blas_threads()
        numba_before = numba.get_num_threads()
        numba_threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
        if before is not None and before != threads:
            blas_threads(threads)
        if numba_before != numba_threads:
            numba.set_num_threads(numba_threads)
        try:
            yield
        finally:
            if before is not None and before != threads:
                blas_threads(before)
            if numba_before != numba_threads:
                numba.set_num_threads(numba_before)


@functools.cache
def worker_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` Python threads, made once and kept for the process."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minist")
