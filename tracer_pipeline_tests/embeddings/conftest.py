"""One real int8 ONNX build per test session, in a temporary cache, and the fp32 reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer_pipeline.embeddings.embedder import PackagedMiniLMEmbedder
from tracer_pipeline.embeddings.onnx_embedder import OnnxInt8MiniLMEmbedder
from tracer_pipeline.embeddings.onnx_export import ensure_int8_model


@pytest.fixture(scope="session")
def onnx_cache_dir(tmp_path_factory) -> Path:
    """A cache folder holding one freshly exported and quantized model (about 20 s)."""
    cache_dir = tmp_path_factory.mktemp("embedder-cache")
    ensure_int8_model(cache_dir)
    return cache_dir


@pytest.fixture(scope="session")
def built_model_folder(onnx_cache_dir: Path) -> Path:
    return ensure_int8_model(onnx_cache_dir)


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache_dir: Path) -> OnnxInt8MiniLMEmbedder:
    return OnnxInt8MiniLMEmbedder(cache_dir=onnx_cache_dir, threads=1)


@pytest.fixture(scope="session")
def fp32_embedder() -> PackagedMiniLMEmbedder:
    return PackagedMiniLMEmbedder(threads=1)
