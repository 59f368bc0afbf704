"""Two runs of one day cannot interleave their writes: the partition lock and the run queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from tracer_pipeline.storage import PartitionLockedError, WarehouseLayout, partition_lock
from tracer_pipeline.traces.assets import raw_traces

DAY = "2026-01-01"
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"

HOLDER_PROGRAM = """
import sys, time
from pathlib import Path
from tracer_pipeline.storage import WarehouseLayout, partition_lock

with partition_lock(WarehouseLayout(Path(sys.argv[1])), sys.argv[2], holder="holder test"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """A separate process that holds the day's lock until it is killed."""
    data_dir = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER_PROGRAM, str(data_dir), DAY],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout.readline().strip() == "held"
    yield child, WarehouseLayout(data_dir)
    if child.poll() is None:
        child.kill()
    child.wait()


def test_a_second_holder_fails_clearly_after_its_timeout(lock_holder):
    child, layout = lock_holder
    started = time.monotonic()
    with pytest.raises(PartitionLockedError) as refused:
        with partition_lock(layout, DAY, timeout_s=0.3):
            pytest.fail("acquired a lock another process holds")
    assert time.monotonic() - started >= 0.3
    message = str(refused.value)
    assert f"pid {child.pid}" in message and "holder test" in message and DAY in message


def test_a_killed_holder_releases_the_lock(lock_holder):
    child, layout = lock_holder
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with partition_lock(layout, DAY, timeout_s=5.0):
        pass


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path):
    layout = WarehouseLayout(tmp_path)
    order: list[str] = []
    first_has_it = threading.Event()

    def first() -> None:
        with partition_lock(layout, DAY):
            first_has_it.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    first_has_it.wait(5)
    with partition_lock(layout, DAY, timeout_s=10.0):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_other_days_are_not_blocked(lock_holder):
    _, layout = lock_holder
    with partition_lock(layout, "2026-01-02", timeout_s=0.0):
        pass


def test_raw_traces_refuses_to_write_while_another_run_holds_the_day(lock_holder, tmp_path):
    child, layout = lock_holder
    from tracer_pipeline.resources import TraceStorage

    storage = TraceStorage(data_dir=str(layout.root.parent), landing_dir=str(tmp_path / "land"))
    (tmp_path / "land" / DAY).mkdir(parents=True)
    (tmp_path / "land" / DAY / "a.jsonl").write_text('{"input": "hi", "teacher": "greeting"}\n')
    with dg.instance_for_test() as instance:
        refused = dg.materialize(
            [raw_traces], partition_key=DAY, resources={"storage": storage}, instance=instance,
            run_config={"ops": {"raw_traces": {"config": {"lock_timeout_s": 0.3}}}},
            raise_on_error=False,
        )
        assert not refused.success
        (failure,) = [e for e in refused.all_events if e.is_step_failure]
        assert "PartitionLockedError" in str(failure.step_failure_data.error)
        assert not layout.raw_traces(DAY).exists()

        child.kill()
        child.wait()
        done = dg.materialize(
            [raw_traces], partition_key=DAY, resources={"storage": storage}, instance=instance
        )
    assert done.success
    assert pd.read_parquet(layout.raw_traces(DAY))["input"].tolist() == ["hi"]


def test_the_instance_queue_runs_one_run_per_partition_at_a_time():
    config = yaml.safe_load(REPO_DAGSTER_YAML.read_text())
    with dg.instance_for_test(overrides={"run_coordinator": config["run_coordinator"]}) as inst:
        queue = inst.get_concurrency_config().run_queue_config
    (limit,) = queue.tag_concurrency_limits
    assert limit == {
        "key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1
    }


def test_the_same_thread_takes_the_lock_again_without_waiting_for_itself(tmp_path):
    layout = WarehouseLayout(tmp_path)
    with partition_lock(layout, DAY, timeout_s=0.0):
        with partition_lock(layout, DAY, timeout_s=0.0):
            pass
        other_thread_failed = []

        def other() -> None:
            try:
                with partition_lock(layout, DAY, timeout_s=0.2):
                    pass
            except PartitionLockedError:
                other_thread_failed.append(True)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert other_thread_failed == [True]
    with partition_lock(layout, DAY, timeout_s=0.0):
        pass
