"""`raw_traces` under real Dagster: what a day says about its bad, repeated and new traces.

Covers the day-level cases: duplicates across days, new teacher labels, a day with no files or
only bad rows (and the refit downstream skipping), long texts cut only for embedding, and a file
that lands while the day is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.embeddings.assets import trace_embeddings
from tracer_pipeline.embeddings.store import read_embeddings
from tracer_pipeline.storage import read_json
from tracer_pipeline.surrogates.trace_set import load_trace_set
from tracer_pipeline.traces.assets import raw_traces
from tracer_pipeline.traces.intake import LandingSnapshot, ingest_files
from tracer_pipeline.traces.reader import LONG_TEXT_CHARS

DAY_ONE, DAY_TWO, DAY_THREE = "2026-01-01", "2026-01-02", "2026-01-03"


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


def land(storage, day: str, name: str, rows: list[tuple[str, str]] | list[bytes]) -> Path:
    """Write a JSONL landing file of (text, teacher) pairs or raw lines for `day`."""
    folder = storage.landing_folder(day)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        row if isinstance(row, bytes) else json.dumps({"input": row[0], "teacher": row[1]}).encode()
        for row in rows
    ]
    path = folder / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def materialize(assets, day: str, resources: dict, instance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(assets, partition_key=day, resources=resources, instance=instance)
    assert result.success
    return result


def raw_traces_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("raw_traces")
    ]
    return {key: value.value for key, value in event.materialization.metadata.items()}


def check_metadata(result: dg.ExecuteInProcessResult) -> tuple[bool, dict]:
    (check,) = result.get_asset_check_evaluations()
    return check.passed, {key: value.value for key, value in check.metadata.items()}


def test_duplicates_across_days_are_counted_and_trained_once(resources, instance):
    storage = resources["storage"]
    land(storage, DAY_ONE, "a.jsonl", [("lost my card", "card_lost"), ("hello", "greeting")])
    land(storage, DAY_TWO, "a.jsonl", [("lost my card", "card_lost"), ("lost my card",
                                       "card_lost"), ("lost my card", "card_stolen"),
                                       ("new text", "greeting")])
    materialize([raw_traces, trace_embeddings], DAY_ONE, resources, instance)
    second = raw_traces_metadata(
        materialize([raw_traces, trace_embeddings], DAY_TWO, resources, instance)
    )

    assert second["rows_used"] == 4
    assert second["duplicates_in_day"] == 1
    assert second["distinct_traces"] == 3
    assert second["duplicates_of_earlier_days"] == 2  # both copies of the day-one pair
    kept = pd.read_parquet(storage.layout.raw_traces(DAY_TWO))
    assert len(kept) == 4  # kept in the day's traces ...

    trace_set = load_trace_set(storage.layout, [DAY_ONE, DAY_TWO])
    pairs = list(zip(trace_set.frame["input"], trace_set.frame["teacher"], strict=True))
    assert len(pairs) == len(set(pairs)) == 4  # ... and trained on once
    assert trace_set.duplicates_dropped == 2
    first = trace_set.frame[trace_set.frame["input"] == "lost my card"]
    assert first.set_index("teacher")["day"].to_dict() == {
        "card_lost": DAY_ONE, "card_stolen": DAY_TWO
    }


def test_new_teacher_labels_are_accepted_and_listed_against_earlier_days_only(
    resources, instance
):
    storage = resources["storage"]
    land(storage, DAY_ONE, "a.jsonl", [("a", "refund"), ("b", "card_lost")])
    land(storage, DAY_TWO, "a.jsonl", [("c", "refund"), ("d", "crypto_question"),
                                       ("e", "1")])
    land(storage, DAY_THREE, "a.jsonl", [("f", "later_label")])
    materialize([raw_traces], DAY_THREE, resources, instance)  # a later day exists first
    materialize([raw_traces], DAY_ONE, resources, instance)
    second = raw_traces_metadata(materialize([raw_traces], DAY_TWO, resources, instance))

    assert second["new_teacher_labels"] == ["1", "crypto_question"]
    assert second["earlier_days_compared"] == 1
    assert second["rows_used"] == 3
    first = raw_traces_metadata(materialize([raw_traces], DAY_ONE, resources, instance))
    assert first["earlier_days_compared"] == 0
    assert first["new_teacher_labels"] == ["card_lost", "refund"]


@pytest.mark.parametrize(
    ("landed", "status", "rows_read", "check_passes"),
    [
        pytest.param(None, "no_files", 0, True, id="no-folder"),
        pytest.param([], "no_files", 0, True, id="empty-folder"),
        pytest.param([b"{broken", b'{"input": "", "teacher": "x"}', b'{"teacher": "x"}'],
                     "no_usable_rows", 3, False, id="only-bad-rows"),
    ],
)
def test_a_day_without_usable_traces_materializes_zero_traces_and_says_so(
    resources, instance, landed, status, rows_read, check_passes
):
    storage = resources["storage"]
    if landed is not None:
        storage.landing_folder(DAY_ONE).mkdir(parents=True)
        if landed:
            land(storage, DAY_ONE, "bad.jsonl", landed)
    result = materialize([raw_traces], DAY_ONE, resources, instance)
    metadata = raw_traces_metadata(result)
    assert metadata["status"] == status
    assert (metadata["rows_read"], metadata["rows_used"]) == (rows_read, 0)
    assert metadata["rows_quarantined"] == rows_read
    assert pd.read_parquet(storage.layout.raw_traces(DAY_ONE)).empty
    assert len(pd.read_parquet(storage.layout.quarantine(DAY_ONE))) == rows_read
    passed, check = check_metadata(result)
    assert passed is check_passes
    assert (check["status"], check["rows_read"], check["rows_quarantined"]) == (
        status, rows_read, rows_read
    )


def test_a_day_of_only_bad_rows_skips_the_refit_downstream_cleanly(resources, instance):
    storage = resources["storage"]
    land(storage, DAY_ONE, "bad.jsonl", [b"{broken", b'{"input": "x"}'])
    for asset in FLYWHEEL_ASSETS:
        materialize([asset], DAY_ONE, resources, instance)
    layout = storage.layout
    assert read_json(layout.refit_manifest(DAY_ONE))["status"] == "skipped"
    assert read_json(layout.gate_outcome(DAY_ONE))["decision"] == "refuse"
    deployment = read_json(layout.deployment(DAY_ONE))
    assert deployment["decision"] == "refused" and deployment["champion_version"] is None


def test_the_quarantine_file_holds_every_unused_row_with_reason_and_line(resources, instance):
    storage = resources["storage"]
    land(storage, DAY_ONE, "a.jsonl",
         [("fine", "ok"), b"{broken", b'{"input": "  ", "teacher": "x"}', ("fine 2", "ok")])
    (storage.landing_folder(DAY_ONE) / "b.csv").write_bytes(b"input,teacher\nx,\n")
    result = materialize([raw_traces], DAY_ONE, resources, instance)
    quarantine = pd.read_parquet(storage.layout.quarantine(DAY_ONE))
    assert quarantine[["source_file", "source_line", "reason"]].values.tolist() == [
        ["a.jsonl", 2, "malformed_json"],
        ["a.jsonl", 3, "input_blank"],
        ["b.csv", 2, "teacher_blank"],
    ]
    metadata = raw_traces_metadata(result)
    assert metadata["quarantine_reasons"] == {
        "malformed_json": 1, "input_blank": 1, "teacher_blank": 1
    }
    passed, check = check_metadata(result)
    assert not passed and check["quarantine_reasons"] == metadata["quarantine_reasons"]
    assert check["rows_used"] + check["rows_quarantined"] == check["rows_read"] == 5


def test_a_long_text_is_kept_whole_and_cut_only_for_embedding(resources, instance, embedder):
    storage = resources["storage"]
    long_text = "my card was charged twice and " * 200  # 6,000 characters
    land(storage, DAY_ONE, "a.jsonl", [(long_text, "charged_twice"), ("hello", "greeting")])
    metadata = raw_traces_metadata(
        materialize([raw_traces, trace_embeddings], DAY_ONE, resources, instance)
    )
    assert metadata["long_texts"] == 1
    traces = pd.read_parquet(storage.layout.raw_traces(DAY_ONE))
    assert traces["input"].iloc[0] == long_text and bool(traces["long_text"].iloc[0])

    keys, vectors, _ = read_embeddings(storage.layout.embeddings(DAY_ONE))
    stored = vectors[keys.index(traces["text_key"].iloc[0])]
    # The int8 embedder quantizes activations per batch: embed the same batch the asset did.
    cut = embedder.get().embed([long_text[:LONG_TEXT_CHARS], "hello"])[0]
    assert np.allclose(stored, cut, atol=1e-5)


def test_a_file_landing_after_the_snapshot_waits_for_the_next_read(storage):
    from tracer_pipeline.automation import landing_fingerprint

    folder = storage.landing_folder(DAY_ONE)
    land(storage, DAY_ONE, "early.jsonl", [("first", "a")])
    snapshot = LandingSnapshot.take(folder)
    assert snapshot.fingerprint() == landing_fingerprint(folder)

    land(storage, DAY_ONE, "late.jsonl", [("second", "b")])  # lands while the day is read
    intake = ingest_files(snapshot.paths)
    assert intake.files == ["early.jsonl"] and intake.rows_used == 1
    assert snapshot.changes_since() == ["late.jsonl"]
    assert snapshot.fingerprint() != landing_fingerprint(folder)
    assert ingest_files(LandingSnapshot.take(folder).paths).rows_used == 2


def test_the_sensor_requests_a_new_run_for_a_file_that_landed_after_a_read(
    resources, instance, monkeypatch
):
    from tracer_pipeline.automation import landing_folder_sensor

    storage = resources["storage"]
    monkeypatch.setenv("TRACER_LANDING_DIR", storage.landing_dir)
    land(storage, DAY_ONE, "early.jsonl", [("first", "a")])
    first_tick = landing_folder_sensor(dg.build_sensor_context(instance=instance))
    (request,) = first_tick.run_requests
    metadata = raw_traces_metadata(materialize([raw_traces], DAY_ONE, resources, instance))
    assert metadata["files"] == ["early.jsonl"]

    land(storage, DAY_ONE, "late.jsonl", [("second", "b")])
    second_tick = landing_folder_sensor(
        dg.build_sensor_context(instance=instance, cursor=first_tick.cursor)
    )
    (again,) = second_tick.run_requests
    assert again.partition_key == DAY_ONE and again.run_key != request.run_key
    metadata = raw_traces_metadata(materialize([raw_traces], DAY_ONE, resources, instance))
    assert metadata["files"] == ["early.jsonl", "late.jsonl"] and metadata["rows_used"] == 2
    assert metadata["files_changed_during_read"] == []


def test_a_file_still_being_written_is_read_as_far_as_it_goes_then_reread(storage):
    folder = storage.landing_folder(DAY_ONE)
    path = land(storage, DAY_ONE, "growing.jsonl", [("first", "a")])
    with path.open("ab") as handle:
        handle.write(b'{"input": "sec')  # a writer appending without a temporary file
    snapshot = LandingSnapshot.take(folder)
    partial = ingest_files(snapshot.paths)
    assert partial.quarantine[["reason", "source_line"]].values.tolist() == [
        ["malformed_json", 2]
    ]
    with path.open("ab") as handle:
        handle.write(b'ond", "teacher": "b"}\n')
    assert snapshot.changes_since() == ["growing.jsonl"]
    complete = ingest_files(LandingSnapshot.take(folder).paths)
    assert (complete.rows_used, complete.rows_quarantined) == (2, 0)
