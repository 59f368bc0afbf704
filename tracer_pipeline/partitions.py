"""The daily partitions: each day's traces are one partition, each day's refit one flywheel turn."""

import dagster as dg

from tracer_pipeline import settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.partitions_start())

# A dependency of a day on the day before of the same asset: a backfill then runs that asset's
# days in day order, as the schedule does, and gets the same outputs.
PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def days_up_to(day: str, window_days: int | None = None) -> list[str]:
    """Partition keys from the first day (or the window's first day) up to and including `day`.

    A refit for `day` reads only these days: never a day after it.
    """
    keys = daily_partitions.get_partition_keys()
    if day not in keys:
        keys = [key for key in keys if key <= day] + [day]
    upto = [key for key in keys if key <= day]
    if window_days is not None:
        upto = upto[-window_days:]
    return upto
