"""One day's intake: read the landing files, validate them, split good rows from quarantine.

This is what the `raw_traces` asset and `tracer-pipeline check-traces` both run, so the command
line shows exactly what the pipeline would keep.
"""

from __future__ import annotations

import json

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tracer_pipeline.traces.reader import (
    LONG_TEXT_CHARS,
    QUARANTINE_COLUMNS,
    RAW_EXCERPT_CHARS,
    ReadResult,
    read_trace_files,
    text_key,
)
from tracer_pipeline.traces.validation import TraceValidation, validate_traces

TRACE_COLUMNS = [
    "trace_id",
    "text_key",
    "input",
    "teacher",
    "timestamp",
    "metadata",
    "source_file",
    "source_line",
    "long_text",
    "duplicate_in_day",
]


@dataclass
class TraceIntake:
    """The traces of one intake and everything that was set aside.

    Invariant: `rows_read == len(traces) + len(quarantine)`.
    """

    traces: pd.DataFrame
    quarantine: pd.DataFrame
    validation: TraceValidation
    files: list[str]
    rows_read: int
    blank_lines: int

    @property
    def rows_used(self) -> int:
        return len(self.traces)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    def quarantine_reasons(self) -> dict[str, int]:
        return dict(Counter(self.quarantine["reason"]).most_common())

    def summary(self) -> dict:
        """The counts a user sees: rows read, used and quarantined (by reason)."""
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_quarantined": self.rows_quarantined,
            "reasons": self.quarantine_reasons(),
        }


def ingest_files(paths: Iterable[Path]) -> TraceIntake:
    """Read and validate trace files; rows that fail go to quarantine with their reason."""
    read: ReadResult = read_trace_files(paths)
    parsed = read.parsed.reset_index(drop=True)
    validation = validate_traces(parsed)

    failing = pd.Series(validation.row_reasons, dtype=object)
    failed_mask = parsed.index.isin(failing.index)
    failed_rows = parsed[failed_mask]
    gx_quarantine = pd.DataFrame(
        {
            "source_file": failed_rows["source_file"].tolist(),
            "source_line": failed_rows["source_line"].tolist(),
            "reason": failing.reindex(failed_rows.index).astype(str).tolist(),
            "raw": [
                json.dumps({"input": text, "teacher": teacher})[:RAW_EXCERPT_CHARS]
                for text, teacher in zip(failed_rows["input"], failed_rows["teacher"], strict=True)
            ],
        },
        columns=QUARANTINE_COLUMNS,
    )
    quarantine = pd.concat([read.quarantine, gx_quarantine], ignore_index=True)

    traces = parsed[~failed_mask].reset_index(drop=True)
    traces["text_key"] = [text_key(text) for text in traces["input"]]
    traces["long_text"] = traces["input"].str.len() > LONG_TEXT_CHARS
    traces["duplicate_in_day"] = traces.duplicated(subset=["text_key", "teacher"], keep="first")
    return TraceIntake(
        traces=traces[TRACE_COLUMNS],
        quarantine=quarantine,
        validation=validation,
        files=read.files,
        rows_read=read.lines_read,
        blank_lines=read.blank_lines,
    )
