"""The int8 ONNX embedder computes what sentence-transformers computes, up to quantization."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from tracer_pipeline.embeddings.embedder import MINILM_MAX_TOKENS
from tracer_pipeline.embeddings.onnx_embedder import (
    ONNX_INT8_NAME,
    OnnxInt8MiniLMEmbedder,
    mean_pool_and_normalise,
)
from tracer_pipeline.embeddings.onnx_export import packaged_model_folder

TEXTS = [
    "I lost my card yesterday, can you block it?",
    "How do I top up my account with a bank transfer?",
    "why was I charged a fee for withdrawing cash",
    "my card payment was declined at the supermarket",
    "Can I change my PIN at an ATM?",
    "the exchange rate you applied to my transfer looks wrong",
    "refund",
    "What documents do you need to verify my identity? I uploaded a passport photo twice.",
]


def test_matches_the_fp32_sentence_transformers_vectors(onnx_embedder, fp32_embedder):
    fast = onnx_embedder.embed(TEXTS)
    reference = fp32_embedder.embed(TEXTS)
    cosines = (fast * reference).sum(axis=1)
    assert cosines.mean() >= 0.99, cosines
    assert cosines.min() >= 0.97, cosines


def test_rows_are_unit_float32_vectors_in_input_order(onnx_embedder, fp32_embedder):
    # Batches of two force several batches, formed after sorting by length.
    small_batches = OnnxInt8MiniLMEmbedder(onnx_embedder.cache_dir, threads=1, batch_size=2)
    fast = small_batches.embed(TEXTS)
    assert fast.shape == (len(TEXTS), 384)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)

    similarity = fast @ fp32_embedder.embed(TEXTS).T
    assert list(similarity.argmax(axis=1)) == list(range(len(TEXTS)))


def test_empty_input_gives_an_empty_matrix(onnx_embedder):
    vectors = onnx_embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_text_past_256_tokens_is_cut_like_sentence_transformers(onnx_embedder, fp32_embedder):
    long_text = "My card was blocked after I travelled abroad and tried to pay for a hotel. " * 40
    untruncated = Tokenizer.from_file(str(packaged_model_folder() / "tokenizer.json"))
    untruncated.no_truncation()
    untruncated.no_padding()
    assert len(untruncated.encode(long_text).ids) > 2 * MINILM_MAX_TOKENS

    fast = onnx_embedder.embed([long_text, long_text + " Also, where is my refund?"])
    # Everything past the cut is ignored, so the extra sentence changes nothing.
    np.testing.assert_allclose(fast[0], fast[1], atol=1e-6)
    reference = fp32_embedder.embed([long_text])[0]
    assert float(fast[0] @ reference) >= 0.99


def test_progress_is_reported_up_to_the_total(onnx_cache_dir):
    embedder = OnnxInt8MiniLMEmbedder(onnx_cache_dir, threads=1, batch_size=3)
    reported = []
    embedder.embed(TEXTS, progress=lambda done, total: reported.append((done, total)))
    assert reported == [(3, 8), (6, 8), (8, 8)]


def test_the_name_says_int8_onnx(onnx_embedder):
    expected = "sentence-transformers/all-MiniLM-L6-v2/onnx-int8-v2"
    assert onnx_embedder.name == ONNX_INT8_NAME == expected


def test_mean_pooling_ignores_padding_and_normalises():
    token_embeddings = np.array(
        [
            [[3.0, 0.0], [1.0, 0.0], [100.0, 100.0]],  # the last token is padding
            [[0.0, 2.0], [0.0, 4.0], [0.0, 6.0]],
        ],
        dtype=np.float32,
    )
    attention_mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.int64)
    pooled = mean_pool_and_normalise(token_embeddings, attention_mask)
    np.testing.assert_allclose(pooled, [[1.0, 0.0], [0.0, 1.0]], atol=1e-7)
    assert pooled.dtype == np.float32
