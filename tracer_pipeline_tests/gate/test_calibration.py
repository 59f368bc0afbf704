"""The gate on synthetic traces: it deploys what it can certify, and what it certifies holds on
fresh traces; it refuses (with a reason) what it cannot; the per-label floor defers bad labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracer_pipeline.gate.calibration import GateConfig, atypical_share, run_gate
from tracer_pipeline.gate.policy import DEFER_FAR_FROM_TRAINING, DEFER_LABEL_NOT_CERTIFIED
from tracer_pipeline.surrogates.arrays import AVERAGE, average_arrays
from tracer_pipeline.surrogates.candidates import CandidateSpec, FittedCandidate
from tracer_pipeline_tests.gate.synthetic import CENTRES, DIMENSION, splits


def gate(parts: dict, **config):
    return run_gate(parts["candidates"], *parts["train"], *parts["validation"],
                    *parts["calibration"], GateConfig(**config), embedding_model="synthetic")


@pytest.fixture(scope="module")
def clean():
    return splits(seed=0)


def realised(outcome, parts) -> tuple[float, float]:
    X_fresh, y_fresh = parts["fresh"]
    decisions = outcome.policy.decide(X_fresh)
    handled = decisions.handled
    return float(handled.mean()), float((decisions.labels[handled] == y_fresh[handled]).mean())


@pytest.mark.parametrize("alpha", [0.95, 0.97])
def test_deploys_on_separable_traces_and_holds_on_fresh_ones(clean, alpha):
    outcome = gate(clean, alpha=alpha)
    assert outcome.decision == "deploy" and outcome.reason is None
    assert outcome.agreement_lower_bound >= alpha
    assert outcome.agreement_calibration >= outcome.agreement_lower_bound
    assert 0.3 < outcome.coverage_calibration < 1.0
    coverage, agreement = realised(outcome, clean)
    assert agreement >= alpha
    assert coverage == pytest.approx(outcome.coverage_calibration, abs=0.05)
    # The deployed surrogate alone is not good enough to answer everything at this alpha.
    X_fresh, y_fresh = clean["fresh"]
    assert np.mean(outcome.policy.decide(X_fresh).labels == y_fresh) < alpha


def test_outcome_records_frontier_candidates_and_is_json_able(clean):
    outcome = gate(clean, alpha=0.95)
    assert [point["alpha"] for point in outcome.frontier] == [0.80, 0.85, 0.90, 0.95, 0.99]
    coverages = [point["coverage_certified"] for point in outcome.frontier]
    assert coverages == sorted(coverages, reverse=True)
    assert sum(candidate["chosen"] for candidate in outcome.candidates) == 1
    assert outcome.threshold is not None and outcome.distance_threshold is not None
    json.dumps(outcome.to_dict())


def test_refuses_when_the_teacher_answers_at_random():
    parts = splits(seed=1, noisy_label="all", noise=1.0)
    outcome = gate(parts, alpha=0.9)
    assert outcome.decision == "refuse" and outcome.policy is None
    assert outcome.coverage_calibration == 0.0 and outcome.agreement_lower_bound is None
    assert "no rule could be certified at alpha=0.9" in outcome.reason
    assert all(point["refused"] for point in outcome.frontier)


def test_refuses_when_calibration_is_too_small_to_certify(clean):
    parts = dict(clean)
    X_cal, y_cal = clean["calibration"]
    parts["calibration"] = (X_cal[:40], y_cal[:40])
    outcome = gate(parts, alpha=0.95)
    assert outcome.decision == "refuse"
    assert "needs at least 59 handled traces" in outcome.reason


def test_per_label_floor_defers_a_label_whose_teacher_is_noisy():
    parts = splits(seed=2, n_calibration=4000, noisy_label="label_4", noise=0.5)
    without_floor = gate(parts, alpha=0.9)
    with_floor = gate(parts, alpha=0.9, per_label_floor=True)
    assert with_floor.decision == "deploy" and with_floor.threshold is None
    certified = with_floor.details["label_score_thresholds"]
    assert "label_4" not in certified and len(certified) >= 3
    explained = with_floor.policy.explain(parts["fresh"][0])
    assert not explained.loc[explained["predicted"] == "label_4", "handled"].any()
    assert (explained["defer_reason"] == DEFER_LABEL_NOT_CERTIFIED).any()
    # Without the floor the noisy label is partly handled, diluted by the clean ones.
    handled_label_4 = without_floor.policy.explain(parts["fresh"][0])
    assert handled_label_4.loc[handled_label_4["predicted"] == "label_4", "handled"].any()


def test_inputs_unlike_training_are_deferred_as_far_from_training(clean):
    outcome = gate(clean, alpha=0.9)
    # Random directions orthogonal to every cluster centre: unlike any training trace.
    centres = np.linalg.qr(CENTRES.T)[0]
    rng = np.random.default_rng(5)
    strangers = rng.standard_normal((500, DIMENSION))
    strangers = (strangers - strangers @ centres @ centres.T).astype(np.float32)
    explained = outcome.policy.explain(strangers)
    assert explained["handled"].mean() < 0.05
    assert (explained["defer_reason"] == DEFER_FAR_FROM_TRAINING).mean() > 0.9


def test_equally_good_candidates_go_to_the_cheaper_to_route_then_the_name_never_the_time(clean):
    sgd = next(c for c in clean["candidates"] if c.spec.name == "sgd_softmax")
    n_labels = sgd.label_space.size

    def twin(name: str, fit_seconds: float, averaged: bool = False) -> FittedCandidate:
        """The same probabilities as `sgd`: alone, or as the average of two copies of it."""
        if averaged:
            arrays = average_arrays([(sgd.kind, sgd.arrays)] * 2, n_labels)
            return FittedCandidate(CandidateSpec(name, "average", {}), sgd.label_space,
                                   fit_seconds, AVERAGE, arrays)
        return FittedCandidate(CandidateSpec(name, "sgd", {}), sgd.label_space, fit_seconds,
                               sgd.kind, sgd.arrays)

    def chosen(candidates: list[FittedCandidate]) -> str:
        parts = dict(clean, candidates=candidates)
        return gate(parts, alpha=0.9, prototype_weights=(0.0,)).candidate

    # The average costs twice the multiply-adds, so it loses even when it was faster to fit.
    assert chosen([twin("a_average", 0.0, averaged=True), twin("b_single", 9.0)]) == "b_single"
    # Equal cost: the name decides, whatever the order and the measured fit times.
    assert chosen([twin("b_copy", 0.0), twin("a_copy", 9.0)]) == "a_copy"
    assert chosen([twin("a_copy", 9.0), twin("b_copy", 0.0)]) == "a_copy"


def test_atypical_share_schedule():
    config = GateConfig()
    assert atypical_share(0.90, config) == pytest.approx(0.02)
    assert atypical_share(0.80, config) < atypical_share(0.95, config) <= 0.06
    assert atypical_share(0.999, config) == pytest.approx(0.06)


def test_rejects_mismatched_inputs(clean):
    X_val, y_val = clean["validation"]
    parts = dict(clean)
    parts["validation"] = (X_val, y_val[:-1])
    with pytest.raises(ValueError):
        gate(parts)
    with pytest.raises(ValueError):
        GateConfig(alpha=1.0)
