"""`raw_traces`: the day's landing files, validated, with every unusable row in quarantine."""

import dagster as dg

from tracer_pipeline.partitions import daily_partitions
from tracer_pipeline.resources import TraceStorage
from tracer_pipeline.storage import write_parquet_atomic
from tracer_pipeline.traces.intake import ingest_files
from tracer_pipeline.traces.reader import list_trace_files

# The asset check warns when more than this share of a day's rows had to be quarantined.
MAX_QUARANTINE_SHARE = 0.05


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
def raw_traces(context: dg.AssetExecutionContext, storage: TraceStorage) -> dg.MaterializeResult:
    """The day's LLM traces (input text, teacher label) read from the landing folder.

    Reads every JSONL, CSV or Parquet file in `<landing_dir>/<day>/` as it was when the run
    started, validates the rows with the Great Expectations suite, writes the good rows to
    `warehouse/raw_traces/<day>.parquet` and every row it cannot use, with its reason and source
    line, to `warehouse/quarantine/<day>.parquet`. A day with no files gives zero traces.
    """
    day = context.partition_key
    folder = storage.landing_folder(day)
    files = list_trace_files(folder)
    if not files:
        context.log.warning(f"No trace files in {folder}; the day has zero traces.")
    intake = ingest_files(files)

    layout = storage.layout
    write_parquet_atomic(intake.traces, layout.raw_traces(day))
    write_parquet_atomic(intake.quarantine, layout.quarantine(day))
    summary = intake.summary()
    context.log.info(
        f"{day}: read {intake.rows_read} rows from {len(files)} files; used {intake.rows_used}, "
        f"quarantined {intake.rows_quarantined} {summary['reasons']}"
    )

    quarantined_share = intake.rows_quarantined / intake.rows_read if intake.rows_read else 0.0
    check = dg.AssetCheckResult(
        check_name="traces_meet_suite",
        passed=quarantined_share <= MAX_QUARANTINE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_read": intake.rows_read,
            "rows_quarantined": intake.rows_quarantined,
            "quarantined_share": round(quarantined_share, 4),
            "suite_success": intake.validation.success,
            "expectations": dg.MetadataValue.json(intake.validation.expectations),
        },
    )
    labels = intake.traces["teacher"].nunique()
    return dg.MaterializeResult(
        metadata={
            "files": dg.MetadataValue.json(intake.files),
            "rows_read": intake.rows_read,
            "rows_used": intake.rows_used,
            "rows_quarantined": intake.rows_quarantined,
            "quarantine_reasons": dg.MetadataValue.json(summary["reasons"]),
            "blank_lines_skipped": intake.blank_lines,
            "duplicates_in_day": int(intake.traces["duplicate_in_day"].sum()),
            "long_texts": int(intake.traces["long_text"].sum()),
            "teacher_labels": int(labels),
            "path": dg.MetadataValue.path(str(layout.raw_traces(day))),
            "quarantine_path": dg.MetadataValue.path(str(layout.quarantine(day))),
        },
        check_results=[check],
    )
