"""RoutingPolicy: a saved and loaded policy routes exactly like the original, without pickle."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tracer_pipeline.gate.calibration import GateConfig, run_gate
from tracer_pipeline.gate.features import acceptor_features, prototype_vote, unit_rows
from tracer_pipeline.gate.policy import POLICY_ARRAYS, POLICY_JSON, RoutingPolicy
from tracer_pipeline_tests.gate.synthetic import splits


@pytest.fixture(scope="module")
def policy() -> RoutingPolicy:
    parts = splits(seed=3)
    outcome = run_gate(parts["candidates"], *parts["train"], *parts["validation"],
                       *parts["calibration"], GateConfig(alpha=0.9), embedding_model="synthetic")
    assert outcome.policy is not None
    return outcome.policy


def test_round_trip_routes_identically(policy, tmp_path):
    policy.save(tmp_path / "policy")
    loaded = RoutingPolicy.load(tmp_path / "policy")
    X = splits(seed=4)["fresh"][0]
    original, copy = policy.decide(X), loaded.decide(X)
    assert np.array_equal(original.labels, copy.labels)
    assert np.array_equal(original.handled, copy.handled)
    assert np.allclose(original.score, copy.score)
    assert 0.0 < original.handled.mean() < 1.0
    assert loaded.alpha == policy.alpha and loaded.embedding_model == "synthetic"
    assert loaded.atypicality_threshold == pytest.approx(policy.atypicality_threshold)
    explained = loaded.explain(X[:50])
    for column in ("predicted", "handled", "score", "defer_reason"):
        assert column in explained.columns
    assert explained.loc[explained["handled"], "defer_reason"].isna().all()
    assert explained.loc[~explained["handled"], "defer_reason"].notna().all()


def test_saved_files_hold_no_pickled_objects_and_versions_are_checked(policy, tmp_path):
    policy.save(tmp_path / "policy")
    with np.load(tmp_path / "policy" / POLICY_ARRAYS, allow_pickle=False) as stored:
        assert all(stored[key].dtype != object for key in stored.files)
    description = json.loads((tmp_path / "policy" / POLICY_JSON).read_text())
    description["format_version"] = 1
    (tmp_path / "policy" / POLICY_JSON).write_text(json.dumps(description))
    with pytest.raises(ValueError, match="unsupported policy format"):
        RoutingPolicy.load(tmp_path / "policy")


def test_single_rows_and_wrong_dimensions(policy):
    X = splits(seed=5)["fresh"][0]
    assert policy.decide(X[0]).labels.shape == (1,)
    with pytest.raises(ValueError):
        policy.decide(X[:, :10])


def test_prototype_weight_mixes_the_prototype_vote_and_survives_the_round_trip(policy, tmp_path):
    X = splits(seed=6)["fresh"][0]
    probabilities = np.full((X.shape[0], len(policy.label_space)), 1.0 / len(policy.label_space),
                            dtype=np.float32)
    probabilities[:, 0] += 0.01
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    vote = prototype_vote(policy.reference.label_similarity(unit_rows(X)))
    raw = acceptor_features(probabilities, X, policy.reference, 0.0)
    mixed = acceptor_features(probabilities, X, policy.reference, 0.6)
    # Nearly uniform surrogate: alone it always says label 0; mixed, the neighbours decide.
    assert (raw["predicted"] == 0).all()
    assert np.array_equal(mixed["predicted"], np.argmax(0.4 * probabilities + 0.6 * vote, axis=1))
    assert (mixed["predicted"] != 0).any()
    assert np.allclose(mixed["knn_agreement"], vote[np.arange(X.shape[0]), mixed["predicted"]])

    smoothed = dataclasses.replace(policy, prototype_weight=0.6)
    smoothed.save(tmp_path / "smoothed")
    loaded = RoutingPolicy.load(tmp_path / "smoothed")
    assert loaded.prototype_weight == pytest.approx(0.6)
    assert np.array_equal(loaded.decide(X).labels, smoothed.decide(X).labels)
    assert not np.array_equal(smoothed.decide(X).labels, policy.decide(X).labels)


def test_a_format_2_policy_loads_without_the_prototype_mix(policy, tmp_path):
    unsmoothed = dataclasses.replace(policy, prototype_weight=0.0)
    unsmoothed.save(tmp_path / "policy")
    description = json.loads((tmp_path / "policy" / POLICY_JSON).read_text())
    description["format_version"] = 2
    del description["prototype_weight"]
    (tmp_path / "policy" / POLICY_JSON).write_text(json.dumps(description))
    loaded = RoutingPolicy.load(tmp_path / "policy")
    assert loaded.prototype_weight == 0.0
    X = splits(seed=7)["fresh"][0]
    assert np.array_equal(loaded.decide(X).handled, unsmoothed.decide(X).handled)
