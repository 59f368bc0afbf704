"""Read trace files (JSONL, CSV, Parquet) into rows, and every unusable line into quarantine.

A trace is one call to the LLM classification endpoint: the `input` text and the label the LLM
(the teacher) gave it, in `teacher`; `id`, `timestamp` and `metadata` are optional. The reader
never drops a line silently: each line becomes a row of the parsed frame or a quarantine record
with its reason, source file and line. Field-level checks (nulls, blank text) are left to the
Great Expectations suite in `validation.py`, which runs on the parsed frame.

What the reader decides, field by field:

- `input` is kept exactly as written (no trimming: exact duplicates are exact). Numbers become
  their decimal text (`coerce_text_field`); booleans, lists and objects are refused.
- `teacher` is coerced the same way and then stripped of surrounding whitespace, so an LLM's
  trailing newline does not make a new label.
- Text that is not valid UTF-8 (bytes in JSONL or CSV, a binary Parquet value, or a JSON
  `\\ud800` escape that no UTF-8 file can hold) is quarantined as `invalid_utf8`.
- A byte-order mark at the start of a JSONL or CSV file is ignored.
- A file that cannot be read at all (vanished, unreadable, not Parquet) counts as one row read
  and one quarantine record at line 0, so `rows read = used + quarantined` still holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TRACE_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
# Text longer than this is kept whole in the traces but cut for embedding (the model reads at
# most 256 word pieces, far fewer characters than this).
LONG_TEXT_CHARS = 2000
RAW_EXCERPT_CHARS = 500
# CSV fields may hold very long texts: raise the csv module's 128 KiB default field limit.
CSV_FIELD_LIMIT_CHARS = 2**31 - 1
UTF8_BOM = b"\xef\xbb\xbf"

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
        if path.is_file()
        and not path.name.startswith((".", "_"))
        and not path.name.endswith(".tmp")
    )


def text_key(text: str) -> str:
    """Content key of a trace text: equal texts share a key (and so an embedding and a split)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def coerce_text_field(value: Any) -> tuple[str | None, bool]:
    """Turn a field value into text: (text or None when absent, whether the type was refused).

    Strings pass unchanged; integers and integral floats become their decimal digits ("3"),
    other finite floats their shortest repr ("0.5"), so the same number always gives the same
    label whichever file format carried it. Null and NaN are absent. Bytes (a binary Parquet
    column) are decoded as UTF-8; `UnicodeDecodeError` is left to the caller. Booleans, lists,
    dicts and infinities are refused.
    """
    if value is None:
        return None, False
    if isinstance(value, str):
        return value, False
    if isinstance(value, bytes):
        return value.decode("utf-8"), False
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


def _is_utf8_text(value: str | None) -> bool:
    """Whether `value` can be written as UTF-8 (a lone surrogate cannot)."""
    if value is None or value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _excerpt(raw: Any) -> str:
    """At most `RAW_EXCERPT_CHARS` of a raw line, as text that any UTF-8 file can hold."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, dict):
        raw = {key: _printable(value) for key, value in raw.items()}
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return _printable(text[:RAW_EXCERPT_CHARS])


def _printable(value: Any) -> Any:
    """`value` with bytes and unencodable characters replaced, for quarantine excerpts."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str) and not _is_utf8_text(value):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", errors="replace")
    return value


def source_name(path: Path) -> str:
    """The file name recorded as `source_file`; undecodable bytes in the name become U+FFFD."""
    return _printable(path.name)


def _optional_text(value: Any) -> str | None:
    """An optional field (`id`, `timestamp`) as text, or None when it cannot be text."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    try:
        text, refused = coerce_text_field(value)
    except UnicodeDecodeError:
        return None
    return None if refused or not _is_utf8_text(text) else text


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
        try:
            text, text_refused = coerce_text_field(record.get("input"))
            teacher, teacher_refused = coerce_text_field(record.get("teacher"))
        except UnicodeDecodeError:
            self.reject(source, line, "invalid_utf8", raw)
            return
        if text_refused:
            self.reject(source, line, "non_string_input", raw)
            return
        if teacher_refused:
            self.reject(source, line, "non_string_teacher", raw)
            return
        if not (_is_utf8_text(text) and _is_utf8_text(teacher)):
            self.reject(source, line, "invalid_utf8", raw)
            return
        trace_id = _optional_text(record.get("id"))
        timestamp = _optional_text(record.get("timestamp"))
        metadata = _printable(record.get("metadata"))
        self.rows.append(
            {
                "trace_id": trace_id or f"{source}:{line}",
                "input": text,
                "teacher": None if teacher is None else teacher.strip(),
                "timestamp": timestamp,
                "metadata": None if metadata is None else json.dumps(metadata, default=str),
                "source_file": source,
                "source_line": line,
            }
        )


def _read_bytes(path: Path, collector: _Collector) -> bytes | None:
    """The whole file, or None (and one `unreadable_file` record) when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        collector.lines_read += 1
        reason = f"{type(error).__name__}: {error}"
        collector.reject(source_name(path), 0, "unreadable_file", reason)
        return None


def _read_jsonl(path: Path, collector: _Collector) -> None:
    source = source_name(path)
    content = _read_bytes(path, collector)
    if content is None:
        return
    content = content.removeprefix(UTF8_BOM)
    for number, raw_line in enumerate(content.split(b"\n"), start=1):
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
    """Read a CSV file with a header row; each record is one row, at the line it ends on.

    A record the csv module cannot parse is quarantined as `malformed_csv_row` and reading goes
    on with the next record.
    """
    source = source_name(path)
    content = _read_bytes(path, collector)
    if content is None:
        return
    text = content.removeprefix(UTF8_BOM).decode("utf-8", errors="surrogateescape")
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT_CHARS))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as error:
            collector.lines_read += 1
            collector.reject(source, reader.line_num, "malformed_csv_row", str(error))
            continue
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
    """Read a Parquet file; row n of the table is source line n.

    String columns are read as bytes and decoded row by row, so one row of invalid UTF-8 is
    quarantined alone instead of failing the file.
    """
    source = source_name(path)
    try:
        table = pq.read_table(path)
        as_bytes = pa.schema(
            [
                field.with_type(pa.binary()) if pa.types.is_string(field.type)
                else field.with_type(pa.large_binary()) if pa.types.is_large_string(field.type)
                else field
                for field in table.schema
            ]
        )
        records = table.cast(as_bytes).to_pylist()
    except Exception as error:  # noqa: BLE001 - any unreadable file is quarantined whole
        collector.lines_read += 1
        collector.reject(source, 0, "unreadable_file", f"{type(error).__name__}: {error}")
        return
    for number, record in enumerate(records, start=1):
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
        files.append(source_name(path))
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            collector.lines_read += 1
            collector.reject(source_name(path), 0, "unsupported_file_type", source_name(path))
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
