"""A backfill of days 1..N gives the same refits and champions as running the days one by one."""

from __future__ import annotations

import uuid

import dagster as dg
import numpy as np

from tracer_pipeline.definitions import FLYWHEEL_ASSETS, defs
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import read_json
from tracer_pipeline.surrogates.candidates import load_candidates
from tracer_pipeline_tests.landing import land_demo_days

DAYS = 3
ROWS_PER_DAY = 250
LOOSER_GATE = {"ops": {"parity_gate": {"config": {"alpha": 0.85}}}}
UPSTREAM = FLYWHEEL_ASSETS[:2]  # raw_traces, trace_embeddings: no dependency on other days
DOWNSTREAM = FLYWHEEL_ASSETS[2:]


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


def materialize(assets, day: str, resources: dict, instance) -> None:
    result = dg.materialize(assets, partition_key=day, resources=resources, instance=instance,
                            run_config=LOOSER_GATE if assets is not UPSTREAM else None)
    assert result.success


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


def test_the_refit_and_deployment_wait_for_the_previous_day():
    # A backfill launched from the UI runs a partition of a self-dependent asset only after the
    # previous partition: the warm start and the champion are always the previous day's.
    graph = defs.resolve_asset_graph()
    for name in ("surrogate_candidates", "deployment"):
        key = dg.AssetKey(name)
        assert key in graph.get(key).parent_keys, f"{name} does not wait for its previous day"


def test_backfill_order_gives_the_same_champions_as_day_by_day(
    tmp_path, mlflow_store, embedder
):
    day_by_day = warehouse(tmp_path, mlflow_store, embedder, "day-by-day")
    backfill = warehouse(tmp_path, mlflow_store, embedder, "backfill")
    days = land_demo_days(day_by_day["storage"], days=DAYS, rows_per_day=ROWS_PER_DAY)
    assert land_demo_days(backfill["storage"], days=DAYS, rows_per_day=ROWS_PER_DAY) == days

    with dg.instance_for_test() as instance:
        # One by one: each day lands and runs through the whole graph before the next.
        for day in days:
            materialize(FLYWHEEL_ASSETS, day, day_by_day, instance)
        # A backfill of days 1..N: the assets that depend on no other day run for every day
        # first (so later days' traces already sit in the warehouse), then the self-dependent
        # refit and deployment run in day order, as Dagster schedules them.
        for day in days:
            materialize(UPSTREAM, day, backfill, instance)
        for day in days:
            materialize(DOWNSTREAM, day, backfill, instance)

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
