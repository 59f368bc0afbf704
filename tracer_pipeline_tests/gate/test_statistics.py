"""The gate's binomial statistics: bounds against known values, the p-value/bound equivalence,
and the family-wise error of fixed-sequence testing, checked by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tracer_pipeline.gate.statistics import (
    agreement_p_value,
    clopper_pearson_lower,
    clopper_pearson_lower_many,
    expected_p_value,
    fixed_sequence_from,
    fixed_sequence_select,
    minimum_trials_to_certify,
)


def test_clopper_pearson_known_values():
    # All agree: the bound solves p**n = delta.
    assert clopper_pearson_lower(59, 59, 0.05) == pytest.approx(0.05 ** (1 / 59), rel=1e-9)
    assert clopper_pearson_lower(59, 59, 0.05) == pytest.approx(0.950492, abs=1e-6)
    # 95 of 100 at 95% confidence: the exact one-sided bound is 0.8977.
    assert clopper_pearson_lower(95, 100, 0.05) == pytest.approx(0.897747, abs=1e-6)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_lower(0, 0, 0.05) == 0.0


@pytest.mark.parametrize("successes,trials", [(1, 1), (7, 20), (180, 200), (999, 1000)])
def test_clopper_pearson_bound_leaves_exactly_delta_above(successes, trials):
    bound = clopper_pearson_lower(successes, trials, 0.05)
    # At the bound, seeing this many successes or more has probability exactly delta.
    assert stats.binom.sf(successes - 1, trials, bound) == pytest.approx(0.05, rel=1e-6)


def test_vectorised_bound_matches_scalar():
    successes = np.array([0, 3, 50, 59])
    trials = np.array([10, 10, 60, 59])
    expected = [clopper_pearson_lower(int(k), int(n), 0.1) for k, n in zip(successes, trials)]
    assert clopper_pearson_lower_many(successes, trials, 0.1) == pytest.approx(expected)


@settings(max_examples=300, deadline=None)
@given(
    trials=st.integers(min_value=1, max_value=400),
    share=st.floats(min_value=0.0, max_value=1.0),
    alpha=st.floats(min_value=0.5, max_value=0.995),
    delta=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_p_value_at_most_delta_iff_bound_at_least_alpha(trials, share, alpha, delta):
    successes = int(round(share * trials))
    p_value = agreement_p_value(successes, trials, alpha)
    bound = clopper_pearson_lower(successes, trials, delta)
    # Away from exact ties (floating point), the test and the bound must agree.
    if abs(p_value - delta) > 1e-9 and abs(bound - alpha) > 1e-9:
        assert (p_value <= delta) == (bound >= alpha)


def test_p_value_edge_cases():
    assert agreement_p_value(0, 0, 0.9) == 1.0
    assert agreement_p_value(0, 5, 0.9) == 1.0
    assert agreement_p_value(10, 10, 0.9) == pytest.approx(0.9**10)
    with pytest.raises(ValueError):
        agreement_p_value(11, 10, 0.9)
    with pytest.raises(ValueError):
        agreement_p_value(5, 10, 1.0)


def test_expected_p_value_matches_exact_p_value_at_integer_counts():
    for successes, trials in [(10, 10), (95, 100), (40, 50), (1, 3)]:
        assert expected_p_value(np.array([successes]), np.array([trials]), 0.9)[0] == (
            pytest.approx(agreement_p_value(successes, trials, 0.9), rel=1e-9)
        )
    assert expected_p_value(np.array([0.0]), np.array([0.5]), 0.9)[0] == 1.0


def test_minimum_trials_to_certify():
    assert minimum_trials_to_certify(0.95, 0.05) == 59
    assert 0.95**59 <= 0.05 < 0.95**58
    assert minimum_trials_to_certify(0.99, 0.05) == math.ceil(math.log(0.05) / math.log(0.99))


def test_fixed_sequence_select_stops_at_first_failure():
    assert fixed_sequence_select([0.01, 0.02, 0.2, 0.001], 0.05) == 1
    assert fixed_sequence_select([0.06, 0.001], 0.05) == -1
    assert fixed_sequence_select([0.01, float("nan"), 0.01], 0.05) == 0
    assert fixed_sequence_select([], 0.05) == -1


def test_fixed_sequence_from_skips_rules_before_start():
    handled = np.array([5, 100, 200, 300, 400])
    agreements = np.array([5, 100, 199, 290, 300])
    # From the strictest rule, 5 of 5 cannot certify 0.95 (needs 59): nothing is certified.
    assert fixed_sequence_from(agreements, handled, 0.95, 0.05, start=0) == -1
    # Planned start at rule 1: rules 1 and 2 pass, rule 3 (290/300) fails.
    assert fixed_sequence_from(agreements, handled, 0.95, 0.05, start=1) == 2
    assert fixed_sequence_from(agreements, handled, 0.95, 0.05, start=5) == -1
    with pytest.raises(ValueError):
        fixed_sequence_from(agreements[:2], handled, 0.95, 0.05, start=0)


def test_fixed_sequence_controls_family_wise_error_by_simulation():
    """Nested rules whose true agreement falls through alpha: false certifications <= delta."""
    rng = np.random.default_rng(7)
    alpha, delta, n_traces, repetitions = 0.9, 0.1, 400, 2000
    # Traces sorted by a score; the k-th trace agrees with probability agree_rate[k].
    agree_rate = np.linspace(1.0, 0.75, n_traces)
    sizes = np.arange(40, n_traces + 1, 20)
    true_agreement = np.array([agree_rate[:size].mean() for size in sizes])
    false_claims = 0
    for _ in range(repetitions):
        agrees = rng.random(n_traces) < agree_rate
        cumulative = np.cumsum(agrees)
        last = fixed_sequence_from(cumulative[sizes - 1], sizes, alpha, delta, start=0)
        if last >= 0 and true_agreement[: last + 1].min() < alpha:
            false_claims += 1
    rate = false_claims / repetitions
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / repetitions)
    # The control must not come from never certifying anything.
    assert (true_agreement >= alpha).sum() >= 3
