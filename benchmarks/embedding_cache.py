"""Benchmark datasets and a disk cache of their sentence embeddings.

The cache key is the dataset name, the embedder's name and a SHA-256 of the texts in order, so a
changed dataset or embedder never reads stale vectors. Files live under `benchmarks/.cache/`
(git-ignored). The slow validity test in `tracer_pipeline_tests/gate/` reads the same files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

LOGGER = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / "benchmarks" / ".cache"
DATASETS_DIR_ENV = "TRACER_DATASETS_DIR"
DEFAULT_DATASETS_DIR = "../shared/datasets"

# dataset name -> (parquet file under the datasets dir, fit split, evaluation split)
DATASET_FILES = {
    "banking77": ("banking77/banking77.parquet", "train", "test"),
    "clinc150": ("clinc150/clinc150.parquet", "train", "test"),
    "mnli": ("mnli/mnli.parquet", "train", "val"),
}


def resolve_datasets_dir(datasets_dir: str | os.PathLike | None = None) -> Path:
    """Return the datasets folder: the argument, else `$TRACER_DATASETS_DIR`, else the default.

    A relative path is taken relative to the repository root, not the working directory.
    """
    chosen = datasets_dir or os.environ.get(DATASETS_DIR_ENV) or DEFAULT_DATASETS_DIR
    path = Path(chosen)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def load_dataset(name: str, datasets_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read one benchmark dataset (columns include `text`, `label`, `split`)."""
    if name not in DATASET_FILES:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASET_FILES)}")
    path = resolve_datasets_dir(datasets_dir) / DATASET_FILES[name][0]
    if not path.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    return pd.read_parquet(path).reset_index(drop=True)


def embedding_cache_path(
    dataset: str, embedder_name: str, texts: Sequence[str], cache_dir: Path = DEFAULT_CACHE_DIR
) -> Path:
    """Return where the embeddings of `texts` by `embedder_name` are cached."""
    digest = hashlib.sha256()
    digest.update(embedder_name.encode())
    for text in texts:
        digest.update(b"\x00")
        digest.update(text.encode())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", embedder_name).strip("-")
    return Path(cache_dir) / "embeddings" / f"{dataset}__{slug}__{digest.hexdigest()[:16]}.npy"


def cached_embeddings(
    dataset: str,
    texts: Sequence[str],
    embedder_key: str = "minilm",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    threads: int | None = None,
) -> np.ndarray:
    """Return float32 embeddings of `texts`, computing and caching them on a miss."""
    # Imported here so that reading a warm cache needs no torch.
    from tracer_pipeline.embeddings.embedder import load_embedder

    embedder = load_embedder(embedder_key, batch_size=64, threads=threads)
    path = embedding_cache_path(dataset, embedder.name, texts, cache_dir)
    if path.exists():
        return np.load(path, allow_pickle=False)
    LOGGER.info("embedding %d texts of %s with %s", len(texts), dataset, embedder.name)
    vectors = embedder.embed(list(texts))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, vectors, allow_pickle=False)
    temporary.replace(path)
    return vectors
