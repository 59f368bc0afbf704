"""The int8 model is built once per cache, keyed by the source, and rebuilt when broken.

The real export runs once per session (`built_model_folder`); the tests of the cache logic
replace export and quantization by a copy of that real model, and count the builds.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from tracer_pipeline.embeddings import onnx_export
from tracer_pipeline.embeddings.onnx_export import (
    MANIFEST_FILE,
    MODEL_FILE,
    cache_folder_name,
    ensure_int8_model,
    feed_forward_output_matmuls,
    is_complete,
    packaged_model_folder,
    source_model_sha256,
)


@pytest.fixture
def counted_builds(monkeypatch, built_model_folder: Path) -> list[Path]:
    """Make each build copy the session's real model; return the list of models built."""
    builds: list[Path] = []

    def export(source: Path, output: Path) -> None:
        time.sleep(0.2)  # long enough for a second caller to reach the lock meanwhile
        output.write_bytes(b"fp32 stand-in")

    def quantize(float_model: Path, output: Path) -> None:
        shutil.copyfile(built_model_folder / MODEL_FILE, output)
        builds.append(output)

    monkeypatch.setattr(onnx_export, "export_float_model", export)
    monkeypatch.setattr(onnx_export, "quantize_int8", quantize)
    return builds


def build_id(folder: Path) -> str:
    return json.loads((folder / MANIFEST_FILE).read_text())["build_id"]


def test_real_build_is_complete_and_reused(onnx_cache_dir: Path, built_model_folder: Path):
    source_sha256 = source_model_sha256(packaged_model_folder())
    assert built_model_folder.name == cache_folder_name(source_sha256)
    assert is_complete(built_model_folder, source_sha256)
    model = built_model_folder / MODEL_FILE
    before = (build_id(built_model_folder), model.stat().st_mtime_ns, model.stat().st_ino)

    assert ensure_int8_model(onnx_cache_dir) == built_model_folder
    after = (build_id(built_model_folder), model.stat().st_mtime_ns, model.stat().st_ino)
    assert after == before
    assert [p.name for p in onnx_cache_dir.iterdir() if not p.name.startswith(".")] == [
        built_model_folder.name
    ]


def test_real_build_keeps_the_first_half_of_feed_forward_outputs_fp32_and_quantizes_the_rest(
    built_model_folder: Path,
):
    import onnx

    graph = onnx.load(str(built_model_folder / MODEL_FILE)).graph
    weights = {weight.name for weight in graph.initializer}
    float_matmuls = sorted(node.name for node in graph.node if node.op_type == "MatMul"
                           and any(name in weights for name in node.input))
    integer_matmuls = [node for node in graph.node if node.op_type == "MatMulInteger"]
    assert float_matmuls == [f"/bert/encoder/layer.{layer}/output/dense/MatMul"
                             for layer in range(3)]
    # Per layer: query, key, value, attention output and the feed-forward input projection;
    # in the last three layers the feed-forward output projection too.
    assert len(integer_matmuls) == 6 * 5 + 3


def test_a_graph_without_a_narrowing_matmul_is_refused(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("weight", TensorProto.FLOAT, [4, 8], [0.0] * 32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"], name="widen")], "widening",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [weight],
    )
    path = tmp_path / "widening.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="no MatMul narrows its input"):
        feed_forward_output_matmuls(path)


def test_second_call_does_not_build_again(tmp_path: Path, counted_builds):
    first = ensure_int8_model(tmp_path)
    second = ensure_int8_model(tmp_path)
    assert first == second
    assert len(counted_builds) == 1


@pytest.mark.parametrize("damage", ["truncated model", "missing manifest", "garbled manifest"])
def test_broken_cache_folder_is_rebuilt(tmp_path: Path, counted_builds, damage: str):
    folder = ensure_int8_model(tmp_path)
    old_build = build_id(folder)
    if damage == "truncated model":
        data = (folder / MODEL_FILE).read_bytes()
        (folder / MODEL_FILE).write_bytes(data[: len(data) // 2])
    elif damage == "missing manifest":
        (folder / MANIFEST_FILE).unlink()
    else:
        (folder / MANIFEST_FILE).write_text("{not json")

    rebuilt = ensure_int8_model(tmp_path)
    assert rebuilt == folder
    assert len(counted_builds) == 2
    assert build_id(rebuilt) != old_build
    assert is_complete(rebuilt, source_model_sha256(packaged_model_folder()))


def test_leftover_partial_build_is_ignored(tmp_path: Path, counted_builds):
    # A build that crashed before its rename leaves only a `.building-*` folder behind.
    source_sha256 = source_model_sha256(packaged_model_folder())
    leftover = tmp_path / f"{cache_folder_name(source_sha256)}.building-dead"
    leftover.mkdir()
    (leftover / MODEL_FILE).write_bytes(b"half a model")

    folder = ensure_int8_model(tmp_path)
    assert folder != leftover
    assert len(counted_builds) == 1
    assert is_complete(folder, source_sha256)


def test_two_concurrent_callers_build_once(tmp_path: Path, counted_builds):
    folders = []
    callers = [
        threading.Thread(target=lambda: folders.append(ensure_int8_model(tmp_path)))
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(folders) == 2 and folders[0] == folders[1]
    assert len(counted_builds) == 1


def test_other_weights_get_another_folder(tmp_path: Path):
    source = packaged_model_folder()
    changed = tmp_path / "changed-model"
    changed.mkdir()
    (changed / "model.safetensors").symlink_to(source / "model.safetensors")
    config = json.loads((source / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (changed / "config.json").write_text(json.dumps(config))
    assert source_model_sha256(changed) != source_model_sha256(source)
    assert cache_folder_name(source_model_sha256(changed)) != cache_folder_name(
        source_model_sha256(source)
    )
