"""The Dagster code location: the flywheel's assets, left to right, with their automation."""

import dagster as dg

from tracer_pipeline.automation import (
    daily_refit_job,
    daily_refit_schedule,
    landing_folder_sensor,
)
from tracer_pipeline.deployment.assets import deployment
from tracer_pipeline.embeddings.assets import trace_embeddings
from tracer_pipeline.gate.assets import parity_gate
from tracer_pipeline.report.assets import interpretability_report
from tracer_pipeline.resources import default_resources
from tracer_pipeline.surrogates.assets import surrogate_candidates
from tracer_pipeline.threads import limit_compute_threads
from tracer_pipeline.traces.assets import raw_traces

# Every process that loads the code location (each step of a run) computes with the threads
# `$TRACER_COMPUTE_THREADS` sets, not one spinning BLAS thread per core.
limit_compute_threads()

FLYWHEEL_ASSETS = [
    raw_traces,
    trace_embeddings,
    surrogate_candidates,
    parity_gate,
    deployment,
    interpretability_report,
]

defs = dg.Definitions(
    assets=FLYWHEEL_ASSETS,
    jobs=[daily_refit_job],
    schedules=[daily_refit_schedule],
    sensors=[landing_folder_sensor],
    resources=default_resources(),
)
