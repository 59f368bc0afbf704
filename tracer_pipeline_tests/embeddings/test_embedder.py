"""Which embedder the pipeline gets: int8 ONNX by default, the plain one on request."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.embeddings.embedder import (
    MINILM_NAME,
    PackagedMiniLMEmbedder,
    load_embedder,
)
from tracer_pipeline.embeddings.onnx_embedder import OnnxInt8MiniLMEmbedder
from tracer_pipeline.resources import EmbedderResource, default_resources


@pytest.fixture
def no_embedder_settings(monkeypatch):
    for variable in ("TRACER_EMBEDDER", "TRACER_EMBEDDER_THREADS", "TRACER_EMBEDDER_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_default_is_the_int8_onnx_embedder(no_embedder_settings, tmp_path):
    no_embedder_settings.setenv("TRACER_EMBEDDER_CACHE", str(tmp_path))
    embedder = load_embedder()
    assert isinstance(embedder, OnnxInt8MiniLMEmbedder)
    assert embedder.threads == 1
    assert embedder.cache_dir == tmp_path

    resource = EmbedderResource()
    assert resource.model == "onnx-int8"
    assert resource.threads == 1
    assert isinstance(default_resources()["embedder"].get(), OnnxInt8MiniLMEmbedder)


def test_fallback_setting_selects_the_plain_embedder(no_embedder_settings):
    no_embedder_settings.setenv("TRACER_EMBEDDER", "minilm")
    no_embedder_settings.setenv("TRACER_EMBEDDER_THREADS", "2")
    assert isinstance(load_embedder(), PackagedMiniLMEmbedder)

    resource = default_resources()["embedder"]
    assert (resource.model, resource.threads) == ("minilm", 2)
    plain = resource.get()
    assert isinstance(plain, PackagedMiniLMEmbedder)
    assert plain.name == MINILM_NAME
    assert plain.name != load_embedder("onnx-int8").name


def test_resource_config_overrides_the_environment(no_embedder_settings, onnx_cache_dir):
    no_embedder_settings.setenv("TRACER_EMBEDDER", "minilm")
    resource = EmbedderResource(model="onnx-int8", cache_dir=str(onnx_cache_dir), threads=1)
    embedder = resource.get()
    assert isinstance(embedder, OnnxInt8MiniLMEmbedder)
    assert embedder.cache_dir == onnx_cache_dir


def test_unknown_kind_and_bad_threads_are_refused(no_embedder_settings):
    with pytest.raises(ValueError, match="unknown embedder 'bert-large'"):
        load_embedder("bert-large")
    no_embedder_settings.setenv("TRACER_EMBEDDER_THREADS", "0")
    with pytest.raises(ValueError, match="TRACER_EMBEDDER_THREADS"):
        load_embedder("onnx-int8")


def test_plain_embedder_reports_progress_and_handles_empty_input(fp32_embedder):
    assert fp32_embedder.embed([]).shape == (0, 384)
    reported = []
    vectors = fp32_embedder.embed(
        ["open an account", "close my account"], progress=lambda *p: reported.append(p)
    )
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert reported == [(2, 2)]
