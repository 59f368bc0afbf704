"""Resources: where files live, where MLflow tracks, and which embedder embeds.

Each has a local default (files under `data/`, MLflow in SQLite, the packaged MiniLM) that a
production deployment replaces through resource config or the environment variables listed in
`tracer_pipeline.settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dagster as dg
from pydantic import Field

from tracer_pipeline import settings
from tracer_pipeline.embeddings.embedder import Embedder, load_embedder
from tracer_pipeline.storage import WarehouseLayout


class TraceStorage(dg.ConfigurableResource):
    """Landing folders of trace files and the warehouse of asset outputs."""

    data_dir: str
    landing_dir: str

    @property
    def layout(self) -> WarehouseLayout:
        return WarehouseLayout(Path(self.data_dir))

    def landing_folder(self, day: str) -> Path:
        return Path(self.landing_dir) / day


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking server and model registry used by every refit."""

    tracking_uri: str
    experiment_name: str = "tracer-pipeline"
    registered_model_name: str = "tracer-surrogate"
    artifacts_dir: str = ""

    def activate(self) -> str:
        """Point the mlflow module at this server; return the experiment id (creating it)."""
        import mlflow

        _prepare_sqlite_folder(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        artifact_location = None
        if self.artifacts_dir:
            Path(self.artifacts_dir).mkdir(parents=True, exist_ok=True)
            artifact_location = Path(self.artifacts_dir).resolve().as_uri()
        try:
            return mlflow.create_experiment(
                self.experiment_name, artifact_location=artifact_location
            )
        except mlflow.exceptions.MlflowException:
            # Another process created it between our look-up and create.
            return mlflow.get_experiment_by_name(self.experiment_name).experiment_id

    def client(self):
        from mlflow import MlflowClient

        self.activate()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def _prepare_sqlite_folder(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


class EmbedderResource(dg.ConfigurableResource):
    """The sentence embedder; loaded once per process and shared by every asset that embeds.

    `model` is "onnx-int8" (all-MiniLM-L6-v2 as int8 ONNX under ONNX Runtime) or "minilm"
    (the same model in fp32 through sentence-transformers, the plain fallback); the deployed
    router records it and embeds its texts with the same kind. Unless set in config, `model`
    and `threads` come from `$TRACER_EMBEDDER` (default "onnx-int8") and
    `$TRACER_EMBEDDER_THREADS` (default 1: on two cores the other is usually busy with Dagster
    or MLflow) when the resource is created. `cache_dir` is where the ONNX model is built once
    per machine; empty means `$TRACER_EMBEDDER_CACHE` or its default.
    """

    model: str = Field(default_factory=settings.embedder_name)
    batch_size: int = 64
    threads: int = Field(default_factory=settings.embedder_threads)
    cache_dir: str = ""

    def get(self) -> Embedder:
        return _cached_embedder(self.model, self.batch_size, self.threads, self.cache_dir)


@lru_cache(maxsize=4)
def _cached_embedder(model: str, batch_size: int, threads: int, cache_dir: str) -> Embedder:
    return load_embedder(
        model, batch_size=batch_size, threads=threads, cache_dir=cache_dir or None
    )


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources built from the environment (see `tracer_pipeline.settings`)."""
    return {
        "storage": TraceStorage(
            data_dir=str(settings.data_dir()), landing_dir=str(settings.landing_dir())
        ),
        "tracking": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri(),
            experiment_name=settings.experiment_name(),
            registered_model_name=settings.registered_model_name(),
            artifacts_dir=str(settings.mlflow_artifacts_dir()),
        ),
        "embedder": EmbedderResource(),
    }
