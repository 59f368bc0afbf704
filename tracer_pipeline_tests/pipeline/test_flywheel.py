"""The flywheel end to end on small generated traces: real Dagster, MLflow (SQLite) and GX."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.deployment.router import Router, RouterIntegrityError
from tracer_pipeline.embeddings.store import read_embeddings
from tracer_pipeline.storage import read_json
from tracer_pipeline_tests.landing import land_demo_days

ROWS_PER_DAY = 300
# Small days certify little at α = 0.95; the end-to-end test asks for a looser promise.
LOOSER_GATE = {"ops": {"parity_gate": {"config": {"alpha": 0.85}}}}


def materialize_day(
    assets, day: str, resources: dict, instance, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        assets, partition_key=day, resources=resources, instance=instance, run_config=run_config
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


def test_three_days_give_three_refit_runs_a_champion_and_reports(resources, instance):
    storage, tracking = resources["storage"], resources["tracking"]
    days = land_demo_days(storage, days=3, rows_per_day=ROWS_PER_DAY)
    for day in days:
        materialize_day(FLYWHEEL_ASSETS, day, resources, instance, LOOSER_GATE)

    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tracer.stage` = 'refit'"
    )
    assert sorted(run.info.run_name for run in runs) == [f"refit {day}" for day in days]
    for run in runs:
        assert {"alpha", "delta", "model", "n_traces", "warm_start"} <= set(run.data.params)
        # What makes the refits comparable side by side in the MLflow UI's compare view.
        assert {"coverage_certified", "coverage_holdout", "coverage_fresh_challenger",
                "n_traces", "fit_seconds", "embed_seconds", "embed_seconds_all_days"} <= set(
            run.data.metrics)
        if run.data.tags.get("tracer.gate_decision") == "deploy":
            assert "agreement_lower_bound" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
        assert artifacts == {"report/report.json", "report/report.html"}
    warm_from = {run.info.run_name: run.data.params["warm_start_from"] for run in runs}
    # Each refit warm-starts from the day before it; the first has nothing to start from.
    assert warm_from == {f"refit {day}": before
                         for day, before in zip(days, ["none", *days[:-1]], strict=True)}
    nested = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tracer.stage` = 'candidate'"
    )
    assert len(nested) >= 3 * 2  # at least logistic regression and an MLP per refit

    champion = client.get_model_version_by_alias(tracking.registered_model_name, "champion")
    assert champion.tags["tracer.partition"] in days
    layout = storage.layout
    for day in days:
        report = read_json(layout.report_dir(day) / "report.json")
        assert report["partition"] == day
        assert (layout.report_dir(day) / "report.html").stat().st_size > 1000

    router = Router.from_registry(
        model_name=tracking.registered_model_name, tracking_uri=tracking.tracking_uri
    )
    routed = router.route("I lost my card yesterday, can you block it?")
    assert routed.surrogate_label in router.policy.label_space
    asked = []
    batch = router.route(
        ["my card was stolen", "what is the meaning of life", "asdf qwerty zxcv"],
        fallback=lambda texts: asked.extend(texts) or ["teacher"] * len(texts),
    )
    for decision in batch:
        assert (decision.answered_by == "surrogate") == decision.handled
        if not decision.handled:
            assert decision.label == "teacher" and decision.text in asked

    # A router whose stored policy files were changed after registration refuses to load.
    champion_model_id = champion.source.removeprefix("models:/")
    stored = list(Path(tracking.artifacts_dir).rglob(f"{champion_model_id}/**/policy/*.json"))
    assert stored, "the champion's policy files were not found in the artifact store"
    stored[0].write_text(stored[0].read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(RouterIntegrityError, match="refusing to load"):
        Router.from_registry(
            model_name=tracking.registered_model_name, tracking_uri=tracking.tracking_uri
        )


def test_bad_rows_end_up_in_quarantine_with_their_reason(resources, instance):
    storage = resources["storage"]
    (day,) = land_demo_days(storage, days=1, rows_per_day=50)
    landing = storage.landing_folder(day)
    (landing / "extra.jsonl").write_text(
        '{"input": "refund please", "teacher": "refund_request"}\n'
        '{"input": "", "teacher": "refund_request"}\n'
        "{broken\n"
    )
    result = materialize_day([FLYWHEEL_ASSETS[0]], day, resources, instance)
    quarantine = pd.read_parquet(storage.layout.quarantine(day))
    extra = quarantine[quarantine["source_file"] == "extra.jsonl"]
    assert extra.set_index("source_line")["reason"].to_dict() == {
        2: "input_blank",
        3: "malformed_json",
    }
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_read"].value == (
        metadata["rows_used"].value + metadata["rows_quarantined"].value
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.metadata["rows_quarantined"].value == len(quarantine)


def test_refit_for_a_day_never_reads_later_days(resources, instance):
    storage = resources["storage"]
    days = land_demo_days(storage, days=3, rows_per_day=80)
    for day in days:
        materialize_day(FLYWHEEL_ASSETS[:2], day, resources, instance)
    materialize_day([FLYWHEEL_ASSETS[2]], days[1], resources, instance)
    manifest = read_json(storage.layout.refit_manifest(days[1]))
    assert manifest["days"] == days[:2]
    assert manifest["warm_start_from"] is None  # day one was never refitted: a cold fit
    splits = pd.read_parquet(storage.layout.trace_splits(days[1]))
    assert set(splits["day"]) == set(days[:2])

    # With every day refitted, re-materializing day two still reads days one and two only and
    # warm-starts from day one's candidates, never from day three's.
    for day in (days[0], days[2], days[1]):
        materialize_day([FLYWHEEL_ASSETS[2]], day, resources, instance)
    manifest = read_json(storage.layout.refit_manifest(days[1]))
    assert manifest["days"] == days[:2]
    assert manifest["warm_start_from"] == days[0]
    assert manifest["warm_started"], "no candidate was warm-started"
    assert read_json(storage.layout.refit_manifest(days[2]))["warm_start_from"] == days[1]

    # A window of two days: day three's refit reads days two and three only.
    materialize_day([FLYWHEEL_ASSETS[2]], days[2], resources, instance,
                    {"ops": {"surrogate_candidates": {"config": {"window_days": 2}}}})
    manifest = read_json(storage.layout.refit_manifest(days[2]))
    assert manifest["days"] == days[1:]
    assert set(pd.read_parquet(storage.layout.trace_splits(days[2]))["day"]) == set(days[1:])


def test_a_text_seen_on_an_earlier_day_is_not_embedded_again(resources, instance):
    storage = resources["storage"]
    days = land_demo_days(storage, days=2, rows_per_day=60)
    materialize_day(FLYWHEEL_ASSETS[:2], days[0], resources, instance)
    first_day = pd.read_parquet(storage.layout.raw_traces(days[0]))
    repeated = first_day["input"].drop_duplicates().head(7).tolist()
    with open(storage.landing_folder(days[1]) / "repeats.jsonl", "w", encoding="utf-8") as out:
        for text in repeated:
            out.write(json.dumps({"input": text, "teacher": "repeat"}) + "\n")
    result = materialize_day(FLYWHEEL_ASSETS[:2], days[1], resources, instance)

    metadata = next(event.materialization.metadata
                    for event in result.get_asset_materialization_events()
                    if event.materialization.asset_key.path[-1] == "trace_embeddings")
    second_day = pd.read_parquet(storage.layout.raw_traces(days[1]))
    assert metadata["texts_reused_from_earlier_days"].value >= len(repeated)
    assert (metadata["texts_embedded"].value + metadata["texts_reused_from_earlier_days"].value
            == second_day["text_key"].nunique())
    keys_1, vectors_1, _ = read_embeddings(storage.layout.embeddings(days[0]))
    keys_2, vectors_2, _ = read_embeddings(storage.layout.embeddings(days[1]))
    row_1, row_2 = dict(zip(keys_1, vectors_1)), dict(zip(keys_2, vectors_2))
    for key in set(first_day.loc[first_day["input"].isin(repeated), "text_key"]):
        assert np.array_equal(row_2[key], row_1[key])


def test_re_embedding_a_day_leaves_other_days_untouched(resources, instance):
    storage = resources["storage"]
    days = land_demo_days(storage, days=2, rows_per_day=40)
    for day in days:
        materialize_day(FLYWHEEL_ASSETS[:2], day, resources, instance)
    other = storage.layout.embeddings(days[0])
    before = (other.stat().st_mtime_ns, other.read_bytes())
    materialize_day(FLYWHEEL_ASSETS[:2], days[1], resources, instance)
    assert (other.stat().st_mtime_ns, other.read_bytes()) == before


def test_a_day_without_traces_skips_the_refit_cleanly(resources, instance):
    day = "2026-01-01"
    for asset in FLYWHEEL_ASSETS:
        result = materialize_day([asset], day, resources, instance)
    gate = read_json(resources["storage"].layout.gate_outcome(day))
    assert gate["decision"] == "refuse"
    deployment = read_json(resources["storage"].layout.deployment(day))
    assert deployment["decision"] == "refused" and deployment["champion_version"] is None
    assert result.success
