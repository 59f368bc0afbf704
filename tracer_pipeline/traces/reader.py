"""Read trace files (JSONL, CSV, Parquet) into rows, and every unusable line into quarantine.

A trace is one call to the LLM classification endpoint: the `input` text and the label the LLM
(the teacher) gave it, in `teacher`; `id`, `timestamp` and `metadata` are optional. The reader
never drops a line silently: each line becomes a row of the parsed frame or a quarantine record
with its reason, source file and line. Field-level checks (nulls, blank text) are left to the
Great Expectations suite in `validation.py`, which runs on the parsed frame.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

TRACE_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
# Text longer than this is kept whole in the traces but cut for embedding (the model reads at
# most 256 word pieces, far fewer characters than this).
LONG_TEXT_CHARS = 2000
RAW_EXCERPT_CHARS = 500

PARSED_COLUMNS = [
    "trace_id",
    "input",
    "teacher",
    "timestamp",
    "metadata",
    "source_file",
    "source_line",
]
QUARANTINE_COLUMNS = ["source_file", "source_line", "reason", "raw"]


@dataclass
class ReadResult:
    """Rows parsed from trace files and the lines that could not be parsed.

    `lines_read` counts every non-blank line (or row, for CSV and Parquet) seen; it always equals
    `len(parsed) + len(quarantine)`.
    """

    parsed: pd.DataFrame
    quarantine: pd.DataFrame
    files: list[str] = field(default_factory=list)
    lines_read: int = 0
    blank_lines: int = 0


def list_trace_files(folder: Path) -> list[Path]:
    """Trace files in a landing folder, sorted; hidden and temporary files are not traces."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith((".", "_")) and not path.name.endswith(".tmp")
    )


def text_key(text: str) -> str:
    """Content key of a trace text: equal texts share a key (and so an embedding and a split)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def coerce_text_field(value: Any) -> tuple[str | None, bool]:
    """Turn a field value into text: (text or None when absent, whether the type was refused).

    Strings pass unchanged; integers and integral floats become their decimal digits ("3"),
    other finite floats their shortest repr ("0.5"), so the same number always gives the same
    label. Null and NaN are absent. Booleans, lists, dicts and infinities are refused.
    """
    if value is None:
        return None, False
    if isinstance(value, str):
        return value, False
    if isinstance(value, bool):
        return None, True
    if isinstance(value, int):
        return str(value), False
    if isinstance(value, float):
        if math.isnan(value):
            return None, False
        if math.isinf(value):
            return None, True
        return (str(int(value)) if value.is_integer() else repr(value)), False
    return None, True


def _excerpt(raw: Any) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return text[:RAW_EXCERPT_CHARS]


class _Collector:
    """Accumulates parsed rows and quarantine records while files are read."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.lines_read = 0
        self.blank_lines = 0

    def reject(self, source: str, line: int, reason: str, raw: Any) -> None:
        self.rejected.append(
            {"source_file": source, "source_line": line, "reason": reason, "raw": _excerpt(raw)}
        )

    def add_record(self, record: Any, source: str, line: int, raw: Any) -> None:
        """Validate the shape of one record (a mapping of fields) and keep or reject it."""
        self.lines_read += 1
        if not isinstance(record, dict):
            self.reject(source, line, "not_a_json_object", raw)
            return
        text, text_refused = coerce_text_field(record.get("input"))
        teacher, teacher_refused = coerce_text_field(record.get("teacher"))
        if text_refused:
            self.reject(source, line, "non_string_input", raw)
            return
        if teacher_refused:
            self.reject(source, line, "non_string_teacher", raw)
            return
        trace_id, _ = coerce_text_field(record.get("id"))
        timestamp, _ = coerce_text_field(record.get("timestamp"))
        metadata = record.get("metadata")
        self.rows.append(
            {
                "trace_id": trace_id or f"{source}:{line}",
                "input": text,
                "teacher": teacher,
                "timestamp": timestamp,
                "metadata": None if metadata is None else json.dumps(metadata, default=str),
                "source_file": source,
                "source_line": line,
            }
        )


def _read_jsonl(path: Path, collector: _Collector) -> None:
    source = path.name
    for number, raw_line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw_line.strip():
            collector.blank_lines += 1
            continue
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            collector.lines_read += 1
            collector.reject(source, number, "invalid_utf8", raw_line)
            continue
        try:
            record = json.loads(line)
        except ValueError:
            collector.lines_read += 1
            collector.reject(source, number, "malformed_json", line)
            continue
        collector.add_record(record, source, number, line)


def _read_csv(path: Path, collector: _Collector) -> None:
    source = path.name
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for record in reader:
        line = reader.line_num
        values = [v for v in record.values() if isinstance(v, str)]
        raw = ",".join(values)
        if any(_has_surrogates(v) for v in values):
            collector.lines_read += 1
            collector.reject(source, line, "invalid_utf8", raw.encode("utf-8", "surrogateescape"))
            continue
        if None in record:
            collector.lines_read += 1
            collector.reject(source, line, "malformed_csv_row", raw)
            continue
        if not any(v.strip() for v in values):
            collector.blank_lines += 1
            continue
        collector.add_record(dict(record), source, line, raw)


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= character <= "\udcff" for character in value)


def _read_parquet(path: Path, collector: _Collector) -> None:
    source = path.name
    try:
        table = pq.read_table(path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is quarantined whole
        collector.lines_read += 1
        collector.reject(source, 0, "unreadable_file", f"{type(error).__name__}: {error}")
        return
    for number, record in enumerate(table.to_pylist(), start=1):
        collector.add_record(record, source, number, record)


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def read_trace_files(paths: Iterable[Path]) -> ReadResult:
    """Read trace files into parsed rows and quarantine records; nothing is lost.

    Files are read in the order given. A file with an unknown suffix is quarantined whole with
    reason `unsupported_file_type`.
    """
    collector = _Collector()
    files = []
    for path in paths:
        path = Path(path)
        files.append(path.name)
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            collector.lines_read += 1
            collector.reject(path.name, 0, "unsupported_file_type", path.name)
            continue
        reader(path, collector)
    parsed = pd.DataFrame(collector.rows, columns=PARSED_COLUMNS)
    parsed["source_line"] = parsed["source_line"].astype("int64")
    quarantine = pd.DataFrame(collector.rejected, columns=QUARANTINE_COLUMNS)
    quarantine["source_line"] = quarantine["source_line"].astype("int64")
    return ReadResult(
        parsed=parsed,
        quarantine=quarantine,
        files=files,
        lines_read=collector.lines_read,
        blank_lines=collector.blank_lines,
    )
