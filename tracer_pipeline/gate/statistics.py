"""Binomial statistics of the parity gate: lower bounds, p-values and fixed-sequence testing.

Every function here is pure. The shared assumption: the calibration traces are exchangeable with
(in practice: drawn from the same distribution as) the future traffic the gate speaks about, and
each trace's agreement with the teacher is a Bernoulli draw given the policy under test. Nothing
here guarantees anything about traffic that does not satisfy that assumption.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special, stats


def _check_counts(successes: int, trials: int) -> None:
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")


def clopper_pearson_lower(successes: int, trials: int, delta: float) -> float:
    """One-sided Clopper–Pearson lower confidence bound for a binomial proportion.

    Guarantee: if `successes` ~ Binomial(`trials`, p) with `trials` fixed in advance, then
    P(bound <= p) >= 1 - `delta`, for every p. The bound is exact (no normal approximation) and
    therefore conservative.

    Args:
        successes: number of agreements observed.
        trials: number of traces observed; 0 gives the trivial bound 0.
        delta: allowed probability that the true proportion lies below the bound.

    Returns:
        The lower bound, in [0, 1].
    """
    _check_counts(successes, trials)
    _check_probability("delta", delta)
    if successes == 0:
        return 0.0
    return float(stats.beta.ppf(delta, successes, trials - successes + 1))


def agreement_p_value(agreements: int, trials: int, alpha: float) -> float:
    """Exact binomial p-value for the null hypothesis "true agreement < alpha".

    The p-value is P(Binomial(trials, alpha) >= agreements), the largest tail probability of
    seeing this many agreements or more under any agreement rate below `alpha`. Under the null
    hypothesis P(p-value <= x) <= x for every x (it is super-uniform), which is what makes the
    Learn-then-Test procedure valid. With no trials the p-value is 1 (nothing can be claimed).
    A p-value <= delta is equivalent to `clopper_pearson_lower(agreements, trials, delta) >= alpha`.

    Args:
        agreements: number of handled calibration traces where surrogate and teacher agree.
        trials: number of handled calibration traces.
        alpha: the agreement level to be certified.

    Returns:
        The p-value, in [0, 1].
    """
    _check_counts(agreements, trials)
    _check_probability("alpha", alpha)
    if trials == 0 or agreements == 0:
        return 1.0
    return float(min(1.0, stats.binom.sf(agreements - 1, trials, alpha)))


def fixed_sequence_select(p_values: Sequence[float], delta: float) -> int:
    """Fixed-sequence testing: reject in order until the first p-value above `delta`.

    Guarantee: if the order of the hypotheses was fixed before the data behind the p-values
    were seen, and each p-value is valid (super-uniform under its null), then the probability of
    rejecting at least one true null hypothesis (the family-wise error rate) is at most `delta`,
    with no correction for the number of hypotheses. In the gate, a rejected hypothesis is a
    threshold whose true agreement is certified to be at least alpha; any one of the rejected
    thresholds may then be deployed.

    Args:
        p_values: p-values in the pre-fixed testing order.
        delta: the family-wise error rate allowed.

    Returns:
        Index of the last rejected hypothesis, or -1 when the first one is not rejected.
    """
    _check_probability("delta", delta)
    last_rejected = -1
    for index, p_value in enumerate(p_values):
        if math.isnan(p_value) or p_value > delta:
            break
        last_rejected = index
    return last_rejected


def clopper_pearson_lower_many(
    successes: np.ndarray, trials: np.ndarray, delta: float
) -> np.ndarray:
    """Vectorised `clopper_pearson_lower`: one bound per (successes, trials) pair.

    Same guarantee, pair by pair; no simultaneous guarantee over the pairs is implied.
    """
    _check_probability("delta", delta)
    successes = np.asarray(successes, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    if np.any(successes < 0) or np.any(successes > trials):
        raise ValueError("need 0 <= successes <= trials for every pair")
    with np.errstate(invalid="ignore", divide="ignore"):
        bounds = stats.beta.ppf(delta, successes, trials - successes + 1)
    return np.where(successes > 0, np.nan_to_num(bounds, nan=0.0), 0.0)


def expected_p_value(
    expected_successes: np.ndarray, expected_trials: np.ndarray, alpha: float
) -> np.ndarray:
    """`agreement_p_value` continued to real-valued counts, for planning a test order.

    P(Binomial(n, alpha) >= k) equals the regularised incomplete beta I_alpha(k, n - k + 1);
    evaluated at expected counts (e.g. estimated on a validation split) it predicts how small
    the calibration p-value of a hypothesis will be. It is a planning heuristic only: no
    guarantee rests on it, and it must be computed without the calibration traces.
    """
    _check_probability("alpha", alpha)
    successes = np.asarray(expected_successes, dtype=np.float64)
    trials = np.asarray(expected_trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_values = special.betainc(np.maximum(successes, 1e-9),
                                   np.maximum(trials - successes + 1.0, 1e-9), alpha)
    return np.where((trials >= 1.0) & (successes > 0), p_values, 1.0)


def fixed_sequence_from(
    agreements: Sequence[int], handled: Sequence[int], alpha: float, delta: float, start: int
) -> int:
    """Certify nested rules in a pre-fixed order: index `start`, then `start + 1`, ...

    Hypothesis k says "rule k's agreement on the traffic it handles is below alpha"; it is
    tested with the exact binomial p-value of `agreements[k]` out of `handled[k]` calibration
    traces. Testing stops at the first p-value above `delta`.

    Guarantee: if `start` and the order of the rules were fixed without looking at the
    calibration traces, and the traces are exchangeable with future traffic, then with
    probability >= 1 - `delta` no rule this function certifies has true agreement below alpha
    (fixed-sequence testing controls the family-wise error rate at `delta` with no correction
    for the number of rules). Rules before `start` are never tested, which is what makes the
    procedure robust: a start where certification is likely is not held back by the strictest
    rules, whose few handled traces can never be certified.

    Returns:
        Index of the last certified rule, or -1 when rule `start` is not certified.
    """
    _check_probability("delta", delta)
    if len(agreements) != len(handled):
        raise ValueError("agreements and handled must have the same length")
    if not 0 <= start < len(handled):
        return -1
    p_values = []
    for index in range(start, len(handled)):
        p_values.append(agreement_p_value(int(agreements[index]), int(handled[index]), alpha))
        if p_values[-1] > delta:
            break
    last = fixed_sequence_select(p_values, delta)
    return -1 if last < 0 else start + last


def minimum_trials_to_certify(alpha: float, delta: float) -> int:
    """Smallest number of handled traces that could certify `alpha` even with perfect agreement.

    With n traces that all agree the p-value is alpha**n, so certification needs
    n >= log(delta) / log(alpha).
    """
    _check_probability("alpha", alpha)
    _check_probability("delta", delta)
    return int(math.ceil(math.log(delta) / math.log(alpha) - 1e-12))
