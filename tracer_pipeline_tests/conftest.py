"""Shared fixtures: a temporary warehouse, a temporary MLflow store and small generated traces.

Everything is real: Dagster materializes in process, MLflow writes SQLite, GX validates, and
the packaged MiniLM embeds (loaded once per test session).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from tracer_pipeline.resources import (  # noqa: E402
    EmbedderResource,
    MlflowTracking,
    TraceStorage,
)

@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> Path:
    """One SQLite MLflow store per test session (creating its tables costs seconds)."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def tracking(mlflow_store: Path) -> MlflowTracking:
    """A tracking resource with an experiment and registered model of this test's own."""
    unique = uuid.uuid4().hex[:8]
    return MlflowTracking(
        tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}",
        experiment_name=f"test-{unique}",
        registered_model_name=f"surrogate-{unique}",
        artifacts_dir=str(mlflow_store / "artifacts" / unique),
    )


@pytest.fixture
def storage(tmp_path: Path) -> TraceStorage:
    return TraceStorage(data_dir=str(tmp_path / "data"), landing_dir=str(tmp_path / "landing"))


@pytest.fixture(scope="session")
def embedder() -> EmbedderResource:
    return EmbedderResource()


@pytest.fixture
def resources(storage, tracking, embedder) -> dict:
    return {"storage": storage, "tracking": tracking, "embedder": embedder}
