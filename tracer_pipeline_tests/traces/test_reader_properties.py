"""Property tests: random bytes and random records never crash the reader, and rows add up.

Each of the three readers (JSONL, CSV, Parquet) gets random bytes and random structured
content; for every example `rows read = rows used + rows quarantined`, and the quarantine and
traces can be written to Parquet (no text that a UTF-8 file cannot hold slips through).
"""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer_pipeline.traces.intake import ingest_files

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FIELD_NAMES = ["input", "teacher", "id", "timestamp", "metadata", "other"]
# Text including lone surrogates (which a JSON "\ud800" escape can produce) and control bytes.
ANY_TEXT = st.text(st.characters(codec=None), max_size=20)
FIELD_VALUES = st.one_of(
    st.none(), ANY_TEXT, st.integers(), st.floats(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
)
RANDOM_RECORDS = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(FIELD_NAMES), FIELD_VALUES, max_size=5),
        ANY_TEXT,
        st.integers(),
    ),
    max_size=12,
)


def assert_adds_up_and_writes(intake, tmp_path) -> None:
    assert intake.rows_read == intake.rows_used + intake.rows_quarantined
    intake.traces.to_parquet(tmp_path / "traces.parquet")
    intake.quarantine.to_parquet(tmp_path / "quarantine.parquet")


def jsonl_bytes(records) -> bytes:
    return b"\n".join(json.dumps(r).encode("utf-8", "surrogatepass") for r in records)


@PROPERTY_SETTINGS
@given(payload=st.one_of(st.binary(max_size=400), RANDOM_RECORDS.map(jsonl_bytes)))
def test_random_jsonl_never_crashes_and_rows_add_up(tmp_path, payload):
    path = tmp_path / "random.jsonl"
    path.write_bytes(payload)
    intake = ingest_files([path])
    assert_adds_up_and_writes(intake, tmp_path)
    non_blank = sum(1 for line in payload.removeprefix(b"\xef\xbb\xbf").split(b"\n")
                    if line.strip())
    assert intake.rows_read == non_blank


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["input", "teacher", "id"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8", "surrogatepass")


@PROPERTY_SETTINGS
@given(
    payload=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=300).map(lambda body: b"input,teacher\n" + body),
        st.lists(st.lists(ANY_TEXT, max_size=4), max_size=12).map(csv_bytes),
    )
)
def test_random_csv_never_crashes_and_rows_add_up(tmp_path, payload):
    path = tmp_path / "random.csv"
    path.write_bytes(payload)
    assert_adds_up_and_writes(ingest_files([path]), tmp_path)


COLUMN_VALUES = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=10)), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.binary(max_size=8)), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.floats()), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.booleans()), min_size=4, max_size=4),
    st.lists(st.lists(st.integers(0, 9), max_size=2), min_size=4, max_size=4),
)


@PROPERTY_SETTINGS
@given(
    columns=st.dictionaries(st.sampled_from(FIELD_NAMES), COLUMN_VALUES, max_size=4),
    garbage=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_random_parquet_never_crashes_and_rows_add_up(tmp_path, columns, garbage):
    path = tmp_path / "random.parquet"
    if garbage is not None:
        path.write_bytes(garbage)
    else:
        pq.write_table(pa.table({name: pa.array(values) for name, values in columns.items()}),
                       path)
    intake = ingest_files([path])
    assert_adds_up_and_writes(intake, tmp_path)
    if garbage is None:
        assert intake.rows_read == (4 if columns else 0)
