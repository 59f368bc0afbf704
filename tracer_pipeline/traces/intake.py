"""One day's intake: read the landing files, validate them, split good rows from quarantine.

This is what the `raw_traces` asset and `tracer-pipeline check-traces` both run, so the command
line shows exactly what the pipeline would keep.

A day reads a snapshot of its landing folder: the list of trace files (with sizes and
modification times) taken when the read starts. A file that appears, or changes, after the
snapshot is not part of this read; `LandingSnapshot.changes_since` names it, and the landing
sensor, whose fingerprint is the same listing, requests a new run of the day for it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tracer_pipeline.traces.reader import (
    LONG_TEXT_CHARS,
    QUARANTINE_COLUMNS,
    RAW_EXCERPT_CHARS,
    ReadResult,
    list_trace_files,
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


@dataclass(frozen=True)
class TraceFileState:
    """One landing file as the snapshot saw it."""

    path: Path
    size: int
    mtime_ns: int


@dataclass
class LandingSnapshot:
    """The trace files of a landing folder at one moment: what one read of the day covers."""

    folder: Path
    files: list[TraceFileState] = field(default_factory=list)

    @classmethod
    def take(cls, folder: Path) -> LandingSnapshot:
        """List the folder's trace files now; a file that vanishes meanwhile is left out."""
        states = []
        for path in list_trace_files(Path(folder)):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            states.append(TraceFileState(path, stat.st_size, stat.st_mtime_ns))
        return cls(folder=Path(folder), files=states)

    @property
    def paths(self) -> list[Path]:
        return [state.path for state in self.files]

    def fingerprint(self) -> str:
        """Names, sizes and modification times, in the landing sensor's fingerprint format."""
        return json.dumps([[s.path.name, s.size, s.mtime_ns] for s in self.files])

    def changes_since(self) -> list[str]:
        """Files that appeared, changed or vanished in the folder since this snapshot."""
        now = {state.path.name: state for state in LandingSnapshot.take(self.folder).files}
        then = {state.path.name: state for state in self.files}
        changed = [
            name
            for name in sorted(set(now) | set(then))
            if name not in now
            or name not in then
            or (now[name].size, now[name].mtime_ns) != (then[name].size, then[name].mtime_ns)
        ]
        return changed


DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class EarlierDaysComparison:
    """How one day's traces relate to the traces of the days before it."""

    days_compared: list[str]
    new_teacher_labels: list[str]
    duplicates_of_earlier_days: int


def compare_with_earlier_days(
    traces: pd.DataFrame, earlier_files: Sequence[Path]
) -> EarlierDaysComparison:
    """Teacher labels never seen before, and traces that repeat an earlier day's trace.

    `earlier_files` are `raw_traces` parquet files of days before this one. A duplicate is a row
    whose (text, teacher label) pair appears on an earlier day; such rows are kept here and
    trained on once (`load_trace_set` keeps the earliest occurrence).
    """
    seen_labels: set[str] = set()
    seen_pairs: set[tuple[str, str]] = set()
    days = []
    for path in earlier_files:
        earlier = pd.read_parquet(path, columns=["text_key", "teacher"])
        seen_labels.update(earlier["teacher"].tolist())
        seen_pairs.update(zip(earlier["text_key"], earlier["teacher"], strict=True))
        days.append(Path(path).stem)
    labels = set(traces["teacher"].tolist())
    pairs = zip(traces["text_key"], traces["teacher"], strict=True)
    return EarlierDaysComparison(
        days_compared=days,
        new_teacher_labels=sorted(labels - seen_labels),
        duplicates_of_earlier_days=sum(pair in seen_pairs for pair in pairs),
    )


def earlier_day_files(folder: Path, day: str) -> list[Path]:
    """The `<day>.parquet` files in `folder` for days strictly before `day`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.glob("*.parquet")
        if DAY_FILE.match(path.stem) and path.stem < day
    )
