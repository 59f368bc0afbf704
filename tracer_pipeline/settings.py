"""Settings a user can change, read from environment variables with embedded local defaults.

Every setting has a local default so that a fresh clone runs with no configuration; a production
deployment overrides them through the environment (or through Dagster resource config).

| variable | default | what it is |
| --- | --- | --- |
| TRACER_DATA_DIR | ./data | root of everything the pipeline writes |
| TRACER_LANDING_DIR | $TRACER_DATA_DIR/traces | landing folders, one per day (YYYY-MM-DD) |
| MLFLOW_TRACKING_URI | sqlite:///$TRACER_DATA_DIR/mlflow/mlflow.db | MLflow tracking + registry |
| TRACER_MLFLOW_ARTIFACTS | $TRACER_DATA_DIR/mlflow/artifacts | artifact root of new experiments |
| TRACER_EXPERIMENT | tracer-pipeline | MLflow experiment of the refit runs |
| TRACER_MODEL_NAME | tracer-surrogate | registered model that holds the router versions |
| TRACER_PARTITIONS_START | 2026-01-01 | first day of the daily partitions |
| TRACER_DATASETS_DIR | ../shared/datasets | public benchmark datasets (benchmarks, slow tests) |
| TRACER_EMBEDDER | onnx-int8 | `onnx-int8` (int8, ONNX Runtime) or `minilm` (fp32 fallback) |
| TRACER_EMBEDDER_THREADS | 1 | threads of the embedder (one: the other core is often busy) |
| TRACER_EMBEDDER_CACHE | ~/.cache/tracer-pipeline/embedders | ONNX model, built once per machine |
| TRACER_COMPUTE_THREADS | 1 | BLAS/OpenMP threads of refits and routing (one: as above) |
| TRACER_PRICE_PER_CALL | 0.002 | US dollars per teacher LLM call (the report's cost saved) |
| TRACER_DAILY_TRAFFIC | 100000 | requests per day (the report's cost saved) |
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PARTITIONS_START = "2026-01-01"
DEFAULT_EMBEDDER = "onnx-int8"


def data_dir() -> Path:
    """Root folder of everything the pipeline writes."""
    return Path(os.environ.get("TRACER_DATA_DIR", "data")).resolve()


def landing_dir() -> Path:
    """Folder that holds one landing folder of trace files per day."""
    configured = os.environ.get("TRACER_LANDING_DIR")
    return Path(configured).resolve() if configured else data_dir() / "traces"


def mlflow_tracking_uri() -> str:
    """MLflow tracking (and registry) URI; a local SQLite file by default."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"


def mlflow_artifacts_dir() -> Path:
    """Artifact root used when the pipeline creates its MLflow experiment."""
    configured = os.environ.get("TRACER_MLFLOW_ARTIFACTS")
    return Path(configured).resolve() if configured else data_dir() / "mlflow" / "artifacts"


def experiment_name() -> str:
    return os.environ.get("TRACER_EXPERIMENT", "tracer-pipeline")


def registered_model_name() -> str:
    return os.environ.get("TRACER_MODEL_NAME", "tracer-surrogate")


def partitions_start() -> str:
    return os.environ.get("TRACER_PARTITIONS_START", DEFAULT_PARTITIONS_START)


def datasets_dir() -> Path:
    """Folder of the public benchmark datasets (never committed into the project)."""
    return Path(os.environ.get("TRACER_DATASETS_DIR", "../shared/datasets")).resolve()


def embedder_name() -> str:
    """Which sentence embedder embeds: "onnx-int8" (default) or "minilm" (the plain fallback)."""
    return os.environ.get("TRACER_EMBEDDER", DEFAULT_EMBEDDER)


def embedder_threads() -> int:
    """Threads the embedder computes with (ONNX Runtime intra-op threads, or torch's)."""
    threads = int(os.environ.get("TRACER_EMBEDDER_THREADS", "1"))
    if threads < 1:
        raise ValueError(f"TRACER_EMBEDDER_THREADS must be at least 1, got {threads}")
    return threads


def compute_threads() -> int:
    """Threads of numpy's BLAS and scikit-learn's OpenMP in refits and routing (`threads.py`)."""
    threads = int(os.environ.get("TRACER_COMPUTE_THREADS", "1"))
    if threads < 1:
        raise ValueError(f"TRACER_COMPUTE_THREADS must be at least 1, got {threads}")
    return threads


def embedder_cache_dir() -> Path:
    """Where the exported ONNX embedding model is built once and kept (outside the package).

    `$TRACER_EMBEDDER_CACHE`, else `$XDG_CACHE_HOME/tracer-pipeline/embedders`, else
    `~/.cache/tracer-pipeline/embedders`: a per-user cache shared by every checkout and data dir.
    """
    configured = os.environ.get("TRACER_EMBEDDER_CACHE")
    if configured:
        return Path(configured).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tracer-pipeline" / "embedders"


def price_per_llm_call() -> float:
    """Price of one call to the teacher LLM in US dollars, for the report's cost saved per day."""
    price = float(os.environ.get("TRACER_PRICE_PER_CALL", "0.002"))
    if not price >= 0:
        raise ValueError(f"TRACER_PRICE_PER_CALL must be a price of 0 or more, got {price}")
    return price


def daily_traffic() -> int:
    """Classification requests per day, for the report's cost saved per day."""
    requests = int(os.environ.get("TRACER_DAILY_TRAFFIC", "100000"))
    if requests < 0:
        raise ValueError(f"TRACER_DAILY_TRAFFIC must be 0 or more requests, got {requests}")
    return requests
