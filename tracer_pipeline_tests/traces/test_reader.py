"""The reader and the GX suite: every line is kept or quarantined with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer_pipeline.traces.intake import ingest_files
from tracer_pipeline.traces.reader import coerce_text_field, list_trace_files


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def good(text: str = "where is my card", teacher: str = "card_arrival") -> bytes:
    return json.dumps({"input": text, "teacher": teacher}).encode()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"input": "hello", "teacher": ', "malformed_json"),
        (b'["input", "teacher"]', "not_a_json_object"),
        (b'{"teacher": "refund"}', "input_missing"),
        (b'{"input": "refund please"}', "teacher_missing"),
        (b'{"input": null, "teacher": "refund"}', "input_missing"),
        (b'{"input": "", "teacher": "refund"}', "input_blank"),
        (b'{"input": " \\t\\n ", "teacher": "refund"}', "input_blank"),
        (b'{"input": "refund please", "teacher": ""}', "teacher_blank"),
        (b'{"input": "refund please", "teacher": "   "}', "teacher_blank"),
        (b'{"input": ["a"], "teacher": "refund"}', "non_string_input"),
        (b'{"input": "refund please", "teacher": {"x": 1}}', "non_string_teacher"),
        (b'{"input": "refund please", "teacher": true}', "non_string_teacher"),
        (b'{"input": "caf\xe9 card", "teacher": "refund"}', "invalid_utf8"),
        (json.dumps({"input": "x", "teacher": "y" * 300}).encode(), "teacher_too_long"),
    ],
)
def test_each_bad_line_is_quarantined_with_its_reason(tmp_path, line, reason):
    path = write_lines(tmp_path / "day.jsonl", [good(), line, good("another text")])
    intake = ingest_files([path])
    assert intake.rows_used == 2
    assert intake.quarantine["reason"].tolist() == [reason]
    assert intake.quarantine["source_line"].tolist() == [2]
    assert intake.quarantine["source_file"].tolist() == ["day.jsonl"]
    assert intake.rows_read == intake.rows_used + intake.rows_quarantined


def test_numbers_become_strings_consistently():
    assert coerce_text_field(3) == ("3", False)
    assert coerce_text_field(3.0) == ("3", False)
    assert coerce_text_field(0.5) == ("0.5", False)
    assert coerce_text_field(float("nan")) == (None, False)
    assert coerce_text_field(True) == (None, True)


def test_numeric_teacher_labels_are_kept_as_text(tmp_path):
    path = write_lines(
        tmp_path / "day.jsonl",
        [b'{"input": "one", "teacher": 1}', b'{"input": "two", "teacher": 1.0}'],
    )
    intake = ingest_files([path])
    assert intake.traces["teacher"].tolist() == ["1", "1"]


def test_csv_and_parquet_read_like_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text("input,teacher\nlost my card,card_lost\n,card_lost\n")
    pd.DataFrame({"input": ["stolen card", None], "teacher": ["card_stolen", "x"]}).to_parquet(
        tmp_path / "b.parquet"
    )
    intake = ingest_files(list_trace_files(tmp_path))
    assert sorted(intake.traces["input"]) == ["lost my card", "stolen card"]
    assert sorted(intake.quarantine["reason"]) == ["input_blank", "input_missing"]
    assert intake.rows_read == 4


def test_duplicates_and_long_texts_are_kept_and_flagged(tmp_path):
    long_text = "please help " * 400
    path = write_lines(tmp_path / "d.jsonl", [good(), good(), good(long_text)])
    traces = ingest_files([path]).traces
    assert traces["duplicate_in_day"].tolist() == [False, True, False]
    assert traces["long_text"].tolist() == [False, False, True]
    assert traces["input"].iloc[2] == long_text


def test_hidden_and_temporary_files_are_not_read(tmp_path):
    write_lines(tmp_path / "day.jsonl", [good()])
    write_lines(tmp_path / ".day.jsonl.123.tmp", [good()])
    assert [p.name for p in list_trace_files(tmp_path)] == ["day.jsonl"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(
        st.binary(max_size=400),
        st.lists(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["input", "teacher", "id", "metadata", "other"]),
                    st.one_of(st.none(), st.text(max_size=20), st.integers(), st.floats(),
                              st.booleans(), st.lists(st.integers(), max_size=2)),
                    max_size=5,
                ),
                st.text(max_size=20),
                st.integers(),
            ),
            max_size=12,
        ).map(lambda records: b"\n".join(json.dumps(r).encode() for r in records)),
    )
)
def test_random_input_never_crashes_and_rows_add_up(tmp_path, payload):
    path = tmp_path / "random.jsonl"
    path.write_bytes(payload)
    intake = ingest_files([path])
    assert intake.rows_read == intake.rows_used + intake.rows_quarantined
    non_blank = sum(1 for line in payload.split(b"\n") if line.strip())
    assert intake.rows_read == non_blank
