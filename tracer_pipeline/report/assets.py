"""`interpretability_report`: what the surrogate handles and why it defers, on held-out traces."""

import dagster as dg
import numpy as np
import pandas as pd

from tracer_pipeline import settings
from tracer_pipeline.partitions import daily_partitions, days_up_to
from tracer_pipeline.report.build import (
    HOLDOUT_COLUMNS,
    build_report,
    format_percent,
    headline_markdown,
    worst_labels_markdown,
)
from tracer_pipeline.report.render import render_report_html
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import (
    WarehouseLayout,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from tracer_pipeline.surrogates.trace_set import read_refit_snapshot

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
                    "n_traces": earlier_report["headline"].get("n_traces"),
                    "per_label": {
                        row["label"]: row["coverage"] for row in earlier_report["per_label"]
                    },
                }
            )
    return history


def holdout_embeddings(layout: WarehouseLayout, day: str, holdout: pd.DataFrame) -> np.ndarray:
    """The embeddings of the held-out traces, row for row, from the refit's snapshot.

    The gate writes its held-out decisions in the snapshot's order of held-out traces; trace ids
    need not be unique across days, so rows are matched by position and checked by id and text.

    Raises:
        ValueError: if the decisions are not the snapshot's held-out traces in its order.
    """
    frame, embeddings = read_refit_snapshot(layout, day)
    is_holdout = (frame["split"] == "holdout").to_numpy()
    snapshot = frame.loc[is_holdout, ["trace_id", "input"]].astype(str).reset_index(drop=True)
    decisions = holdout[["trace_id", "input"]].astype(str).reset_index(drop=True)
    if not snapshot.equals(decisions):
        raise ValueError(
            f"the held-out decisions of {day} ({len(decisions)} rows) are not the refit's "
            f"held-out traces ({len(snapshot)} rows): re-materialize parity_gate for this day"
        )
    return embeddings[is_holdout]


def previous_champion_report(layout: WarehouseLayout, day: str, deployment: dict) -> dict | None:
    """The report of the earlier day whose challenger was the champion before `day`'s deployment."""
    champion_before = deployment.get("champion_before")
    if champion_before is None:
        return None
    for earlier in reversed(days_up_to(day)[:-1]):
        record_path = layout.deployment(earlier)
        report_path = layout.report_dir(earlier) / REPORT_JSON
        if not record_path.exists():
            continue
        if str(read_json(record_path).get("challenger_version")) == str(champion_before):
            return read_json(report_path) if report_path.exists() else None
    return None


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
    if holdout_path.exists():
        holdout = pd.read_parquet(holdout_path)
        embeddings = holdout_embeddings(layout, day, holdout)
    else:
        # The gate skipped the day (no refit): there are no held-out traces to report on.
        holdout = pd.DataFrame(columns=list(HOLDOUT_COLUMNS))
        embeddings = None
    report = build_report(
        partition=day,
        holdout=holdout,
        gate=gate,
        deployment=deployment,
        n_traces=int(gate.get("n_traces", 0)),
        embedding_model=str(gate.get("details", {}).get("embedding_model", "")),
        price_per_llm_call=settings.price_per_llm_call(),
        daily_traffic=settings.daily_traffic(),
        holdout_embeddings=embeddings,
        history=_history(layout, day),
        previous_champion=previous_champion_report(layout, day, deployment),
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
        f"{day}: report written to {folder / REPORT_HTML} (held-out coverage "
        f"{format_percent(headline['coverage_holdout'])} of {headline['n_holdout']} traces, "
        f"{len(report['boundary_pairs'])} boundary pairs)"
    )
    return dg.MaterializeResult(
        metadata={
            "headline": dg.MetadataValue.md(headline_markdown(report)),
            "decision": str(headline["decision"]),
            "deployment_decision": str(headline["deployment_decision"]),
            "champion_version": str(headline["champion_version"] or "none"),
            "coverage_holdout": dg.MetadataValue.float(float(headline["coverage_holdout"] or 0)),
            "agreement_holdout": dg.MetadataValue.float(
                float("nan") if headline["agreement_holdout"] is None
                else float(headline["agreement_holdout"])
            ),
            "agreement_lower_bound": dg.MetadataValue.float(
                float("nan") if headline["agreement_lower_bound"] is None
                else float(headline["agreement_lower_bound"])
            ),
            "n_holdout": int(headline["n_holdout"]),
            "n_traces": int(headline["n_traces"]),
            "cost_saved_per_day_usd": dg.MetadataValue.float(headline["cost_saved_per_day"]),
            "worst_labels": dg.MetadataValue.md(worst_labels_markdown(report)),
            "html": dg.MetadataValue.path(str(folder / REPORT_HTML)),
            "json": dg.MetadataValue.path(str(folder / REPORT_JSON)),
        }
    )
