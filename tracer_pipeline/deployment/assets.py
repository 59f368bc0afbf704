"""`deployment`: the day's challenger against the champion; the alias moves only to a better one."""

import dagster as dg
import numpy as np
from pydantic import Field

from tracer_pipeline.deployment.champion import (
    KEPT_CHAMPION,
    PROMOTED,
    REFUSED,
    ChallengerVerdict,
    judge_challenger,
)
from tracer_pipeline.deployment.registry import (
    DECISION_TAG,
    PARTITION_TAG,
    champion_version,
    find_registered_version,
    promote,
    register_router,
)
from tracer_pipeline.deployment.router import download_registered_router, load_verified_policy
from tracer_pipeline.embeddings.embedder import EMBEDDER_KINDS, load_embedder
from tracer_pipeline.gate.policy import RoutingPolicy
from tracer_pipeline.partitions import PREVIOUS_DAY, daily_partitions
from tracer_pipeline.resources import EmbedderResource, MlflowTracking, TraceStorage
from tracer_pipeline.storage import (
    WarehouseLayout,
    folder_sha256,
    read_json,
    registry_lock,
    write_json_atomic,
)
from tracer_pipeline.surrogates.trace_set import read_refit_snapshot


class DeploymentConfig(dg.Config):
    """How long a deployment waits for another one (or a rollback) to let go of the alias."""

    lock_timeout_s: float = Field(
        default=600.0, description="Seconds to wait for the registry lock before failing."
    )


def recorded_days(layout: WarehouseLayout) -> list[str]:
    """Days that have a deployment record, in order."""
    folder = layout.root / "refits"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "deployment.json").exists())


def champion_before(layout: WarehouseLayout, day: str, alias_version: str | None) -> str | None:
    """The champion a challenger of `day` faces.

    Going forward (neither this day nor a later one recorded) it is the alias as it stands now,
    so a rollback counts. Re-materializing a recorded day replays history: the champion recorded
    by the last day before it, so that the day gets the same outcome as the first time it ran.
    """
    days = recorded_days(layout)
    if not any(other >= day for other in days):
        return alias_version
    earlier = [other for other in days if other < day]
    if not earlier:
        return None
    return read_json(layout.deployment(earlier[-1])).get("champion_version")


def embedder_kind_of(model_name: str, configured: EmbedderResource) -> str:
    """The embedder kind ("onnx-int8", "minilm") whose vectors are named `model_name`."""
    if configured.get().name == model_name or not model_name:
        return configured.model
    for kind in EMBEDDER_KINDS:
        if load_embedder(kind).name == model_name:
            return kind
    raise ValueError(f"no embedder kind produces embeddings named {model_name!r}")


def fresh_traces(layout: WarehouseLayout, day: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The newest day's held-out traces of the refit (embeddings, teacher labels, basis)."""
    frame, embeddings = read_refit_snapshot(layout, day)
    newest = (frame["split"] == "holdout").to_numpy() & (frame["day"] == day).to_numpy()
    basis = f"held-out traces of {day}"
    if not newest.any():
        # The day brought no new held-out text: every held-out text is still unseen by both.
        newest = (frame["split"] == "holdout").to_numpy()
        basis = "all held-out traces (none new on this day)"
    return embeddings[newest], frame.loc[newest, "teacher"].to_numpy(dtype=str), basis


def _champion_policy(tracking: MlflowTracking, version: str | None, model_name: str):
    if version is None:
        return None, {}
    folder, expected, _ = download_registered_router(
        model_name=model_name, tracking_uri=tracking.tracking_uri, version=str(version)
    )
    return load_verified_policy(folder, expected)


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
    config: DeploymentConfig,
    storage: TraceStorage,
    tracking: MlflowTracking,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The router in service: the champion alias moves to the day's challenger only if it wins.

    A challenger exists when the gate deployed. It is registered as a model version (surrogate,
    acceptor, thresholds, label space, embedding model and dimension, tagged with its partition,
    policy hash and decision) and becomes the `champion` if it covers at least as much of the
    newest day's held-out traces as the champion — traces neither has trained or calibrated on.
    Otherwise, or when the gate refused, the champion stays and both figures are recorded.
    Re-materializing a day gives the same decision and reuses its registered version; the alias
    only moves for the latest recorded day. One deployment (or rollback) at a time holds the
    registry lock, so runs of different days side by side cannot move the alias back.
    """
    with registry_lock(
        storage.layout, config.lock_timeout_s, holder=f"deployment of {context.partition_key}"
    ):
        return _deploy_day(context, storage, tracking, embedder)


def _deploy_day(
    context: dg.AssetExecutionContext,
    storage: TraceStorage,
    tracking: MlflowTracking,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The body of `deployment`, run while holding the registry lock."""
    import mlflow

    day = context.partition_key
    layout = storage.layout
    gate = read_json(layout.gate_outcome(day))
    client = tracking.client()
    model_name = tracking.registered_model_name
    alias = champion_version(client, model_name)
    alias_version = str(alias.version) if alias is not None else None
    champion = champion_before(layout, day, alias_version)
    is_latest = not any(other > day for other in recorded_days(layout))
    run_id = gate.get("mlflow_run_id")

    record = {"partition": day, "champion_before": champion, "challenger_version": None,
              "comparison": None}
    metrics: dict[str, float] = {}
    if gate.get("decision") != "deploy":
        decision, reason, champion_after = REFUSED, f"gate refused: {gate.get('reason')}", champion
        # A refused challenger answers nothing: its coverage of the newest day is 0, logged so
        # that the refit runs stay comparable in the MLflow UI.
        metrics = {"coverage_fresh_challenger": 0.0}
    else:
        challenger = RoutingPolicy.load(layout.policy(day))
        champion_policy, champion_manifest = _champion_policy(tracking, champion, model_name)
        embedding_model = gate.get("details", {}).get("embedding_model", "")
        X_fresh, y_fresh, basis = fresh_traces(layout, day)
        if champion_policy is not None and (
            champion_manifest.get("embedding_model") != embedding_model
        ):
            # Vectors of two embedders do not compare: the newer certified policy wins.
            champion_policy = None
        verdict = judge_challenger(challenger, champion_policy, X_fresh, y_fresh, gate["delta"])
        decision = PROMOTED if verdict.promote else KEPT_CHAMPION
        reason = verdict.reason
        record["comparison"] = {**verdict.as_record(), "basis": basis}
        metrics = _comparison_metrics(verdict)
        version = _register_challenger(
            client, model_name, layout, day, gate, embedder, embedding_model, decision, verdict,
            run_id,
        )
        record["challenger_version"] = version
        champion_after = version if verdict.promote else champion

    moved = False
    if is_latest and champion_after is not None and champion_after != alias_version:
        promote(client, model_name, champion_after)
        moved = True
    # The record holds the outcome only (whether this run moved the alias is run metadata), so a
    # re-materialized day writes the same record.
    record.update({"decision": decision, "reason": reason, "champion_version": champion_after})
    if run_id:
        tracking.activate()
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tags({"tracer.deployment": decision, "tracer.deployment_reason": reason,
                             "tracer.champion_version": str(champion_after or "")})
            if metrics:
                mlflow.log_metrics(metrics)
    write_json_atomic(record, layout.deployment(day))
    log = context.log.info if decision == PROMOTED else context.log.warning
    log(f"{day}: {decision} ({reason}); champion is version {champion_after}")
    return dg.MaterializeResult(
        metadata={
            "decision": decision,
            "reason": reason,
            "champion_version": str(champion_after or "none"),
            "champion_before": str(champion or "none"),
            "challenger_version": str(record["challenger_version"] or "none"),
            "alias_moved": moved,
            "registered_model": model_name,
            **{key: dg.MetadataValue.float(value) for key, value in metrics.items()},
        }
    )


def _comparison_metrics(verdict: ChallengerVerdict) -> dict[str, float]:
    metrics = {"fresh_traces": float(verdict.n_fresh),
               "coverage_fresh_challenger": verdict.challenger.coverage}
    if verdict.challenger.agreement is not None:
        metrics["agreement_fresh_challenger"] = verdict.challenger.agreement
    if verdict.champion is not None:
        metrics["coverage_fresh_champion"] = verdict.champion.coverage
        if verdict.champion.agreement is not None:
            metrics["agreement_fresh_champion"] = verdict.champion.agreement
    return metrics


def _register_challenger(client, model_name, layout, day, gate, embedder, embedding_model,
                         decision, verdict, run_id) -> str:
    """Register the day's policy (or find the version a previous run registered)."""
    policy_hash = folder_sha256(layout.policy(day))
    existing = find_registered_version(client, model_name, day, policy_hash)
    tags = {
        PARTITION_TAG: day,
        DECISION_TAG: decision,
        "tracer.decision_reason": verdict.reason,
        "tracer.coverage_certified": f"{gate['coverage_calibration']:.4f}",
        "tracer.agreement_lower_bound": f"{gate['agreement_lower_bound']:.4f}",
        "tracer.coverage_fresh": f"{verdict.challenger.coverage:.4f}",
    }
    if verdict.champion is not None:
        tags["tracer.champion_coverage_fresh"] = f"{verdict.champion.coverage:.4f}"
    if existing is not None:
        for key, value in tags.items():
            client.set_model_version_tag(model_name, existing.version, key, value)
        return str(existing.version)
    kind = embedder_kind_of(embedding_model, embedder)
    loaded = load_embedder(kind)
    manifest = {
        "partition": day,
        "embedder": kind,
        "embedding_model": embedding_model or loaded.name,
        "embedding_dimension": loaded.dimension,
        "alpha": gate["alpha"],
        "delta": gate["delta"],
        "threshold": gate["threshold"],
        "distance_threshold": gate.get("distance_threshold"),
        "agreement_lower_bound": gate["agreement_lower_bound"],
        "surrogate": gate["candidate"],
    }
    version, _ = register_router(client, model_name, run_id, layout.policy(day), manifest,
                                 version_tags=tags)
    return version
