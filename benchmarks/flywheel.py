"""The flywheel on Banking77: five daily partitions through the real Dagster assets (issue 4).

    python benchmarks/flywheel.py                  # a table for people
    python benchmarks/flywheel.py --json           # one JSON object per day
    python benchmarks/flywheel.py --days 5 --alpha 0.95 --datasets-dir ../shared/datasets

Banking77's train split, in the order of a fixed shuffle, is cut into `--days` landing folders
(JSONL with `input` and the teacher label, by default the gold `label`). The `daily_refit` job
then materializes day 1, 2, ... in order into a temporary DAGSTER_HOME, warehouse and MLflow
store, exactly as the schedule would. After each day the champion of the registry routes
Banking77's test split, which no refit ever reads, and the benchmark prints:

- n_traces: distinct traces the day's refit learned from (all days so far);
- coverage_certified: the champion's certified coverage (calibration share it may answer);
- coverage_test, agreement_test: the champion on the test split (realised, not certified);
- champion_version: the registry version behind the `champion` alias;
- refit_s: seconds of the pipeline's refit steps (surrogate_candidates + parity_gate) on the
  embeddings the days already computed, warm-started from the previous day's candidates;
- refit_scratch_s: in the same process, a from-scratch refit of the same day through the same
  assets in a warehouse of its own: every day's texts embedded again (trace_embeddings for
  each day so far), surrogate_candidates with warm_start off, parity_gate; summed step seconds;
- embed_s: seconds of the day's trace_embeddings step (only that day's texts).

With `--json` each day's object also holds the day's deployment decision, the challenger's own
certified coverage, the certified coverage of the from-scratch refit (`scratch_coverage_
certified`: warm and cold fits compared on the same traces) and its embedding seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.embedding_cache import load_dataset  # noqa: E402

FIRST_DAY = "2026-01-01"
SHUFFLE_SEED = 20260101
# What the paper reports for TRACER on Banking77 at α = 0.95 with an LLM teacher.
PAPER_COVERAGE = "73% on day 1 rising to 83% by day 4"


def write_landing_days(train, landing: Path, days: list[str], teacher_column: str,
                       limit: int | None = None) -> None:
    """Cut the shuffled train split into one JSONL landing folder per day."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(train))[:limit]
    for day, rows in zip(days, np.array_split(order, len(days)), strict=True):
        folder = landing / day
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "traces.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                record = {"id": f"b77-{row}", "input": str(train["text"].iloc[row]),
                          "teacher": str(train[teacher_column].iloc[row])}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall seconds of each step of a Dagster run."""
    return {
        stats.step_key: (stats.end_time or 0) - (stats.start_time or 0)
        for stats in instance.get_run_step_stats(run_id)
    }


def scratch_refit(workdir: Path, layout, day: str, days: list[str], resources: dict,
                  run_config: dict) -> dict:
    """A from-scratch refit of `day` through the same assets, in a warehouse of its own.

    Only the raw traces of the days up to `day` are copied; every day's texts are embedded
    again (trace_embeddings for each day), then surrogate_candidates with `warm_start` off and
    parity_gate run for `day`. Returns the summed step seconds and the cold gate's outcome.
    """
    import dagster as dg

    from tracer_pipeline.definitions import FLYWHEEL_ASSETS
    from tracer_pipeline.resources import MlflowTracking, TraceStorage
    from tracer_pipeline.storage import WarehouseLayout, read_json

    folder = workdir / "scratch" / day
    scratch_layout = WarehouseLayout(folder / "data")
    for earlier in days[: days.index(day) + 1]:
        target = scratch_layout.raw_traces(earlier)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.raw_traces(earlier), target)
    tracking = resources["tracking"]
    scratch_resources = {
        **resources,
        "storage": TraceStorage(data_dir=str(folder / "data"), landing_dir=str(folder / "land")),
        "tracking": MlflowTracking(
            tracking_uri=tracking.tracking_uri,
            experiment_name=f"{tracking.experiment_name}-scratch",
            registered_model_name=f"{tracking.registered_model_name}-scratch",
            artifacts_dir=tracking.artifacts_dir,
        ),
    }
    by_name = {asset.key.path[-1]: asset for asset in FLYWHEEL_ASSETS}
    config = {"ops": {**run_config["ops"],
                      "surrogate_candidates": {"config": {"warm_start": False}}}}
    seconds = {"embed": 0.0, "refit": 0.0}
    with dg.DagsterInstance.ephemeral() as instance:
        for earlier in days[: days.index(day) + 1]:
            result = dg.materialize([by_name["trace_embeddings"]], partition_key=earlier,
                                    resources=scratch_resources, instance=instance)
            seconds["embed"] += sum(step_seconds(instance, result.run_id).values())
        result = dg.materialize(
            [by_name["surrogate_candidates"], by_name["parity_gate"]], partition_key=day,
            resources=scratch_resources, instance=instance, run_config=config,
        )
        if not result.success:
            raise SystemExit(f"the from-scratch refit of {day} failed")
        seconds["refit"] = sum(step_seconds(instance, result.run_id).values())
    gate = read_json(scratch_layout.gate_outcome(day))
    shutil.rmtree(folder)
    return {
        "seconds": seconds["embed"] + seconds["refit"],
        "embed_seconds": seconds["embed"],
        "coverage_certified": gate.get("coverage_calibration", 0.0),
        "decision": gate.get("decision"),
    }


def champion_on_test(tracking_uri: str, model_name: str, test_embeddings, test_labels):
    """Coverage and agreement of the registry's champion on the test split, and its version."""
    from mlflow.exceptions import MlflowException

    from tracer_pipeline.deployment.router import Router

    try:
        router = Router.from_registry(model_name=model_name, tracking_uri=tracking_uri)
    except MlflowException:
        return None
    decisions = router.route_embeddings(test_embeddings)
    handled = np.asarray(decisions.handled, dtype=bool)
    agrees = np.asarray(decisions.labels).astype(str) == test_labels
    return {
        "champion_version": router.manifest["version"],
        "coverage_test": float(handled.mean()),
        "agreement_test": float(agrees[handled].mean()) if handled.any() else None,
        "coverage_certified": float(router.policy.metadata.get("coverage_calibration", 0.0)),
    }


def run(args: argparse.Namespace) -> list[dict]:
    dataset = load_dataset("banking77", args.datasets_dir)
    train = dataset[dataset["split"] == "train"].reset_index(drop=True)
    test = dataset[dataset["split"] == "test"].reset_index(drop=True)
    workdir = args.workdir
    os.environ.update({
        "TRACER_DATA_DIR": str(workdir / "data"),
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "TRACER_MLFLOW_ARTIFACTS": str(workdir / "mlflow-artifacts"),
        "TRACER_PARTITIONS_START": FIRST_DAY,
    })
    (workdir / "dagster_home").mkdir(parents=True)
    import datetime as dt

    import dagster as dg

    from tracer_pipeline import settings
    from tracer_pipeline.definitions import defs
    from tracer_pipeline.embeddings.embedder import load_embedder
    from tracer_pipeline.resources import default_resources
    from tracer_pipeline.storage import WarehouseLayout, read_json

    first = dt.date.fromisoformat(FIRST_DAY)
    days = [(first + dt.timedelta(days=offset)).isoformat() for offset in range(args.days)]
    write_landing_days(train, settings.landing_dir(), days, args.teacher_column, args.limit)
    resources = default_resources()
    embedder_kind = resources["embedder"].model
    test_embeddings = load_embedder(embedder_kind).embed(test["text"].tolist())
    test_labels = test[args.teacher_column].to_numpy(dtype=str)
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("daily_refit")
    layout = WarehouseLayout(settings.data_dir())
    run_config = {"ops": {"parity_gate": {"config": {"alpha": args.alpha, "delta": args.delta}}}}
    rows = []
    for day in days:
        result = job.execute_in_process(partition_key=day, instance=instance,
                                        resources=resources, run_config=run_config)
        if not result.success:
            raise SystemExit(f"the refit of {day} failed")
        seconds = step_seconds(instance, result.run_id)
        manifest = read_json(layout.refit_manifest(day))
        gate = read_json(layout.gate_outcome(day))
        champion = champion_on_test(settings.mlflow_tracking_uri(),
                                    settings.registered_model_name(), test_embeddings,
                                    test_labels) or {}
        scratch = scratch_refit(workdir, layout, day, days, resources, run_config)
        rows.append({
            "day": day,
            "n_traces": manifest.get("n_traces", 0),
            "coverage_certified": champion.get("coverage_certified", 0.0),
            "coverage_test": champion.get("coverage_test", 0.0),
            "agreement_test": champion.get("agreement_test"),
            "champion_version": champion.get("champion_version"),
            "refit_s": round(seconds.get("surrogate_candidates", 0.0)
                             + seconds.get("parity_gate", 0.0), 2),
            "refit_scratch_s": round(scratch["seconds"], 2),
            "embed_s": round(seconds.get("trace_embeddings", 0.0), 2),
            "decision": read_json(layout.deployment(day)).get("decision"),
            "warm_start_from": manifest.get("warm_start_from"),
            "challenger_coverage_certified": gate.get("coverage_calibration", 0.0),
            "scratch_coverage_certified": scratch["coverage_certified"],
            "scratch_embed_s": round(scratch["embed_seconds"], 2),
        })
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict], alpha: float) -> None:
    def percent(value):
        return "-" if value is None else f"{100 * value:.1f}%"

    print(f"Banking77 flywheel at α = {alpha} (test split: traces never read by a refit)")
    header = ("day", "traces", "decision", "cert. cov", "test cov", "test agr", "champion",
              "refit s", "scratch s", "embed s", "cold cert.")
    print("  ".join(f"{h:>13}" for h in header))
    for row in rows:
        cells = (row["day"], row["n_traces"], row["decision"], percent(row["coverage_certified"]),
                 percent(row["coverage_test"]), percent(row["agreement_test"]),
                 row["champion_version"] or "-", row["refit_s"], row["refit_scratch_s"],
                 row["embed_s"], percent(row["scratch_coverage_certified"]))
        print("  ".join(f"{str(c):>13}" for c in cells))
    last = rows[-1]
    if last["refit_scratch_s"]:
        print(f"day {len(rows)}: warm refit on cached embeddings {last['refit_s']} s, from "
              f"scratch with re-embedding {last['refit_scratch_s']} s (ratio "
              f"{last['refit_s'] / last['refit_scratch_s']:.2f}; with the day's own embedding "
              f"{(last['refit_s'] + last['embed_s']) / last['refit_scratch_s']:.2f})")
    print(f"paper (TRACER, LLM teacher): {PAPER_COVERAGE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.95)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--datasets-dir", default=None,
                        help="folder of the datasets (default: $TRACER_DATASETS_DIR or "
                             "../shared/datasets)")
    parser.add_argument("--teacher-column", default="label",
                        help="column used as the teacher's label (default: the gold label)")
    parser.add_argument("--json", action="store_true", help="one JSON object per day")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N traces of the shuffled train split (a quick "
                             "smoke run; the figures then are not the benchmark's)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary DAGSTER_HOME, warehouse and MLflow store")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args.workdir = Path(tempfile.mkdtemp(prefix="tracer-flywheel-"))
    try:
        rows = run(args)
    finally:
        if args.keep:
            print(f"kept {args.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(args.workdir, ignore_errors=True)
    if not args.json:
        print_table(rows, args.alpha)
    return 0


if __name__ == "__main__":
    sys.exit(main())
