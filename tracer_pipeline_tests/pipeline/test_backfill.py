"""A Dagster backfill of days 1..N gives the same refits and champions as the days one by one."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from tracer_pipeline.definitions import FLYWHEEL_ASSETS, defs
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import read_json
from tracer_pipeline.surrogates.candidates import load_candidates
from tracer_pipeline_tests.landing import land_demo_days

DAYS = 3
ROWS_PER_DAY = 250
LOOSER_GATE_ALPHA = 0.85
LOOSER_GATE = {"ops": {"parity_gate": {"config": {"alpha": LOOSER_GATE_ALPHA}}}}
DAY_BY_DAY_PROGRAM = """
import sys
import dagster as dg
from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.resources import default_resources

run_config = {"ops": {"parity_gate": {"config": {"alpha": float(sys.argv[1])}}}}
with dg.instance_for_test() as instance:
    for day in sys.argv[2:]:
        result = dg.materialize(FLYWHEEL_ASSETS, partition_key=day, instance=instance,
                                resources=default_resources(), run_config=run_config)
        assert result.success, day
"""


def production_environment(root: Path, landing: str, first_day: str) -> dict[str, str]:
    """The settings of a deployment whose warehouse, registry and Dagster home are in `root`."""
    return {
        "DAGSTER_HOME": str(root / "dagster_home"),
        "TRACER_DATA_DIR": str(root / "data"),
        "TRACER_LANDING_DIR": str(landing),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "TRACER_MLFLOW_ARTIFACTS": str(root / "artifacts"),
        "TRACER_PARTITIONS_START": first_day,
    }
REPO_ROOT = Path(__file__).resolve().parents[2]


def warehouse(root, mlflow_store, embedder, name: str) -> dict:
    unique = uuid.uuid4().hex[:8]
    return {
        "storage": TraceStorage(data_dir=str(root / name / "data"),
                                landing_dir=str(root / name / "landing")),
        "tracking": MlflowTracking(
            tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}",
            experiment_name=f"{name}-{unique}",
            registered_model_name=f"{name}-{unique}",
            artifacts_dir=str(mlflow_store / "artifacts" / unique),
        ),
        "embedder": embedder,
    }


def outcome(resources: dict, day: str) -> dict:
    """What a day's turn of the flywheel decided, without run ids and timings."""
    layout = resources["storage"].layout
    refit = read_json(layout.refit_manifest(day))
    gate = read_json(layout.gate_outcome(day))
    deployment = read_json(layout.deployment(day))
    return {
        "days": refit["days"],
        "n_traces": refit["n_traces"],
        "warm_start_from": refit["warm_start_from"],
        "gate": (gate["decision"], gate["candidate"], gate["threshold"],
                 gate["coverage_calibration"]),
        "deployment": (deployment["decision"], deployment["champion_before"],
                       deployment["challenger_version"], deployment["champion_version"]),
    }


def test_the_embeddings_refit_and_deployment_wait_for_the_previous_day():
    # A backfill launched from the UI runs a partition of a self-dependent asset only after the
    # previous partition: the warm start and the champion are always the previous day's.
    graph = defs.resolve_asset_graph()
    for name in ("trace_embeddings", "surrogate_candidates", "deployment"):
        key = dg.AssetKey(name)
        assert key in graph.get(key).parent_keys, f"{name} does not wait for its previous day"


def run_dagster_backfill(days: list[str], run_config: dict, timeout_s: float = 540) -> None:
    """Request a backfill of every flywheel asset over `days`, as the UI does, and drive the
    backfill daemon's loop until it ends: runs are launched in subprocesses of a code server
    that loads `tracer_pipeline.definitions` with the current environment."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.utils import make_new_backfill_id
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._time import get_current_timestamp

    target = ModuleTarget(module_name="tracer_pipeline.definitions", attribute="defs",
                          working_directory=str(REPO_ROOT), location_name="flywheel")
    with dg.DagsterInstance.get() as instance:
        with create_test_daemon_workspace_context(target, instance) as workspace:
            graph = workspace.create_request_context().asset_graph
            backfill = PartitionBackfill.from_asset_partitions(
                backfill_id=make_new_backfill_id(), asset_graph=graph, partition_names=days,
                asset_selection=[dg.AssetKey(asset.key.path) for asset in FLYWHEEL_ASSETS],
                backfill_timestamp=get_current_timestamp(), tags={},
                dynamic_partitions_store=instance, all_partitions=False, title="test",
                description=None, run_config=run_config,
            )
            instance.add_backfill(backfill)
            started = time.monotonic()
            status = BulkActionStatus.REQUESTED
            while status == BulkActionStatus.REQUESTED:
                assert time.monotonic() - started < timeout_s, "the backfill did not finish"
                list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
                status = instance.get_backfill(backfill.backfill_id).status
                time.sleep(2)
            assert status == BulkActionStatus.COMPLETED_SUCCESS, status
            runs = instance.get_runs()
    # The backfill ran each day in more than one run (upstream assets first), yet in order.
    assert len(runs) > len(days)


@pytest.mark.slow
def test_a_dagster_backfill_gives_the_same_champions_as_day_by_day(
    tmp_path, mlflow_store, embedder, monkeypatch
):
    day_by_day = warehouse(tmp_path, mlflow_store, embedder, "day-by-day")
    days = land_demo_days(day_by_day["storage"], days=DAYS, rows_per_day=ROWS_PER_DAY)
    landing = day_by_day["storage"].landing_dir

    # Day by day, as `tracer-pipeline materialize` runs them: one fresh process, the days in
    # order. A fresh process, like the backfill's runs, so that nothing earlier tests left in
    # this one (thread pools, loaded models) can tell the two apart.
    by_day_root = tmp_path / "day-by-day"
    (by_day_root / "dagster_home").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-c", DAY_BY_DAY_PROGRAM, str(LOOSER_GATE_ALPHA), *days],
        env={**os.environ, **production_environment(by_day_root, landing, days[0])},
        check=True, capture_output=True, text=True,
    )
    day_by_day = {"storage": TraceStorage(data_dir=str(by_day_root / "data"),
                                          landing_dir=landing)}

    # The same landing folders, backfilled by Dagster into a warehouse, MLflow store and
    # DAGSTER_HOME of their own, configured through the environment as in production.
    root = tmp_path / "backfill"
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    for name, value in production_environment(root, landing, days[0]).items():
        monkeypatch.setenv(name, value)
    run_dagster_backfill(days, LOOSER_GATE)
    backfill = {"storage": TraceStorage(data_dir=str(root / "data"), landing_dir=landing)}

    for day in days:
        assert outcome(backfill, day) == outcome(day_by_day, day), day
        one = load_candidates(day_by_day["storage"].layout.candidates(day))
        other = load_candidates(backfill["storage"].layout.candidates(day))
        for first, second in zip(one, other, strict=True):
            assert first.arrays.keys() == second.arrays.keys()
            for key in first.arrays:
                assert np.array_equal(first.arrays[key], second.arrays[key]), (day, key)
    champions = [outcome(day_by_day, day)["deployment"][3] for day in days]
    assert champions[-1] is not None, "no day promoted a champion: the test shows nothing"
    assert outcome(day_by_day, days[-1])["warm_start_from"] == days[-2]
