"""all-MiniLM-L6-v2 as int8 ONNX under ONNX Runtime: the pipeline's fast offline embedder.

It computes what sentence-transformers computes for this model — the word pieces of the
packaged tokenizer cut at 256 tokens, the transformer, the mean of the token embeddings under
the attention mask, L2 normalisation — with the transformer's weights quantized to int8 (one
scale per output channel) except the feed-forward output projections of the first three
layers (see `onnx_export.quantize_int8`). Texts are sorted by length before batching so that a
batch pads to lengths close to its own, and put back in input order afterwards.

Dynamic quantization scales each batch's activations by that batch's own range, so a text's
vector can differ in the last digits with the texts it is batched with (cosine to the fp32
vector stays about 0.99 either way); the fp32 fallback ("minilm") has no such effect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tracer_pipeline.embeddings.embedder import (
    MINILM_DIMENSION,
    MINILM_MAX_TOKENS,
    MINILM_NAME,
    ProgressCallback,
    ProgressLog,
)
from tracer_pipeline.embeddings.onnx_export import RECIPE_NAME

LOGGER = logging.getLogger(__name__)

ONNX_INT8_NAME = f"{MINILM_NAME}/{RECIPE_NAME}"


class OnnxInt8MiniLMEmbedder:
    """The packaged all-MiniLM-L6-v2, exported once to int8 ONNX and run by ONNX Runtime.

    Args:
        cache_dir: where the exported model is built and kept (see `onnx_export`).
        threads: ONNX Runtime intra-op threads. One is the right default on two cores whose
            other core is busy: a second spinning thread then slows both down.
        batch_size: texts per forward pass (batches are formed after sorting by length).
        source: sentence-transformers model folder; the packaged MiniLM by default.
    """

    name = ONNX_INT8_NAME
    dimension = MINILM_DIMENSION

    def __init__(
        self,
        cache_dir: str | Path,
        threads: int = 1,
        batch_size: int = 64,
        source: str | Path | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.cache_dir = Path(cache_dir)
        self.threads = threads
        self.batch_size = batch_size
        self.source = Path(source) if source is not None else None
        self.model_folder: Path | None = None
        self._session = None
        self._tokenizer = None

    def _load(self):
        if self._session is None:
            # Imported here: onnxruntime and the export code are only needed once embedding.
            import onnxruntime
            from tokenizers import Tokenizer

            from tracer_pipeline.embeddings.onnx_export import (
                MODEL_FILE,
                ensure_int8_model,
                packaged_model_folder,
            )

            source = self.source or packaged_model_folder()
            self.model_folder = ensure_int8_model(self.cache_dir, source)

            tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
            tokenizer.no_padding()
            self._tokenizer = tokenizer

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Busy-waiting threads steal the core that the rest of the machine needs.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = onnxruntime.InferenceSession(
                str(self.model_folder / MODEL_FILE),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        return self._session, self._tokenizer

    def embed(
        self, texts: Sequence[str], progress: ProgressCallback | None = None
    ) -> np.ndarray:
        """Return one L2-normalised float32 row per text, in input order.

        Args:
            texts: the texts; anything past 256 word pieces is ignored, as in
                sentence-transformers.
            progress: called after each batch with (texts done, texts in total). Without it,
                runs longer than a few seconds log their progress every 10 s.
        """
        total = len(texts)
        vectors = np.zeros((total, self.dimension), dtype=np.float32)
        if total == 0:
            return vectors
        session, tokenizer = self._load()

        encodings = tokenizer.encode_batch([str(text) for text in texts])
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=total)
        order = np.argsort(lengths, kind="stable")

        reporter = progress or ProgressLog(total, LOGGER)
        done = 0
        for start in range(0, total, self.batch_size):
            rows = order[start : start + self.batch_size]
            input_ids, attention_mask = _padded_batch([encodings[i] for i in rows])
            (token_embeddings,) = session.run(
                ["token_embeddings"],
                {
                    "input_ids": input_ids,
                    "attention_mask": attention_mask,
                    "token_type_ids": np.zeros_like(input_ids),
                },
            )
            vectors[rows] = mean_pool_and_normalise(token_embeddings, attention_mask)
            done += len(rows)
            reporter(done, total)
        return vectors


def _padded_batch(encodings) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask (int64, batch × longest) of a batch, padded with 0."""
    longest = max(len(e.ids) for e in encodings)
    input_ids = np.zeros((len(encodings), longest), dtype=np.int64)
    attention_mask = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        length = len(encoding.ids)
        input_ids[row, :length] = encoding.ids
        attention_mask[row, :length] = 1
    return input_ids, attention_mask


def mean_pool_and_normalise(
    token_embeddings: np.ndarray, attention_mask: np.ndarray
) -> np.ndarray:
    """Mean of the unmasked token embeddings, scaled to unit length, as sentence-transformers.

    sentence-transformers divides by the token count clamped at 1e-9 and normalises with
    `torch.nn.functional.normalize` (the norm clamped at 1e-12); the same clamps apply here.
    """
    mask = attention_mask.astype(np.float32)[:, :, None]
    summed = (token_embeddings * mask).sum(axis=1)
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return (pooled / norms).astype(np.float32, copy=False)
