"""`deployment`: register the certified router and move the champion alias, or keep it."""

import dagster as dg

from tracer_pipeline.deployment.registry import (
    champion_version,
    promote,
    register_router,
)
from tracer_pipeline.embeddings.embedder import MINILM_DIMENSION, MINILM_NAME
from tracer_pipeline.partitions import daily_partitions
from tracer_pipeline.resources import EmbedderResource, MlflowTracking, TraceStorage
from tracer_pipeline.storage import read_json, write_json_atomic

PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


@dg.asset(
    partitions_def=daily_partitions,
    # The previous day's deployment comes first: champions change in day order, also when the
    # UI backfills many days at once.
    deps=["parity_gate", dg.AssetDep("deployment", partition_mapping=PREVIOUS_DAY)],
    group_name="flywheel",
    kinds={"mlflow"},
)
def deployment(
    context: dg.AssetExecutionContext,
    storage: TraceStorage,
    tracking: MlflowTracking,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The router in service: the day's certified policy as the MLflow `champion`, or the old one.

    When the gate deploys, the router (surrogate, acceptor, threshold, label space, embedding
    model and dimension) is logged to the refit's MLflow run, registered as a new version of the
    registered model, tagged with its partition and policy hash, and the `champion` alias moves
    to it. When the gate refuses, the champion stays where it was and the reason is recorded.
    """
    import mlflow

    day = context.partition_key
    layout = storage.layout
    gate = read_json(layout.gate_outcome(day))
    client = tracking.client()
    model_name = tracking.registered_model_name
    previous = champion_version(client, model_name)
    previous_version = previous.version if previous is not None else None

    if gate.get("decision") != "deploy":
        reason = f"gate refused: {gate.get('reason')}"
        record = {"partition": day, "decision": "refused", "reason": reason,
                  "champion_version": previous_version, "challenger_version": None}
        if gate.get("mlflow_run_id"):
            with mlflow.start_run(run_id=gate["mlflow_run_id"]):
                mlflow.set_tags({"tracer.deployment": "refused", "tracer.deployment_reason": reason})
        context.log.warning(f"{day}: {reason}; champion stays at version {previous_version}")
    else:
        model = embedder.get()
        manifest = {
            "partition": day,
            "embedder": embedder.model,
            "embedding_model": getattr(model, "name", MINILM_NAME),
            "embedding_dimension": getattr(model, "dimension", MINILM_DIMENSION),
            "alpha": gate["alpha"],
            "delta": gate["delta"],
            "threshold": gate["threshold"],
            "agreement_lower_bound": gate["agreement_lower_bound"],
            "surrogate": gate["candidate"],
        }
        version, policy_hash = register_router(
            client,
            model_name,
            gate["mlflow_run_id"],
            layout.policy(day),
            manifest,
            version_tags={
                "tracer.partition": day,
                "tracer.decision": "promoted",
                "tracer.coverage_certified": f"{gate['coverage_calibration']:.4f}",
                "tracer.agreement_lower_bound": f"{gate['agreement_lower_bound']:.4f}",
            },
        )
        promote(client, model_name, version)
        reason = None
        record = {"partition": day, "decision": "promoted", "reason": None,
                  "champion_version": version, "challenger_version": version,
                  "previous_champion_version": previous_version, "policy_sha256": policy_hash}
        with mlflow.start_run(run_id=gate["mlflow_run_id"]):
            mlflow.set_tags({"tracer.deployment": "promoted", "tracer.model_version": version})
        context.log.info(f"{day}: version {version} of {model_name} is the champion")

    write_json_atomic(record, layout.deployment(day))
    return dg.MaterializeResult(
        metadata={
            "decision": record["decision"],
            "champion_version": record["champion_version"] or "none",
            "previous_champion_version": previous_version or "none",
            "reason": reason or "",
            "registered_model": model_name,
        }
    )
