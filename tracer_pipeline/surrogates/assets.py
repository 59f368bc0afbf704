"""`surrogate_candidates`: the day's refit of the candidate zoo on every trace up to the day."""

import time

import dagster as dg
from pydantic import Field

from tracer_pipeline.embeddings.store import read_embedding_seconds
from tracer_pipeline.formatting import markdown_table
from tracer_pipeline.partitions import PREVIOUS_DAY, daily_partitions, days_up_to
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import (
    WarehouseLayout,
    read_json,
    replace_folder_atomic,
    write_json_atomic,
    write_npy_atomic,
    write_parquet_atomic,
)
from tracer_pipeline.surrogates.candidates import (
    FittedCandidate,
    default_candidate_specs,
    fit_candidates,
    load_candidates,
    save_candidates,
)
from tracer_pipeline.surrogates.splits import SPLIT_NAMES, assign_splits
from tracer_pipeline.surrogates.trace_set import load_trace_set

# Fewer training traces than this, or fewer than two teacher labels: the refit is skipped.
MIN_TRAIN_TRACES = 20


def previous_refit(
    layout: WarehouseLayout, day: str, split_salt: str, embedding_model: str
) -> tuple[str | None, list[FittedCandidate], str]:
    """The latest earlier refit whose candidates may warm-start the refit of `day`.

    Only days before `day` are looked at, so a refit never starts from a later day. The earlier
    refit must have fitted candidates with the same split salt (its training traces are then a
    subset of this refit's: a held-out or calibration trace was never trained on by it either)
    and the same embedding model. Returns (its day, its candidates, why) or (None, [], why not).
    """
    for earlier in reversed(days_up_to(day)[:-1]):
        path = layout.refit_manifest(earlier)
        if not path.exists():
            continue
        manifest = read_json(path)
        if manifest.get("status") != "fitted":
            continue
        if manifest.get("split_salt") != split_salt:
            return None, [], f"refit of {earlier} used another split salt: fitted cold"
        if manifest.get("embedding_model") != embedding_model:
            return None, [], f"refit of {earlier} used another embedding model: fitted cold"
        return earlier, load_candidates(layout.candidates(earlier)), f"warm start from {earlier}"
    return None, [], "no earlier refit: fitted cold"


class CandidatesConfig(dg.Config):
    """How a refit chooses its traces and fits its candidates."""

    window_days: int | None = Field(
        default=None, description="How many days up to the partition a refit reads (None: all)."
    )
    time_budget_s: float | None = Field(
        default=300.0,
        description="Stop starting new candidates once this many seconds passed. A refit that "
        "reaches it depends on the machine's speed; None keeps every refit reproducible.",
    )
    include_trees: bool = Field(default=False, description="Add tree models to the zoo.")
    split_salt: str = Field(
        default="tracer-v1", description="Salt of the hash that assigns each text its split."
    )
    warm_start: bool = Field(
        default=True,
        description="Start logistic, SGD and MLP candidates from the previous refit's solution "
        "with fewer iterations (False: fit every candidate from scratch).",
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[
        "raw_traces",
        "trace_embeddings",
        # The previous day's refit comes first (its candidates are the warm start).
        dg.AssetDep("surrogate_candidates", partition_mapping=PREVIOUS_DAY),
    ],
    group_name="flywheel",
    kinds={"scikitlearn", "mlflow"},
)
def surrogate_candidates(
    context: dg.AssetExecutionContext,
    config: CandidatesConfig,
    storage: TraceStorage,
    tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """Candidate surrogates fitted on the traces of every day up to this one.

    Each distinct trace text gets a split (train, validation, calibration, holdout) from a hash of
    its content, so a trace keeps its split as days are added and the same text never sits on
    both sides. Candidates are fitted once on the train split; the refit opens an MLflow run named
    after the partition, with one nested run per candidate. With `warm_start` (the default),
    logistic, SGD and MLP candidates start from the previous refit's solution and run fewer
    iterations; labels new since then get fresh columns. Reads no day after the partition.
    """
    import mlflow

    day = context.partition_key
    layout = storage.layout
    days = days_up_to(day, config.window_days)
    trace_set = load_trace_set(layout, days)
    frame = trace_set.frame.copy()
    frame["split"] = assign_splits(frame["text_key"].tolist(), salt=config.split_salt)
    split_counts = {name: int((frame["split"] == name).sum()) for name in SPLIT_NAMES}
    train = (frame["split"] == "train").to_numpy()
    labels_in_train = int(frame.loc[train, "teacher"].nunique())
    context.log.info(
        f"{day}: {len(frame)} distinct traces from {len(trace_set.days_read)} days "
        f"({trace_set.duplicates_dropped} duplicates dropped); splits {split_counts}"
    )

    manifest = {
        "partition": day,
        "days": trace_set.days_read,
        "n_traces": len(frame),
        "duplicates_dropped": trace_set.duplicates_dropped,
        "embedding_model": trace_set.embedding_model,
        "splits": split_counts,
        "labels": sorted(frame["teacher"].unique().tolist()),
        "split_salt": config.split_salt,
        "dagster_run_id": context.run_id,
    }
    # The refit's own snapshot of its traces and embeddings: the gate and the report read these,
    # so a day re-materialized upstream meanwhile cannot mix two versions into one refit.
    write_parquet_atomic(frame, layout.trace_splits(day))
    write_npy_atomic(trace_set.embeddings, layout.refit_embeddings(day))
    if split_counts["train"] < MIN_TRAIN_TRACES or labels_in_train < 2:
        reason = (
            f"too little to learn from: {split_counts['train']} training traces "
            f"(need {MIN_TRAIN_TRACES}) over {labels_in_train} teacher labels (need 2)"
        )
        context.log.warning(f"{day}: refit skipped, {reason}")
        write_json_atomic({**manifest, "status": "skipped", "reason": reason},
                          layout.refit_manifest(day))
        return dg.MaterializeResult(
            metadata={"status": "skipped", "reason": reason, "n_traces": len(frame)}
        )

    experiment_id = tracking.activate()
    specs = default_candidate_specs(include_trees=config.include_trees)
    warm_from, earlier_candidates, warm_reason = None, [], "warm start off: fitted cold"
    if config.warm_start:
        warm_from, earlier_candidates, warm_reason = previous_refit(
            layout, day, config.split_salt, trace_set.embedding_model
        )
    context.log.info(f"{day}: {warm_reason}")
    embed_seconds = {
        read_day: read_embedding_seconds(layout.embeddings(read_day))
        for read_day in trace_set.days_read
        if layout.embeddings(read_day).exists()
    }
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"refit {day}",
        tags={"tracer.partition": day, "dagster.run_id": context.run_id, "tracer.stage": "refit"},
    ) as parent:
        mlflow.log_params(
            {
                "partition": day,
                "n_traces": len(frame),
                "n_train": split_counts["train"],
                "n_labels": len(manifest["labels"]),
                "window_days": config.window_days or "all",
                "days_read": len(trace_set.days_read),
                "embedding_model": trace_set.embedding_model,
                "candidates": ",".join(spec.name for spec in specs),
                "warm_start": config.warm_start,
                "warm_start_from": warm_from or "none",
            }
        )
        started = time.perf_counter()
        candidates = fit_candidates(
            trace_set.embeddings[train],
            frame.loc[train, "teacher"].to_numpy(dtype=str),
            specs,
            time_budget_s=config.time_budget_s,
            warm_start_from=earlier_candidates,
        )
        fit_seconds = time.perf_counter() - started
        warm_started = [c.spec.name for c in candidates if c.warm_started]
        for candidate in candidates:
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{candidate.spec.name} {day}",
                nested=True,
                tags={"tracer.partition": day, "tracer.stage": "candidate"},
            ):
                mlflow.log_params({"kind": candidate.spec.kind, **candidate.spec.params,
                                   "warm_started": candidate.warm_started})
                mlflow.log_metric("fit_seconds", candidate.fit_seconds)
        metrics = {"fit_seconds": fit_seconds, "n_traces": len(frame),
                   "warm_started_candidates": len(warm_started)}
        # Seconds spent embedding: the newest day's texts (the refit's only new embedding
        # work), and every day read (what re-embedding all traces from scratch would redo).
        known_seconds = {key: value for key, value in embed_seconds.items() if value is not None}
        if day in known_seconds:
            metrics["embed_seconds"] = known_seconds[day]
        if known_seconds:
            metrics["embed_seconds_all_days"] = sum(known_seconds.values())
        mlflow.log_metrics(metrics)
        run_id = parent.info.run_id

    replace_folder_atomic(lambda folder: save_candidates(candidates, folder),
                          layout.candidates(day))
    write_json_atomic(
        {
            **manifest,
            "status": "fitted",
            "mlflow_run_id": run_id,
            "candidates": [c.spec.name for c in candidates],
            "fit_seconds": fit_seconds,
            "warm_start": config.warm_start,
            "warm_start_from": warm_from,
            "warm_started": warm_started,
        },
        layout.refit_manifest(day),
    )
    fits = [{"candidate": c.spec.name, "fit_seconds": round(c.fit_seconds, 3),
             "warm_started": c.warm_started} for c in candidates]
    return dg.MaterializeResult(
        metadata={
            "status": "fitted",
            "n_traces": len(frame),
            "days_read": len(trace_set.days_read),
            "duplicates_dropped": trace_set.duplicates_dropped,
            "splits": dg.MetadataValue.json(split_counts),
            "teacher_labels": len(manifest["labels"]),
            "fit_seconds": round(fit_seconds, 3),
            "warm_start_from": warm_from or "none (fitted cold)",
            "warm_started_candidates": len(warm_started),
            "embed_seconds": dg.MetadataValue.float(float(metrics.get("embed_seconds", "nan"))),
            "candidates": dg.MetadataValue.md(markdown_table(fits)),
            "mlflow_run_id": run_id,
        }
    )
