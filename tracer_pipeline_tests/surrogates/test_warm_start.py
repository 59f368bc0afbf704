"""Warm-started refits: they begin at the previous day's solution, grow with the label space, and
the gate certifies their policies like any other candidates."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.gate.calibration import GateConfig, run_gate
from tracer_pipeline.gate.statistics import clopper_pearson_lower
from tracer_pipeline.surrogates.candidates import (
    CandidateSpec,
    default_candidate_specs,
    fit_candidates,
    load_candidates,
    save_candidates,
)
from tracer_pipeline_tests.surrogates.test_candidates import blobs

WARM_KINDS = ("logistic", "sgd", "mlp")
SMALL_MLP = {"hidden": 32, "epochs": 8}


def small_specs(**warm_budget) -> list[CandidateSpec]:
    """Logistic, SGD and a small MLP, with optional warm budgets (`warm_max_iter`, ...)."""
    return [
        CandidateSpec("sgd_softmax", "sgd", {"epochs": 6, **warm_budget}),
        CandidateSpec("logistic_C1", "logistic", {"C": 1.0, **warm_budget}),
        CandidateSpec("mlp_32", "mlp", {**SMALL_MLP, **warm_budget}),
    ]


def two_days(n_labels_first: int = 6, n_labels_second: int = 6):
    """Day one's traces and day two's (a different sample, possibly with more labels)."""
    first = blobs(40, n_labels=n_labels_first, seed=10)
    second = blobs(40, n_labels=n_labels_second, seed=11)
    X = np.concatenate([first[0], second[0]])
    y = np.concatenate([first[1], second[1]])
    return first, (X, y)


def test_a_warm_start_with_no_iterations_is_the_previous_days_model():
    (X_day1, y_day1), (X_day2, y_day2) = two_days()
    previous = fit_candidates(X_day1, y_day1, small_specs())
    # A budget of zero iterations returns the start itself: the previous solution, rewritten
    # for day two's standardisation, must predict exactly what the previous model predicts.
    frozen = fit_candidates(X_day2, y_day2, small_specs(warm_max_iter=0, warm_epochs=0),
                            warm_start_from=previous)
    X_new, _ = blobs(20, seed=12)
    for before, after in zip(previous, frozen, strict=True):
        assert after.warm_started, after.spec.name
        assert after.predict_proba(X_new) == pytest.approx(before.predict_proba(X_new),
                                                           abs=2e-4), after.spec.name


def test_warm_started_candidates_learn_the_new_day_and_say_so(tmp_path):
    (X_day1, y_day1), (X_day2, y_day2) = two_days()
    previous = fit_candidates(X_day1, y_day1, default_candidate_specs())
    warm = fit_candidates(X_day2, y_day2, default_candidate_specs(), warm_start_from=previous)
    cold = fit_candidates(X_day2, y_day2, default_candidate_specs())
    X_test, y_test = blobs(30, seed=13)
    for candidate in warm:
        assert candidate.warm_started == (candidate.spec.kind in WARM_KINDS), candidate.spec.name
        assert np.mean(candidate.predict(X_test) == y_test) > 0.95, candidate.spec.name
    assert not any(candidate.warm_started for candidate in cold)
    # A warm start with its own budget differs from the cold fit: it really started elsewhere.
    by_name = {candidate.spec.name: candidate for candidate in cold}
    logistic = next(c for c in warm if c.spec.kind == "logistic")
    cold_weights = by_name[logistic.spec.name].arrays["weights"]
    assert not np.allclose(logistic.arrays["weights"], cold_weights)

    save_candidates(warm, tmp_path / "candidates")
    loaded = load_candidates(tmp_path / "candidates")
    assert [c.warm_started for c in loaded] == [c.warm_started for c in warm]


def test_labels_new_on_the_second_day_get_fresh_columns_and_are_learned():
    (X_day1, y_day1), (X_day2, y_day2) = two_days(n_labels_first=4, n_labels_second=6)
    previous = fit_candidates(X_day1, y_day1, small_specs())
    assert all(candidate.label_space.size == 4 for candidate in previous)
    warm = fit_candidates(X_day2, y_day2, small_specs(), warm_start_from=previous)
    X_test, y_test = blobs(30, n_labels=6, seed=14)
    new_labels = np.isin(y_test, ["label_4", "label_5"])
    for candidate in warm:
        assert candidate.warm_started and candidate.label_space.size == 6, candidate.spec.name
        probabilities = candidate.predict_proba(X_test)
        assert probabilities.shape == (y_test.size, 6)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        predicted = candidate.predict(X_test)
        assert np.mean(predicted[new_labels] == y_test[new_labels]) > 0.9, candidate.spec.name
        assert np.mean(predicted == y_test) >= 0.9, candidate.spec.name


def test_a_label_gone_from_the_window_gets_no_output_and_a_changed_shape_fits_cold():
    X_day1, y_day1 = blobs(40, n_labels=6, seed=15)
    previous = fit_candidates(X_day1, y_day1, small_specs())
    keep = y_day1 != "label_5"
    X_day2, y_day2 = blobs(40, n_labels=5, seed=16)
    warm = fit_candidates(X_day2, y_day2, small_specs(), warm_start_from=previous,
                          label_space=sorted(set(y_day1[keep]) | {"label_5"}))
    for candidate in warm:
        assert candidate.warm_started
        assert candidate.predict_proba(X_day1)[:, 5].max() == pytest.approx(0.0, abs=1e-6)

    wider = [CandidateSpec("mlp_32", "mlp", {**SMALL_MLP, "hidden": 48})]
    (refit,) = fit_candidates(X_day2, y_day2, wider, warm_start_from=previous)
    assert not refit.warm_started


def test_the_gate_certifies_a_warm_started_policy_that_holds_on_fresh_traces():
    alpha, delta = 0.9, 0.05
    rng = np.random.default_rng(17)

    def noisy(n: int, seed: int):
        X, y = blobs(n, spread=0.9, seed=seed)
        flip = rng.random(y.size) < 0.08
        y = np.where(flip, rng.choice(np.unique(y), y.size), y)
        return X, y

    X_day1, y_day1 = noisy(150, 20)
    previous = fit_candidates(X_day1, y_day1, small_specs())
    X_train, y_train = noisy(200, 21)
    X_train = np.concatenate([X_day1, X_train])
    y_train = np.concatenate([y_day1, y_train])
    warm = fit_candidates(X_train, y_train, small_specs(), warm_start_from=previous)
    assert all(candidate.warm_started for candidate in warm)

    outcome = run_gate(warm, X_train, y_train, *noisy(100, 22), *noisy(250, 23),
                       GateConfig(alpha=alpha, delta=delta))
    assert outcome.decision == "deploy", outcome.reason
    assert outcome.agreement_lower_bound >= alpha
    X_fresh, y_fresh = noisy(400, 24)
    decisions = outcome.policy.decide(X_fresh)
    handled = np.asarray(decisions.handled, dtype=bool)
    agrees = np.asarray(decisions.labels).astype(str) == y_fresh
    assert handled.mean() > 0.3
    # Realised agreement on fresh traces is consistent with the certificate.
    assert clopper_pearson_lower(int(agrees[handled].sum()), int(handled.sum()), 0.001) < 1.0
    assert agrees[handled].mean() >= alpha - 0.03
