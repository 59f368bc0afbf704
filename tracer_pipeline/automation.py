"""The daily schedule and the landing-folder sensor that turn the flywheel."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from tracer_pipeline import settings
from tracer_pipeline.partitions import daily_partitions
from tracer_pipeline.traces.reader import list_trace_files

daily_refit_job = dg.define_asset_job(
    "daily_refit",
    selection=dg.AssetSelection.groups("flywheel"),
    partitions_def=daily_partitions,
    description="One turn of the flywheel: a day's traces through to the champion and report.",
)

# Runs at 01:00 for the day that just ended (the schedule targets the latest full partition).
daily_refit_schedule = dg.build_schedule_from_partitioned_job(
    daily_refit_job, hour_of_day=1, minute_of_hour=0
)


def landing_fingerprint(folder: Path) -> str:
    """Names, sizes and modification times of a landing folder's trace files."""
    files = list_trace_files(folder)
    return json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])


@dg.sensor(job=daily_refit_job, minimum_interval_seconds=60)
def landing_folder_sensor(context: dg.SensorEvaluationContext):
    """Requests a refit of a day when its landing folder appears or its files change.

    The cursor remembers each day's fingerprint (file names, sizes, modification times), so a
    folder is refitted once per change; folders whose name is not a partition day are ignored.
    """
    landing = settings.landing_dir()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    valid_days = set(daily_partitions.get_partition_keys())
    requests = []
    if landing.is_dir():
        for folder in sorted(p for p in landing.iterdir() if p.is_dir()):
            day = folder.name
            if day not in valid_days or not list_trace_files(folder):
                continue
            fingerprint = landing_fingerprint(folder)
            if seen.get(day) == fingerprint:
                continue
            seen[day] = fingerprint
            requests.append(
                dg.RunRequest(
                    run_key=f"{day}:{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}",
                    partition_key=day,
                )
            )
    if not requests:
        return dg.SkipReason(f"no new or changed landing folders under {landing}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen))
