"""A fixture for exercise checks that call minist's fast layers hundreds of times on tiny arrays.

The fast layers may run parallel Numba kernels. On a few pixels, waking the worker threads
costs far more than the work -- hundreds of times more on a busy machine -- so these checks run
the kernels on the calling thread. Results do not depend on the number of threads.
"""

from __future__ import annotations

import numba
import pytest


@pytest.fixture(autouse=True)
def one_numba_thread():
    """Run Numba's parallel loops on one thread for the duration of a test."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)
