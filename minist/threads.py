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
``openblas_set_num_threads_local`` too) changes it for every thread, and threadpoolctl's limits,
which minist uses to reach OpenBLAS, MKL or BLIS alike, are process-wide for the same reason.
So minist scopes the count to a run's work instead: :func:`blas_scope` sets it for a block of
work (a forward pass, a step of the optimiser) under a process-wide lock, and puts it back
after. Two runs in two threads of one process take turns, block by block, each with its own
thread count (:attr:`minist.execution.ExecutionConfig.threads`): neither changes the other's
arithmetic or thread count, and each gets the threads it would have alone -- the results equal
those of the same runs one after the other. For runs that should really run *at once*, use
processes (``minist sweep`` does); each then owns its BLAS. Numba's thread count is already
per thread (``numba.set_num_threads`` affects the calling thread only); :func:`blas_scope` sets
it too, so its parallel reductions sum in the same chunks every time.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor


@functools.cache
def _blas_libraries() -> tuple:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (NumPy's)."""
    import numpy  # noqa: F401 - loads NumPy's BLAS, so that threadpoolctl finds it
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


def blas_threads(n: int | None = None) -> int | None:
    """Set (when ``n``) and return NumPy's BLAS thread count, process-wide; ``None`` when no BLAS
    that threadpoolctl can control is loaded. Prefer :func:`blas_scope`, which restores it."""
    libraries = _blas_libraries()
    if not libraries:
        return None
    if n is not None:
        for library in libraries:
            library.set_num_threads(n)
    return int(libraries[0].get_num_threads())


def blas_name() -> str:
    """e.g. ``"openblas 0.3.31 (libscipy_openblas)"``; ``"unknown BLAS"`` when none is found."""
    libraries = _blas_libraries()
    if not libraries:
        return "unknown BLAS"
    lib = libraries[0]
    return f"{lib.internal_api} {lib.version} ({lib.prefix})"


_LOCK = threading.RLock()


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
