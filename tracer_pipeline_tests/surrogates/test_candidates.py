"""Candidate zoo: every kind learns separable data, survives a save/load round trip, the
averaging candidate is the mean of its members, and each kind's routing cost is counted."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.surrogates.arrays import multiply_adds_per_row
from tracer_pipeline.surrogates.candidates import (
    CandidateSpec,
    default_candidate_specs,
    fit_candidates,
    load_candidates,
    save_candidates,
)


def blobs(n_per_label: int, n_labels: int = 6, dimension: int = 24, spread: float = 0.35,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((n_labels, dimension))
    labels = np.repeat(np.arange(n_labels), n_per_label)
    X = centres[labels] + spread * rng.standard_normal((labels.size, dimension))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.array([f"label_{code}" for code in labels])


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(60)
    return fit_candidates(X, y, default_candidate_specs())


def test_every_default_candidate_learns_separable_data(fitted):
    X_test, y_test = blobs(40, seed=1)
    names = [candidate.spec.name for candidate in fitted]
    assert names == [spec.name for spec in default_candidate_specs()]
    for candidate in fitted:
        probabilities = candidate.predict_proba(X_test)
        assert probabilities.shape == (y_test.size, 6)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert np.mean(candidate.predict(X_test) == y_test) > 0.95, candidate.spec.name


def test_average_candidate_is_the_mean_of_its_members(fitted):
    X_test, _ = blobs(10, seed=2)
    by_name = {candidate.spec.name: candidate for candidate in fitted}
    average = by_name["average_sgd_logistic_mlp"]
    members = [by_name[name] for name in average.spec.params["members"]]
    expected = np.mean([member.predict_proba(X_test) for member in members], axis=0)
    assert average.predict_proba(X_test) == pytest.approx(expected, abs=1e-6)


def test_save_and_load_round_trip(fitted, tmp_path):
    save_candidates(fitted, tmp_path / "candidates")
    loaded = load_candidates(tmp_path / "candidates")
    X_test, _ = blobs(10, seed=3)
    assert [c.spec for c in loaded] == [c.spec for c in fitted]
    for original, copy in zip(fitted, loaded):
        assert np.array_equal(original.label_space, copy.label_space)
        assert np.array_equal(original.predict_proba(X_test), copy.predict_proba(X_test))


def test_label_space_wider_than_training_labels_gets_zero_probability():
    X, y = blobs(30, n_labels=3)
    specs = [CandidateSpec("sgd", "sgd"), CandidateSpec("knn", "knn", {"k": 5})]
    candidates = fit_candidates(X, y, specs, label_space=["label_0", "label_1", "label_2", "z"])
    for candidate in candidates:
        assert candidate.predict_proba(X)[:, 3].max() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        fit_candidates(X, y, specs, label_space=["label_0", "label_1"])


def test_time_budget_stops_starting_new_candidates():
    X, y = blobs(30)
    specs = default_candidate_specs()
    assert [c.spec.name for c in fit_candidates(X, y, specs, time_budget_s=0.0)] == [
        specs[0].name
    ]


def test_invalid_inputs_raise():
    X, y = blobs(10)
    with pytest.raises(ValueError):
        fit_candidates(X, np.full(y.size, "only"), default_candidate_specs())
    with pytest.raises(ValueError):
        fit_candidates(X, y, [CandidateSpec("a", "sgd"), CandidateSpec("a", "knn")])
    with pytest.raises(ValueError):
        fit_candidates(X, y, [CandidateSpec("t", "unknown_kind")])


def test_routing_cost_counts_each_kinds_multiply_adds(fitted):
    by_name = {candidate.spec.name: candidate for candidate in fitted}
    n_labels, dimension, hidden = 6, 24, 256
    costs = {name: multiply_adds_per_row(candidate.kind, candidate.arrays)
             for name, candidate in by_name.items()}
    assert costs["logistic_C0.5"] == costs["sgd_softmax"] == dimension * n_labels
    assert costs["mlp_256"] == dimension * hidden + hidden * n_labels
    assert costs["knn_10"] == 6 * 60 * dimension  # one similarity per training trace
    assert costs["average_sgd_logistic_mlp"] == (costs["sgd_softmax"] + costs["logistic_C0.5"]
                                                 + costs["mlp_256"])
    with pytest.raises(ValueError, match="unknown surrogate kind"):
        multiply_adds_per_row("oracle", {})
