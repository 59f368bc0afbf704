"""A deliberate number of compute threads for numpy's BLAS and scikit-learn's OpenMP.

OpenBLAS starts one thread per core and keeps it spinning between calls. On two cores whose
other core is busy (another job, the embedder, the Dagster daemon), a second spinning thread
fights for that core and the refit slows down instead of speeding up: on Banking77's 10,003
traces one refit took 70 s of wall time (32 s of CPU) with two BLAS threads and 28 s (16 s of
CPU) with one, on a loaded machine; routing one text took 7.9 ms against 3.6 ms (BLAS threads
asleep between calls are slow to wake). So refits (every process of the code location) and
loaded routers run with `$TRACER_COMPUTE_THREADS` (default 1); the ONNX embedder has its own
setting (`$TRACER_EMBEDDER_THREADS`).
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

from tracer_pipeline import settings

# Read by thread pools that start after this (OpenMP of scikit-learn, loaded on first use).
THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_compute_threads(threads: int | None = None) -> int:
    """Limit this process's BLAS and OpenMP thread pools to `threads`, from now on.

    Pools already loaded are limited through threadpoolctl; pools loaded later read the
    environment variables set here.

    Args:
        threads: the limit; `$TRACER_COMPUTE_THREADS` (default 1) when None.

    Returns:
        The limit applied.
    """
    threads = threads or settings.compute_threads()
    for variable in THREAD_ENVIRONMENT:
        os.environ[variable] = str(threads)
    threadpool_limits(limits=threads)
    return threads
