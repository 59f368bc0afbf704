"""Embedding parquet files: one row per distinct trace text, keyed by its content key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracer_pipeline.storage import _temporary_sibling


def write_embeddings(path: Path, text_keys: list[str], vectors: np.ndarray, model: str,
                     seconds: float | None = None) -> None:
    """Write `vectors` (n, d) float32 keyed by `text_keys`, atomically, as a fixed-size list.

    `seconds`, the time the embedding took, is kept in the file's metadata for the refit runs.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1] if vectors.ndim == 2 else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "text_key": pa.array(text_keys, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dimension),
        },
        metadata={"model": model, "dimension": str(dimension),
                  **({} if seconds is None else {"embed_seconds": f"{seconds:.6f}"})},
    )
    temporary = _temporary_sibling(path)
    try:
        pq.write_table(table, temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray, str]:
    """Return (text keys, float32 matrix (n, d), model name) from an embeddings file."""
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    dimension = int(metadata.get(b"dimension", b"0"))
    column = table.column("embedding").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = values.reshape(len(table), dimension) if len(table) else np.zeros((0, dimension),
                                                                             np.float32)
    return table.column("text_key").to_pylist(), matrix, metadata.get(b"model", b"").decode()


def read_embedding_seconds(path: Path) -> float | None:
    """Seconds the embedding of an embeddings file took, if it was recorded (schema only)."""
    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(b"embed_seconds")
    return float(value) if value is not None else None
