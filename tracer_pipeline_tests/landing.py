"""Landing folders of generated demo traces for tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tracer_pipeline.resources import TraceStorage

FIRST_DAY = dt.date(2026, 1, 1)


def day_key(offset: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=offset)).isoformat()


def land_demo_days(storage: TraceStorage, days: int, rows_per_day: int, seed: int = 0) -> list[str]:
    """Write generated demo traces (with a few bad rows) for `days` days; return the day keys."""
    from tracer_pipeline.demo.generator import write_demo_landing

    dates = [FIRST_DAY + dt.timedelta(days=offset) for offset in range(days)]
    write_demo_landing(Path(storage.landing_dir), dates, rows_per_day=rows_per_day, seed=seed)
    return [date.isoformat() for date in dates]
