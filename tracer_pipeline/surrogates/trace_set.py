"""Assemble the traces a refit learns from: all days up to its own, never a later one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tracer_pipeline.embeddings.store import read_embeddings
from tracer_pipeline.storage import WarehouseLayout

TRACE_SET_COLUMNS = ["trace_id", "text_key", "input", "teacher", "day"]


class MissingEmbeddingsError(RuntimeError):
    """A day has traces but no embeddings for some of them."""


class MixedEmbeddingModelsError(RuntimeError):
    """The days of one refit were embedded by different models: their vectors do not compare."""


@dataclass
class TraceSet:
    """Distinct traces of several days with their embeddings, row for row.

    `frame` has one row per distinct (text, teacher label) pair, the earliest occurrence kept;
    `embeddings[i]` is the embedding of `frame.iloc[i]`.
    """

    frame: pd.DataFrame
    embeddings: np.ndarray
    days_read: list[str]
    duplicates_dropped: int
    embedding_model: str = ""

    def __len__(self) -> int:
        return len(self.frame)


def load_trace_set(layout: WarehouseLayout, days: Sequence[str]) -> TraceSet:
    """Read the traces and embeddings of `days` (in order) from the warehouse.

    Days without a `raw_traces` file are passed over (nothing landed or it was never
    materialized); a day with traces but missing embeddings raises `MissingEmbeddingsError`.
    """
    frames, matrices, days_read = [], [], []
    dimension = None
    model_by_day: dict[str, str] = {}
    for day in days:
        trace_path = layout.raw_traces(day)
        if not trace_path.exists():
            continue
        traces = pd.read_parquet(trace_path, columns=["trace_id", "text_key", "input", "teacher"])
        if traces.empty:
            days_read.append(day)
            continue
        embedding_path = layout.embeddings(day)
        if not embedding_path.exists():
            raise MissingEmbeddingsError(
                f"day {day} has {len(traces)} traces but no embeddings at {embedding_path}: "
                f"materialize trace_embeddings for {day} first"
            )
        keys, matrix, model = read_embeddings(embedding_path)
        model_by_day[day] = model
        position = pd.Series(np.arange(len(keys)), index=pd.Index(keys))
        located = position.reindex(traces["text_key"])
        if located.isna().any():
            missing = int(located.isna().sum())
            raise MissingEmbeddingsError(
                f"day {day}: {missing} traces have no embedding in {embedding_path}; "
                f"re-materialize trace_embeddings for {day}"
            )
        dimension = matrix.shape[1]
        traces["day"] = day
        frames.append(traces)
        matrices.append(matrix[located.to_numpy(dtype=np.int64)])
        days_read.append(day)

    models = sorted(set(model_by_day.values()))
    if len(models) > 1:
        listing = ", ".join(f"{day}: {model or 'unknown'}" for day, model in model_by_day.items())
        raise MixedEmbeddingModelsError(
            f"the days of this refit were embedded by different models ({listing}); "
            "re-materialize trace_embeddings for those days with one embedder"
        )
    embedding_model = models[0] if models else ""
    if not frames:
        return TraceSet(
            frame=pd.DataFrame(columns=TRACE_SET_COLUMNS),
            embeddings=np.zeros((0, dimension or 0), dtype=np.float32),
            days_read=days_read,
            duplicates_dropped=0,
            embedding_model=embedding_model,
        )
    frame = pd.concat(frames, ignore_index=True)
    embeddings = np.concatenate(matrices)
    keep = ~frame.duplicated(subset=["text_key", "teacher"], keep="first").to_numpy()
    return TraceSet(
        frame=frame[keep].reset_index(drop=True)[TRACE_SET_COLUMNS],
        embeddings=np.ascontiguousarray(embeddings[keep]),
        days_read=days_read,
        duplicates_dropped=int((~keep).sum()),
        embedding_model=embedding_model,
    )


def read_refit_snapshot(layout: WarehouseLayout, day: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The traces (with their split) and embeddings that the refit of `day` fitted on."""
    frame = pd.read_parquet(layout.trace_splits(day))
    embeddings = np.load(layout.refit_embeddings(day), allow_pickle=False)
    if len(frame) != len(embeddings):
        raise RuntimeError(
            f"refit snapshot of {day} is inconsistent ({len(frame)} traces, "
            f"{len(embeddings)} embeddings): re-materialize surrogate_candidates for {day}"
        )
    return frame, embeddings
