"""`parity_gate`: choose a candidate, calibrate its acceptor, and decide deploy or refuse."""

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from tracer_pipeline.formatting import markdown_table
from tracer_pipeline.gate.calibration import GateConfig, run_gate
from tracer_pipeline.partitions import daily_partitions
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import (
    HOLDOUT_COLUMNS,
    read_json,
    replace_folder_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from tracer_pipeline.surrogates.candidates import load_candidates
from tracer_pipeline.surrogates.trace_set import read_refit_snapshot

class ParityGateConfig(dg.Config):
    """The promise the gate certifies: agreement ≥ alpha with probability ≥ 1 - delta."""

    alpha: float = Field(default=0.95, gt=0.0, lt=1.0, description="Target agreement α.")
    delta: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="Allowed chance δ that the guarantee fails."
    )
    per_label_floor: bool = Field(
        default=False, description="Always defer labels whose own agreement is not certified."
    )


def evaluate_on_holdout(outcome, candidates, holdout: pd.DataFrame, embeddings: np.ndarray):
    """Route the held-out traces with the gate's policy (or record them all deferred if refused).

    Returns one row per held-out trace with the surrogate's label, whether it was handled, the
    acceptor score and the reason it was deferred.
    """
    rows = holdout[["trace_id", "input", "teacher"]].reset_index(drop=True)
    if outcome.policy is not None:
        explained = outcome.policy.explain(embeddings).reset_index(drop=True)
        rows["surrogate_label"] = explained["predicted"].astype(str)
        rows["handled"] = explained["handled"].astype(bool)
        rows["score"] = explained["score"].astype(float)
        rows["defer_reason"] = explained["defer_reason"].astype(object)
        return rows[list(HOLDOUT_COLUMNS)]
    chosen_name = outcome.details.get("surrogate_candidate", outcome.candidate)
    chosen = next((c for c in candidates if c.spec.name == chosen_name), candidates[0])
    if len(rows):
        probabilities = chosen.predict_proba(embeddings)
        rows["surrogate_label"] = np.asarray(chosen.label_space)[probabilities.argmax(axis=1)]
        rows["score"] = probabilities.max(axis=1)
    else:
        rows["surrogate_label"] = pd.Series(dtype=str)
        rows["score"] = pd.Series(dtype=float)
    rows["handled"] = False
    rows["defer_reason"] = "gate_refused"
    return rows[list(HOLDOUT_COLUMNS)]


def holdout_figures(decisions: pd.DataFrame) -> dict[str, float | int | None]:
    """Coverage and agreement realised on held-out traces (never trained or calibrated on)."""
    handled = decisions["handled"].to_numpy(dtype=bool)
    agree = (decisions["surrogate_label"] == decisions["teacher"]).to_numpy()
    n = len(decisions)
    return {
        "n_holdout": n,
        "coverage_holdout": float(handled.mean()) if n else 0.0,
        "agreement_holdout": float(agree[handled].mean()) if handled.any() else None,
        "accuracy_holdout": float(agree.mean()) if n else None,
    }


@dg.asset(
    partitions_def=daily_partitions,
    deps=["surrogate_candidates"],
    group_name="flywheel",
    kinds={"scipy", "mlflow"},
)
def parity_gate(
    context: dg.AssetExecutionContext,
    config: ParityGateConfig,
    storage: TraceStorage,
    tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """Deploy-or-refuse decision for the day's refit, with a finite-sample guarantee.

    Picks the candidate whose gated policy covers the most validation traffic at α, fits the
    acceptor, and certifies a threshold on the calibration traces by fixed-sequence testing:
    with probability ≥ 1 - δ over the calibration sample, agreement with the teacher on the
    handled traffic is ≥ α — assuming calibration traces are exchangeable with future traffic.
    No certifiable threshold: the gate refuses and coverage is 0. Realised coverage and agreement
    on the held-out slice are reported beside the certified figures.
    """
    import mlflow

    day = context.partition_key
    layout = storage.layout
    manifest = read_json(layout.refit_manifest(day))
    gate_config = GateConfig(
        alpha=config.alpha, delta=config.delta, per_label_floor=config.per_label_floor
    )
    if manifest["status"] != "fitted":
        reason = f"no refit on {day}: {manifest.get('reason')}"
        context.log.warning(reason)
        write_json_atomic(
            {"status": "skipped", "decision": "refuse", "reason": reason, "alpha": config.alpha,
             "delta": config.delta, "partition": day},
            layout.gate_outcome(day),
        )
        return dg.MaterializeResult(metadata={"decision": "refuse", "reason": reason})

    frame, embeddings = read_refit_snapshot(layout, day)
    candidates = load_candidates(layout.candidates(day))
    split = frame["split"].to_numpy()
    teacher = frame["teacher"].to_numpy(dtype=str)

    def part(name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = split == name
        return embeddings[mask], teacher[mask]

    outcome = run_gate(
        candidates,
        *part("train"),
        *part("validation"),
        *part("calibration"),
        gate_config,
        embedding_model=manifest.get("embedding_model", ""),
    )
    holdout_mask = split == "holdout"
    decisions = evaluate_on_holdout(
        outcome, candidates, frame[holdout_mask], embeddings[holdout_mask]
    )
    figures = holdout_figures(decisions)
    context.log.info(
        f"{day}: gate {outcome.decision} with {outcome.candidate} at α={config.alpha} "
        f"(threshold {outcome.threshold}, lower bound {outcome.agreement_lower_bound}); "
        f"held-out coverage {figures['coverage_holdout']:.3f}"
    )

    if outcome.policy is not None:
        replace_folder_atomic(outcome.policy.save, layout.policy(day))
    write_parquet_atomic(decisions, layout.holdout_decisions(day))
    record = {**outcome.to_dict(), **figures, "status": "evaluated", "partition": day,
              "mlflow_run_id": manifest["mlflow_run_id"], "n_traces": manifest["n_traces"]}
    write_json_atomic(record, layout.gate_outcome(day))

    tracking.activate()
    with mlflow.start_run(run_id=manifest["mlflow_run_id"]):
        mlflow.log_params(
            {"alpha": config.alpha, "delta": config.delta, "model": outcome.candidate,
             "per_label_floor": config.per_label_floor}
        )
        metrics = {
            "coverage_certified": outcome.coverage_calibration,
            "coverage_holdout": figures["coverage_holdout"],
            "n_calibration": outcome.n_calibration,
            "n_holdout": figures["n_holdout"],
        }
        optional = {
            "agreement_lower_bound": outcome.agreement_lower_bound,
            "agreement_calibration": outcome.agreement_calibration,
            "agreement_holdout": figures["agreement_holdout"],
            "threshold": outcome.threshold,
        }
        metrics.update({key: value for key, value in optional.items() if value is not None})
        for point in outcome.frontier:
            metrics[f"frontier_coverage_certified_a{point['alpha']:.2f}"] = (
                point["coverage_certified"]
            )
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"tracer.gate_decision": outcome.decision,
                         "tracer.gate_reason": outcome.reason or ""})

    frontier_rows = [
        {key: point.get(key) for key in ("alpha", "coverage_certified", "agreement_lower_bound",
                                         "threshold", "refused")}
        for point in outcome.frontier
    ]
    return dg.MaterializeResult(
        metadata={
            "decision": outcome.decision,
            "reason": outcome.reason or "",
            "candidate": outcome.candidate,
            "alpha": config.alpha,
            "delta": config.delta,
            "threshold": dg.MetadataValue.float(_or_nan(outcome.threshold)),
            "agreement_lower_bound": dg.MetadataValue.float(
                _or_nan(outcome.agreement_lower_bound)
            ),
            "coverage_certified_calibration": outcome.coverage_calibration,
            "n_calibration": outcome.n_calibration,
            "coverage_holdout": figures["coverage_holdout"],
            "agreement_holdout": dg.MetadataValue.float(_or_nan(figures["agreement_holdout"])),
            "n_holdout": figures["n_holdout"],
            "frontier": dg.MetadataValue.md(markdown_table(frontier_rows)),
            "mlflow_run_id": manifest["mlflow_run_id"],
        }
    )


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
