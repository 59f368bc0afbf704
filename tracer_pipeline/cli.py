"""`tracer-pipeline`: the demo, trace checks, reports and the UIs, from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import webbrowser
from pathlib import Path

from tracer_pipeline import settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"
REPO_WORKSPACE_YAML = Path(__file__).resolve().parent.parent / "workspace.yaml"


def prepare_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or `<data_dir>/dagster_home`, creating it with the repo's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if REPO_DAGSTER_YAML.exists() and not target.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_days(days: list[str], run_config: dict | None = None) -> list[dict]:
    """Materialize the flywheel for each day in order into the Dagster instance at DAGSTER_HOME.

    Returns one summary per day, read from what the assets wrote.
    """
    import dagster as dg

    from tracer_pipeline.definitions import defs
    from tracer_pipeline.resources import default_resources
    from tracer_pipeline.storage import WarehouseLayout, partition_lock, read_json

    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("daily_refit")
    layout = WarehouseLayout(settings.data_dir())
    summaries = []
    for day in days:
        started = time.perf_counter()
        # Outside the Dagster queue: the day's lock keeps a second command off the same day.
        with partition_lock(layout, day, holder="tracer-pipeline materialize"):
            result = job.execute_in_process(
                partition_key=day, instance=instance, resources=default_resources(),
                run_config=run_config,
            )
        if not result.success:
            raise SystemExit(f"the refit of {day} failed; see the run in the Dagster UI")
        gate = read_json(layout.gate_outcome(day))
        deployment = read_json(layout.deployment(day))
        summaries.append(
            {
                "day": day,
                "n_traces": gate.get("n_traces", 0),
                "decision": gate.get("decision"),
                "coverage_certified": gate.get("coverage_calibration", 0.0),
                "agreement_lower_bound": gate.get("agreement_lower_bound"),
                "coverage_holdout": gate.get("coverage_holdout", 0.0),
                "agreement_holdout": gate.get("agreement_holdout"),
                "champion_version": deployment.get("champion_version"),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return summaries


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def print_day_table(summaries: list[dict]) -> None:
    print(
        f"{'day':<11} {'traces':>7} {'gate':<7} {'certified cov':>13} {'lower bound':>11} "
        f"{'held-out cov':>12} {'held-out agr':>12} {'champion':>8} {'seconds':>7}"
    )
    for s in summaries:
        print(
            f"{s['day']:<11} {s['n_traces']:>7} {s['decision']:<7} "
            f"{_percent(s['coverage_certified']):>13} {_percent(s['agreement_lower_bound']):>11} "
            f"{_percent(s['coverage_holdout']):>12} {_percent(s['agreement_holdout']):>12} "
            f"{str(s['champion_version'] or '-'):>8} {s['seconds']:>7}"
        )


def command_demo(args: argparse.Namespace) -> int:
    from tracer_pipeline.demo.generator import write_demo_landing

    started = time.perf_counter()
    prepare_dagster_home()
    first = dt.date.fromisoformat(args.start or settings.partitions_start())
    days = [first + dt.timedelta(days=offset) for offset in range(args.days)]
    written = write_demo_landing(
        settings.landing_dir(), days, rows_per_day=args.rows_per_day, seed=args.seed
    )
    print(f"demo traces written to {settings.landing_dir()}: {written}")
    summaries = run_days([day.isoformat() for day in days])
    print("\nThe flywheel, day by day (α = 0.95, δ = 0.05; coverage is the share of traffic the "
          "surrogate answers;\n'certified' on calibration traces, 'held-out' on traces never "
          "fitted or calibrated on):")
    print_day_table(summaries)
    from tracer_pipeline.storage import WarehouseLayout

    report = WarehouseLayout(settings.data_dir()).report_dir(days[-1].isoformat()) / "report.html"
    print(f"\nreport of the last day: {report}")
    print(f"MLflow tracking URI: {settings.mlflow_tracking_uri()}")
    print(f"Dagster home: {os.environ['DAGSTER_HOME']}")
    print(f"demo wall time: {time.perf_counter() - started:.0f} s")
    return 0


def command_materialize(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    first = dt.date.fromisoformat(args.first)
    last = dt.date.fromisoformat(args.last or args.first)
    if last < first:
        raise SystemExit(f"--last {last} is before the first day {first}")
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    print_day_table(run_days(days))
    return 0


def command_check_traces(args: argparse.Namespace) -> int:
    """Read trace files (or a landing folder's files) as `raw_traces` does and print the counts.

    Exit code 0 when the files could be read (quarantined rows included), 2 when a path does
    not exist.
    """
    from tracer_pipeline.traces.intake import ingest_files
    from tracer_pipeline.traces.reader import list_trace_files

    missing = [name for name in args.files if not Path(name).exists()]
    if missing:
        print(f"no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    paths = []
    for name in args.files:
        path = Path(name)
        paths.extend(list_trace_files(path) if path.is_dir() else [path])
    summary = ingest_files(paths).summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"files read:       {len(paths)}")
        print(f"rows read:        {summary['rows_read']}")
        print(f"rows used:        {summary['rows_used']}")
        print(f"rows quarantined: {summary['rows_quarantined']}")
        for reason, count in summary["reasons"].items():
            print(f"  {reason}: {count}")
    return 0


def _latest_report(day: str | None) -> Path | None:
    from tracer_pipeline.storage import WarehouseLayout

    refits = WarehouseLayout(settings.data_dir()).root / "refits"
    candidates = [refits / day] if day else sorted(refits.glob("*"), reverse=True)
    for folder in candidates:
        if (folder / "report" / "report.html").exists():
            return folder / "report"
    return None


def command_report(args: argparse.Namespace) -> int:
    folder = _latest_report(args.day)
    if folder is None:
        print(f"no report under {settings.data_dir()}; run `tracer-pipeline demo` first",
              file=sys.stderr)
        return 1
    if args.open:
        webbrowser.open((folder / "report.html").as_uri())
    if args.json:
        print((folder / "report.json").read_text(encoding="utf-8"))
    else:
        from tracer_pipeline.report.build import headline_markdown, worst_labels_markdown

        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        print(f"report of {report['partition']}: {folder / 'report.html'}")
        print(headline_markdown(report))
        print("\nlabels with the lowest coverage on held-out traces:")
        print(worst_labels_markdown(report))
    return 0


def command_route(args: argparse.Namespace) -> int:
    from tracer_pipeline.deployment.router import Router

    router = Router.from_registry(alias=args.alias)
    for routed in router.route(list(args.texts)):
        where = "surrogate" if routed.handled else "deferred to the LLM"
        print(f"{routed.surrogate_label:<30} {where:<20} score {routed.score:.3f}  {routed.text}")
    return 0


def command_rollback(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from tracer_pipeline.deployment.registry import roll_back
    from tracer_pipeline.storage import RegistryLockedError, WarehouseLayout, registry_lock

    uri = settings.mlflow_tracking_uri()
    model_name = settings.registered_model_name()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        # A deployment running meanwhile must not judge against an alias that moves under it.
        with registry_lock(WarehouseLayout(settings.data_dir()), holder="rollback command"):
            left, now = roll_back(client, model_name, args.to_version)
    except (ValueError, RegistryLockedError) as error:
        print(f"cannot roll back: {error}", file=sys.stderr)
        return 1
    print(f"{model_name}@champion: version {left} -> version {now}")
    return 0


def command_dagster_ui(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    command = ["dagster", "dev", "-w", str(REPO_WORKSPACE_YAML), "-p", str(args.port)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} {' '.join(command)}")
    return subprocess.call(command)


def command_mlflow_ui(args: argparse.Namespace) -> int:
    uri = settings.mlflow_tracking_uri()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--port", str(args.port),
               "--workers", "1"]
    print(" ".join(command))
    return subprocess.call(command, env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracer-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate demo traces and run the flywheel on them")
    demo.add_argument("--days", type=int, default=5, help="days of traces (default 5)")
    demo.add_argument("--rows-per-day", type=int, default=1500, help="traces per day (1500)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--start", help="first day, YYYY-MM-DD (default: first partition day)")
    demo.set_defaults(handler=command_demo)

    materialize = commands.add_parser(
        "materialize", help="run the flywheel for a day or a range of days, in order"
    )
    materialize.add_argument("first", help="first day, YYYY-MM-DD")
    materialize.add_argument("--last", help="last day (default: the first)")
    materialize.set_defaults(handler=command_materialize)

    check = commands.add_parser("check-traces", help="read trace files exactly as raw_traces does")
    check.add_argument("files", nargs="+", metavar="FILE",
                       help="trace files (JSONL, CSV, Parquet) or a landing folder of a day")
    check.add_argument("--json", action="store_true", help="one JSON object instead of text")
    check.set_defaults(handler=command_check_traces)

    report = commands.add_parser("report", help="print (or open) the latest report")
    report.add_argument("--day", help="the report of this day instead of the latest")
    report.add_argument("--open", action="store_true", help="open the HTML in a browser")
    report.add_argument("--json", action="store_true", help="print the whole report JSON")
    report.set_defaults(handler=command_report)

    route = commands.add_parser("route", help="route texts with the champion router")
    route.add_argument("texts", nargs="+")
    route.add_argument("--alias", default="champion")
    route.set_defaults(handler=command_route)

    rollback = commands.add_parser(
        "rollback", help="move the champion alias back to an earlier registered version"
    )
    rollback.add_argument("--to-version", help="version to restore (default: the one the "
                          "current champion replaced)")
    rollback.set_defaults(handler=command_rollback)

    dagster_ui = commands.add_parser("dagster-ui", help="start `dagster dev` on this project")
    dagster_ui.add_argument("--port", type=int, default=3000)
    dagster_ui.set_defaults(handler=command_dagster_ui)

    mlflow_ui = commands.add_parser("mlflow-ui", help="start the MLflow UI on the tracking store")
    mlflow_ui.add_argument("--port", type=int, default=5000)
    mlflow_ui.set_defaults(handler=command_mlflow_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
