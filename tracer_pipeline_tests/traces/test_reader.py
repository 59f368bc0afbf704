"""The reader and the GX suite: every bad-input case has one outcome, tested case by case.

Every line is kept or quarantined with its reason, file and line; `rows read = used +
quarantined` holds for any input, including random bytes (hypothesis, at the end).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracer_pipeline.traces.intake import ingest_files
from tracer_pipeline.traces.reader import (
    LONG_TEXT_CHARS,
    coerce_text_field,
    list_trace_files,
)


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def good(text: str = "where is my card", teacher: str = "card_arrival") -> bytes:
    return json.dumps({"input": text, "teacher": teacher}).encode()


def write_csv(path: Path, text: bytes) -> Path:
    path.write_bytes(text)
    return path


def write_parquet(path: Path, columns: dict[str, pa.Array]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def assert_one_quarantined(intake, reason: str, line: int, source: str) -> None:
    assert intake.quarantine[["reason", "source_line", "source_file"]].values.tolist() == [
        [reason, line, source]
    ]
    assert intake.rows_read == intake.rows_used + intake.rows_quarantined


# --- JSONL, line by line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b'{"input": "hello", "teacher": ', "malformed_json", id="malformed-json"),
        pytest.param(b'["input", "teacher"]', "not_a_json_object", id="json-array"),
        pytest.param(b'"just a string"', "not_a_json_object", id="json-string"),
        pytest.param(b'{"teacher": "refund"}', "input_missing", id="input-absent"),
        pytest.param(b'{"input": "refund please"}', "teacher_missing", id="teacher-absent"),
        pytest.param(b'{"input": null, "teacher": "refund"}', "input_missing", id="input-null"),
        pytest.param(b'{"input": "x", "teacher": null}', "teacher_missing", id="teacher-null"),
        pytest.param(b'{"input": NaN, "teacher": "refund"}', "input_missing", id="input-nan"),
        pytest.param(b'{"input": "", "teacher": "refund"}', "input_blank", id="input-empty"),
        pytest.param(
            b'{"input": " \\t\\n ", "teacher": "refund"}', "input_blank", id="input-whitespace"
        ),
        pytest.param(
            b'{"input": "refund please", "teacher": ""}', "teacher_blank", id="teacher-empty"
        ),
        pytest.param(
            b'{"input": "refund please", "teacher": " \\n "}', "teacher_blank",
            id="teacher-whitespace",
        ),
        pytest.param(b'{"input": ["a"], "teacher": "refund"}', "non_string_input", id="input-list"),
        pytest.param(b'{"input": true, "teacher": "refund"}', "non_string_input", id="input-bool"),
        pytest.param(
            b'{"input": "refund please", "teacher": {"x": 1}}', "non_string_teacher",
            id="teacher-object",
        ),
        pytest.param(
            b'{"input": "refund please", "teacher": true}', "non_string_teacher",
            id="teacher-bool",
        ),
        pytest.param(
            b'{"input": 1e999, "teacher": "refund"}', "non_string_input", id="input-infinity"
        ),
        pytest.param(
            b'{"input": "caf\xe9 card", "teacher": "refund"}', "invalid_utf8", id="latin1-byte"
        ),
        pytest.param(
            b'{"input": "lone \\ud800 surrogate", "teacher": "refund"}', "invalid_utf8",
            id="lone-surrogate-escape",
        ),
        pytest.param(
            json.dumps({"input": "x", "teacher": "y" * 300}).encode(), "teacher_too_long",
            id="teacher-too-long",
        ),
    ],
)
def test_each_bad_jsonl_line_is_quarantined_with_its_reason(tmp_path, line, reason):
    path = write_lines(tmp_path / "day.jsonl", [good(), line, good("another text")])
    intake = ingest_files([path])
    assert intake.rows_used == 2
    assert_one_quarantined(intake, reason, line=2, source="day.jsonl")


def test_quarantine_keeps_an_excerpt_of_the_raw_line(tmp_path):
    path = write_lines(tmp_path / "day.jsonl", [b"{broken " + b"x" * 2000])
    raw = ingest_files([path]).quarantine["raw"].iloc[0]
    assert raw.startswith("{broken x") and len(raw) == 500


def test_blank_lines_are_skipped_and_counted_not_quarantined(tmp_path):
    path = write_lines(tmp_path / "day.jsonl", [good(), b"", b"   \t", good("two")])
    intake = ingest_files([path])
    assert (intake.rows_read, intake.rows_used, intake.blank_lines) == (2, 2, 3)
    assert intake.traces["source_line"].tolist() == [1, 4]


def test_a_byte_order_mark_does_not_break_the_first_row(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + good() + b"\n")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfinput,teacher\nlost card,card_lost\n")
    intake = ingest_files(list_trace_files(tmp_path))
    assert intake.rows_used == 2 and intake.rows_quarantined == 0


# --- The same cases in CSV and Parquet -----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason", "line"),
    [
        pytest.param(b"teacher\nrefund\n", "input_missing", 2, id="no-input-column"),
        pytest.param(b"input\nrefund please\n", "teacher_missing", 2, id="no-teacher-column"),
        pytest.param(b"input,teacher\n,refund\n", "input_blank", 2, id="empty-input"),
        pytest.param(b"input,teacher\n\"  \",refund\n", "input_blank", 2, id="whitespace-input"),
        pytest.param(b"input,teacher\nrefund please,\n", "teacher_blank", 2, id="empty-teacher"),
        pytest.param(b"input,teacher\ncaf\xe9,refund\n", "invalid_utf8", 2, id="latin1-byte"),
        pytest.param(b"input,teacher\na,b,c\n", "malformed_csv_row", 2, id="extra-field"),
        pytest.param(
            b"input,teacher\n\"multi\nline\",refund\nx,\n", "teacher_blank", 4,
            id="quoted-newline-line-number",
        ),
    ],
)
def test_each_bad_csv_row_is_quarantined_with_its_reason(tmp_path, content, reason, line):
    path = write_csv(tmp_path / "day.csv", content)
    intake = ingest_files([path])
    assert reason in intake.quarantine["reason"].tolist()
    row = intake.quarantine[intake.quarantine["reason"] == reason].iloc[0]
    assert (row["source_line"], row["source_file"]) == (line, "day.csv")
    assert intake.rows_read == intake.rows_used + intake.rows_quarantined


@pytest.mark.parametrize(
    ("columns", "reason"),
    [
        pytest.param({"teacher": pa.array(["refund"] * 3)}, "input_missing", id="no-input"),
        pytest.param({"input": pa.array(["a", "b", "c"])}, "teacher_missing", id="no-teacher"),
        pytest.param(
            {"input": pa.array(["a", None, "c"]), "teacher": pa.array(["t"] * 3)},
            "input_missing", id="null-input",
        ),
        pytest.param(
            {"input": pa.array(["a", "  ", "c"]), "teacher": pa.array(["t"] * 3)},
            "input_blank", id="whitespace-input",
        ),
        pytest.param(
            {"input": pa.array(["a", "b", "c"]), "teacher": pa.array(["t", "", "t"])},
            "teacher_blank", id="empty-teacher",
        ),
        pytest.param(
            {"input": pa.array([b"a", b"caf\xe9", b"c"], pa.binary()),
             "teacher": pa.array(["t"] * 3)},
            "invalid_utf8", id="binary-latin1",
        ),
        pytest.param(
            {"input": pa.array([[1], [2], [3]]), "teacher": pa.array(["t"] * 3)},
            "non_string_input", id="list-input",
        ),
        pytest.param(
            {"input": pa.array(["a", "b", "c"]), "teacher": pa.array([True, False, True])},
            "non_string_teacher", id="bool-teacher",
        ),
    ],
)
def test_each_bad_parquet_row_is_quarantined_with_its_reason(tmp_path, columns, reason):
    path = write_parquet(tmp_path / "day.parquet", columns)
    intake = ingest_files([path])
    quarantined = intake.quarantine
    assert set(quarantined["reason"]) == {reason}
    assert set(quarantined["source_file"]) == {"day.parquet"}
    if len(quarantined) == 1:
        assert quarantined["source_line"].tolist() == [2]
    assert intake.rows_read == 3 == intake.rows_used + intake.rows_quarantined


def test_a_binary_parquet_column_of_valid_utf8_is_read_as_text(tmp_path):
    path = write_parquet(
        tmp_path / "day.parquet",
        {"input": pa.array(["café".encode()], pa.binary()), "teacher": pa.array(["t"])},
    )
    assert ingest_files([path]).traces["input"].tolist() == ["café"]


def test_numbers_become_the_same_string_in_every_format(tmp_path):
    write_lines(
        tmp_path / "a.jsonl",
        [b'{"input": 7, "teacher": 7}', b'{"input": "x", "teacher": 7.0}',
         b'{"input": 0.5, "teacher": 0.5}'],
    )
    write_csv(tmp_path / "b.csv", b"input,teacher\n7,7\n0.5,0.5\n")
    write_parquet(tmp_path / "c.parquet", {"input": pa.array([7]), "teacher": pa.array([7])})
    write_parquet(tmp_path / "d.parquet",
                  {"input": pa.array([0.5]), "teacher": pa.array([7.0])})
    traces = ingest_files(list_trace_files(tmp_path)).traces
    assert traces["teacher"].tolist() == ["7", "7", "0.5", "7", "0.5", "7", "7"]
    assert traces["input"].tolist() == ["7", "x", "0.5", "7", "0.5", "7", "0.5"]


def test_coerce_text_field_rules():
    assert coerce_text_field(3) == ("3", False)
    assert coerce_text_field(3.0) == ("3", False)
    assert coerce_text_field(0.5) == ("0.5", False)
    assert coerce_text_field(b"abc") == ("abc", False)
    assert coerce_text_field(float("nan")) == (None, False)
    assert coerce_text_field(None) == (None, False)
    assert coerce_text_field(True) == (None, True)
    assert coerce_text_field(float("inf")) == (None, True)
    assert coerce_text_field({"a": 1}) == (None, True)


def test_teacher_labels_lose_surrounding_whitespace_and_inputs_keep_theirs(tmp_path):
    path = write_lines(
        tmp_path / "day.jsonl",
        [good("  refund me  ", "refund\n"), good("refund me", " refund ")],
    )
    traces = ingest_files([path]).traces
    assert traces["teacher"].tolist() == ["refund", "refund"]
    assert traces["input"].tolist() == ["  refund me  ", "refund me"]


# --- Long texts and duplicates -------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_very_long_text_is_kept_whole_and_flagged(tmp_path, suffix):
    long_text = "please help me with my card " * 10_000  # 280,000 characters
    path = tmp_path / f"day{suffix}"
    if suffix == ".jsonl":
        write_lines(path, [good(long_text), good()])
    elif suffix == ".csv":
        write_csv(path, f"input,teacher\n{long_text},help\nshort,help\n".encode())
    else:
        write_parquet(path, {"input": pa.array([long_text, "short"]),
                             "teacher": pa.array(["help", "help"])})
    intake = ingest_files([path])
    assert intake.rows_quarantined == 0
    assert intake.traces["input"].iloc[0] == long_text
    assert intake.traces["long_text"].tolist() == [True, False]
    assert len(long_text) > LONG_TEXT_CHARS


def test_exact_duplicates_in_a_day_are_kept_and_flagged_once(tmp_path):
    write_lines(tmp_path / "a.jsonl", [good(), good(), good("where is my card ")])
    write_csv(tmp_path / "b.csv", b"input,teacher\nwhere is my card,card_arrival\n"
              b"where is my card,card_lost\n")
    traces = ingest_files(list_trace_files(tmp_path)).traces
    # Same text and label: a duplicate. A trailing space, or another label, is not.
    assert traces["duplicate_in_day"].tolist() == [False, True, False, True, False]


# --- Whole files -----------------------------------------------------------------------------


def test_an_unreadable_parquet_file_counts_as_one_quarantined_row(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    intake = ingest_files([tmp_path / "broken.parquet"])
    assert_one_quarantined(intake, "unreadable_file", line=0, source="broken.parquet")


def test_a_file_of_an_unknown_type_is_quarantined_whole(tmp_path):
    (tmp_path / "notes.txt").write_text("input,teacher\n")
    intake = ingest_files(list_trace_files(tmp_path))
    assert_one_quarantined(intake, "unsupported_file_type", line=0, source="notes.txt")


def test_a_file_that_vanished_before_it_was_read_is_quarantined_not_a_crash(tmp_path):
    intake = ingest_files([tmp_path / "gone.jsonl", tmp_path / "gone.csv"])
    assert intake.quarantine["reason"].tolist() == ["unreadable_file", "unreadable_file"]
    assert intake.rows_read == 2


def test_hidden_and_temporary_files_are_not_read(tmp_path):
    write_lines(tmp_path / "day.jsonl", [good()])
    write_lines(tmp_path / ".day.jsonl.123.tmp", [good()])
    write_lines(tmp_path / "_partial.jsonl", [good()])
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_trace_files(tmp_path)] == ["day.jsonl"]


def test_a_mix_of_formats_adds_up(tmp_path):
    write_lines(tmp_path / "a.jsonl", [good(), b"{broken", good("", "x")])
    write_csv(tmp_path / "b.csv", b"input,teacher\nlost my card,card_lost\n,card_lost\n")
    pd.DataFrame({"input": ["stolen card", None], "teacher": ["card_stolen", "x"]}).to_parquet(
        tmp_path / "c.parquet"
    )
    intake = ingest_files(list_trace_files(tmp_path))
    assert intake.summary() == {
        "rows_read": 7,
        "rows_used": 3,
        "rows_quarantined": 4,
        "reasons": {"input_blank": 2, "malformed_json": 1, "input_missing": 1},
    }
