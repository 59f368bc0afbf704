"""`raw_traces`: the day's landing files, validated, with every unusable row in quarantine."""

import dagster as dg
from pydantic import Field

from tracer_pipeline.partitions import daily_partitions
from tracer_pipeline.resources import TraceStorage
from tracer_pipeline.storage import partition_lock, write_parquet_atomic
from tracer_pipeline.traces.intake import (
    LandingSnapshot,
    compare_with_earlier_days,
    earlier_day_files,
    ingest_files,
)

# The asset check warns when more than this share of a day's rows had to be quarantined.
MAX_QUARANTINE_SHARE = 0.05


class RawTracesConfig(dg.Config):
    """How `raw_traces` waits for another run writing the same day."""

    lock_timeout_s: float = Field(
        default=600.0,
        description=(
            "Seconds to wait for the day's partition lock held by another run before failing."
        ),
    )


def day_status(files: int, rows_used: int) -> str:
    """One word for the UI: `traces`, `no_files` or `no_usable_rows`."""
    if files == 0:
        return "no_files"
    return "traces" if rows_used else "no_usable_rows"


@dg.asset(
    partitions_def=daily_partitions,
    group_name="flywheel",
    kinds={"parquet", "great_expectations"},
    check_specs=[
        dg.AssetCheckSpec(
            "traces_meet_suite",
            asset="raw_traces",
            description=(
                "The Great Expectations trace suite on the day's parsed rows: fields present, "
                "text not blank, teacher label a short non-empty string. Warns when more than "
                f"{MAX_QUARANTINE_SHARE:.0%} of the rows read were quarantined."
            ),
        )
    ],
)
def raw_traces(
    context: dg.AssetExecutionContext, config: RawTracesConfig, storage: TraceStorage
) -> dg.MaterializeResult:
    """The day's LLM traces (input text, teacher label) read from the landing folder.

    Reads every JSONL, CSV or Parquet file in `<landing_dir>/<day>/` listed when the read starts
    (a file landing later is read by the next run of the day, which the landing sensor
    requests), validates the rows with the Great Expectations suite, writes the good rows to
    `warehouse/raw_traces/<day>.parquet` and every row it cannot use, with its reason and source
    line, to `warehouse/quarantine/<day>.parquet`. A day with no files, or only bad rows, gives
    zero traces and says so in `status`. Duplicates and very long texts are kept and flagged;
    `new_teacher_labels` lists the labels no earlier day had. Holds the day's partition lock
    while it reads and writes, so two runs of one day never mix their files.
    """
    day = context.partition_key
    layout = storage.layout
    with partition_lock(layout, day, config.lock_timeout_s, holder=f"run {context.run_id}"):
        snapshot = LandingSnapshot.take(storage.landing_folder(day))
        intake = ingest_files(snapshot.paths)
        earlier = compare_with_earlier_days(
            intake.traces, earlier_day_files(layout.raw_traces(day).parent, day)
        )
        write_parquet_atomic(intake.traces, layout.raw_traces(day))
        write_parquet_atomic(intake.quarantine, layout.quarantine(day))
    changed_during_read = snapshot.changes_since()

    summary = intake.summary()
    status = day_status(len(snapshot.files), intake.rows_used)
    if status == "no_files":
        context.log.warning(f"{day}: no trace files in {snapshot.folder}; zero traces.")
    elif status == "no_usable_rows":
        context.log.warning(
            f"{day}: all {intake.rows_read} rows quarantined {summary['reasons']}; zero traces."
        )
    if changed_during_read:
        context.log.warning(
            f"{day}: {changed_during_read} appeared or changed after the read started; they "
            "are not in this materialization (the landing sensor requests a new run)."
        )
    if earlier.new_teacher_labels and earlier.days_compared:
        context.log.info(f"{day}: new teacher labels {earlier.new_teacher_labels}")
    context.log.info(
        f"{day}: read {intake.rows_read} rows from {len(snapshot.files)} files; used "
        f"{intake.rows_used}, quarantined {intake.rows_quarantined} {summary['reasons']}"
    )

    quarantined_share = intake.rows_quarantined / intake.rows_read if intake.rows_read else 0.0
    check = dg.AssetCheckResult(
        check_name="traces_meet_suite",
        passed=quarantined_share <= MAX_QUARANTINE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "status": status,
            "rows_read": intake.rows_read,
            "rows_used": intake.rows_used,
            "rows_quarantined": intake.rows_quarantined,
            "quarantine_reasons": dg.MetadataValue.json(summary["reasons"]),
            "quarantined_share": round(quarantined_share, 4),
            "suite_success": intake.validation.success,
            "expectations": dg.MetadataValue.json(intake.validation.expectations),
        },
    )
    traces = intake.traces
    return dg.MaterializeResult(
        metadata={
            "status": status,
            "files": dg.MetadataValue.json(intake.files),
            "landing_fingerprint": snapshot.fingerprint(),
            "files_changed_during_read": dg.MetadataValue.json(changed_during_read),
            "rows_read": intake.rows_read,
            "rows_used": intake.rows_used,
            "rows_quarantined": intake.rows_quarantined,
            "quarantine_reasons": dg.MetadataValue.json(summary["reasons"]),
            "blank_lines_skipped": intake.blank_lines,
            "distinct_traces": int((~traces["duplicate_in_day"]).sum()),
            "duplicates_in_day": int(traces["duplicate_in_day"].sum()),
            "duplicates_of_earlier_days": earlier.duplicates_of_earlier_days,
            "long_texts": int(traces["long_text"].sum()),
            "teacher_labels": int(traces["teacher"].nunique()),
            "new_teacher_labels": dg.MetadataValue.json(earlier.new_teacher_labels),
            "earlier_days_compared": len(earlier.days_compared),
            "path": dg.MetadataValue.path(str(layout.raw_traces(day))),
            "quarantine_path": dg.MetadataValue.path(str(layout.quarantine(day))),
        },
        check_results=[check],
    )
