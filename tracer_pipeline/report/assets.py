"""`interpretability_report`: what the surrogate handles and why it defers, on held-out traces."""

import dagster as dg
import pandas as pd

from tracer_pipeline.partitions import daily_partitions, days_up_to
from tracer_pipeline.report.build import build_report, worst_labels_markdown
from tracer_pipeline.report.render import render_report_html
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import read_json, write_json_atomic, write_text_atomic

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
# How many earlier days' per-label coverage the report shows.
HISTORY_DAYS = 14


def _history(layout, day: str) -> list[dict]:
    """Per-label coverage of earlier days' reports (days before `day` only)."""
    history = []
    for earlier in days_up_to(day)[-HISTORY_DAYS - 1 : -1]:
        path = layout.report_dir(earlier) / REPORT_JSON
        if path.exists():
            earlier_report = read_json(path)
            history.append(
                {
                    "partition": earlier,
                    "per_label": {
                        row["label"]: row["coverage"] for row in earlier_report["per_label"]
                    },
                }
            )
    return history


@dg.asset(
    partitions_def=daily_partitions,
    deps=["parity_gate", "deployment"],
    group_name="flywheel",
    kinds={"html", "mlflow"},
)
def interpretability_report(
    context: dg.AssetExecutionContext, storage: TraceStorage, tracking: MlflowTracking
) -> dg.MaterializeResult:
    """Per-label coverage and agreement, defer reasons and examples, on held-out traces only.

    Written as `report.json` and a self-contained `report.html` (works offline) under the day's
    refit folder, and logged to the refit's MLflow run as artifacts.
    """
    import mlflow

    day = context.partition_key
    layout = storage.layout
    gate = read_json(layout.gate_outcome(day))
    deployment = read_json(layout.deployment(day))
    holdout_path = layout.holdout_decisions(day)
    holdout = pd.read_parquet(holdout_path) if holdout_path.exists() else pd.DataFrame(
        columns=["trace_id", "input", "teacher", "surrogate_label", "handled", "score",
                 "defer_reason"]
    )
    report = build_report(
        partition=day,
        holdout=holdout,
        gate=gate,
        deployment=deployment,
        n_traces=int(gate.get("n_traces", 0)),
        embedding_model=str(gate.get("details", {}).get("embedding_model", "")),
        history=_history(layout, day),
    )
    folder = layout.report_dir(day)
    write_json_atomic(report, folder / REPORT_JSON)
    write_text_atomic(render_report_html(report), folder / REPORT_HTML)

    if gate.get("mlflow_run_id"):
        tracking.activate()
        with mlflow.start_run(run_id=gate["mlflow_run_id"]):
            mlflow.log_artifact(str(folder / REPORT_JSON), artifact_path="report")
            mlflow.log_artifact(str(folder / REPORT_HTML), artifact_path="report")

    headline = report["headline"]
    context.log.info(
        f"{day}: report written to {folder / REPORT_HTML} "
        f"(held-out coverage {headline['coverage_holdout']})"
    )
    return dg.MaterializeResult(
        metadata={
            "decision": str(headline.get("decision")),
            "coverage_holdout": dg.MetadataValue.float(float(headline["coverage_holdout"] or 0)),
            "agreement_holdout": dg.MetadataValue.float(
                float("nan") if headline.get("agreement_holdout") is None
                else float(headline["agreement_holdout"])
            ),
            "n_holdout": int(headline.get("n_holdout") or 0),
            "worst_labels": dg.MetadataValue.md(worst_labels_markdown(report)),
            "html": dg.MetadataValue.path(str(folder / REPORT_HTML)),
            "json": dg.MetadataValue.path(str(folder / REPORT_JSON)),
        }
    )
