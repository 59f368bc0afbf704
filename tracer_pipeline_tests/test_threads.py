"""limit_compute_threads: BLAS pools of the process use the configured number of threads."""

from __future__ import annotations

import os

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from tracer_pipeline import settings
from tracer_pipeline.threads import THREAD_ENVIRONMENT, limit_compute_threads


@pytest.fixture
def restored_blas_threads():
    """Give the BLAS pools their thread count back after the test."""
    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    yield
    if before:
        threadpool_limits(limits=max(before), user_api="blas")


@pytest.mark.usefixtures("restored_blas_threads")
def test_the_setting_limits_loaded_blas_pools_and_pools_loaded_later(monkeypatch):
    monkeypatch.setenv("TRACER_COMPUTE_THREADS", "1")
    for variable in THREAD_ENVIRONMENT:
        monkeypatch.setenv(variable, "7")  # restored by monkeypatch after the test

    assert limit_compute_threads() == 1

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
    assert all(os.environ[variable] == "1" for variable in THREAD_ENVIRONMENT)


def test_zero_threads_is_refused(monkeypatch):
    monkeypatch.setenv("TRACER_COMPUTE_THREADS", "0")
    with pytest.raises(ValueError, match="TRACER_COMPUTE_THREADS"):
        settings.compute_threads()
