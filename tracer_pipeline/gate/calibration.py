"""The parity gate: pick a surrogate, fit its acceptor, and certify a routing rule.

What is guaranteed, and under which assumption. Let the calibration traces be exchangeable with
the future traffic (same distribution: traces sampled from the same days and sources as the
traffic the router will see), and let everything fitted before calibration (candidates,
acceptor, distance threshold, the grid of score thresholds, the start of the test sequence and
the choice of candidate) depend on the train and validation splits only. Then, for the alpha
the gate was asked to certify, with probability at least 1 - delta over the draw of the
calibration traces, the deployed rule's agreement with the teacher on the traffic it handles is
at least alpha. This is Learn-then-Test (Angelopoulos et al., 2021) with exact binomial
p-values and fixed-sequence testing; see `tracer_pipeline.gate.statistics.fixed_sequence_from`.

The rule. An input is handled when (1) its predicted label was seen at least `min_label_count`
times in training, (2) its atypicality (`features.atypicality`: mean rank of its distance to the
nearest training prototype and of the surrogate's entropy, against validation traffic) is at
most the atypicality threshold, and (3) its acceptor score is at least the score threshold.
The atypicality threshold defers the least typical share `atypical_share(alpha)` of validation
traffic and is fixed before calibration; the certified agreement is that of the whole rule, so
this distance rule sits inside the guarantee. Its purpose is traffic that calibration never saw
(out-of-scope queries, a new topic): such traffic breaks the exchangeability assumption, so no
calibration can speak for it, and the rule keeps most of it away from the surrogate at a known
cost in coverage of ordinary traffic. That cost grows as alpha leaves less room for errors
that calibration cannot see: `atypical_share(alpha) = min(atypical_share_max,
atypical_share_at_90 * ((1 - 0.90) / (1 - alpha)) ** atypical_share_growth)`. The schedule is a
design choice, not a guarantee: it was set on CLINC150, whose test split holds 18% out-of-scope
queries against 0.7% in training, so that a stricter alpha also holds on such traffic.

The surrogate. Every fitted candidate is offered as it is and, for each weight w of
`prototype_weights`, kNN-smoothed: its probabilities mixed as (1 - w) p + w v with v the soft
vote of the nearest training prototypes, which the acceptor features compute anyway (so the
smoothed surrogate routes at no extra cost). The choice among all of them is made on validation
only, like the choice among candidates, so it sits before calibration and inside the guarantee.

The test sequence. Score thresholds form a grid of validation-score quantiles, strictest first.
From validation alone (cross-fitted acceptor scores) the gate predicts each rule's calibration
p-value and starts the sequence at the rule predicted to certify most surely; it then tests
ever looser rules until the first failure and deploys the loosest rule certified. Stricter rules
than the start are never tested: their few handled traces could not be certified anyway, and
testing them first would let one unlucky failure stop everything (the fragility of a sequence
that starts at the very strictest rule).

Each alpha of the frontier is certified separately, each with its own candidate choice: each
claim holds with probability >= 1 - delta on its own, not all of them simultaneously.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from tracer_pipeline.gate.features import (
    Acceptor,
    ReferenceSet,
    acceptor_features,
    atypicality,
    atypicality_reference,
    build_reference_set,
    fit_acceptor,
    unit_rows,
)
from tracer_pipeline.gate.policy import RoutingPolicy
from tracer_pipeline.gate.statistics import (
    clopper_pearson_lower,
    expected_p_value,
    fixed_sequence_from,
    minimum_trials_to_certify,
)
from tracer_pipeline.surrogates.arrays import multiply_adds_per_row
from tracer_pipeline.surrogates.candidates import FittedCandidate

LOGGER = logging.getLogger(__name__)

DEPLOY = "deploy"
REFUSE = "refuse"


@dataclass
class GateConfig:
    """Settings of the gate.

    Attributes:
        alpha: agreement to certify on handled traffic.
        delta: allowed probability that the certificate is wrong.
        frontier_alphas: further agreement levels to certify and report (coverage frontier).
        per_label_floor: certify each predicted label on its own (Bonferroni over labels,
            delta / n_labels each) and always defer labels that cannot be certified.
        score_grid_size: number of score thresholds (validation-score quantiles).
        atypical_share_at_90, atypical_share_growth, atypical_share_max: the atypicality rule
            defers the least typical share min(max, at_90 * (0.1 / (1 - alpha)) ** growth) of
            validation traffic (0.7% at alpha 0.80, 2% at 0.90, 5.7% at 0.95, capped at 6%).
        reference_per_label: prototypes per label for the nearest-neighbour features and the
            prototype vote. 24 rather than 16: on Banking77 the smoothed surrogate was 0.2-0.3%
            more accurate on validation and calibration and certified 0.9% more calibration
            coverage at alpha 0.95; routing cost grows with n_labels * reference_per_label.
        min_label_count: labels seen fewer times in training are never handled.
        prototype_weights: each candidate is offered once per weight w: its probabilities mixed
            as (1 - w) * p + w * (soft vote of the nearest training prototypes), a kNN-smoothed
            surrogate that costs nothing more to route; the choice among them is the candidate
            choice (validation only). 0.4 was the best mix on Banking77's validation split.
        candidate_coverage_tolerance: candidates whose predicted coverage at alpha is within
            this of the best are compared by validation accuracy instead.
        acceptor_folds: folds of cross-fitting on validation, for honest candidate comparison
            and for planning the test sequence.
        acceptor_regularisation: C of the acceptor's logistic regression.
        random_state: seed for the acceptor folds and the prototypes.
    """

    alpha: float = 0.95
    delta: float = 0.05
    frontier_alphas: tuple[float, ...] = (0.80, 0.85, 0.90, 0.95, 0.99)
    per_label_floor: bool = False
    score_grid_size: int = 400
    atypical_share_at_90: float = 0.02
    atypical_share_growth: float = 1.5
    atypical_share_max: float = 0.06
    reference_per_label: int = 24
    min_label_count: int = 3
    prototype_weights: tuple[float, ...] = (0.0, 0.4)
    candidate_coverage_tolerance: float = 0.01
    acceptor_folds: int = 5
    acceptor_regularisation: float = 1.0
    random_state: int = 0

    def __post_init__(self) -> None:
        for name in ("alpha", "delta"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
        if any(not 0.0 < value < 1.0 for value in self.frontier_alphas):
            raise ValueError(f"frontier alphas must lie in (0, 1), got {self.frontier_alphas}")
        if not 0.0 <= self.atypical_share_at_90 <= self.atypical_share_max < 1.0:
            raise ValueError("need 0 <= atypical_share_at_90 <= atypical_share_max < 1")
        if not self.prototype_weights or any(
            not 0.0 <= weight < 1.0 for weight in self.prototype_weights
        ):
            raise ValueError(f"prototype weights must lie in [0, 1), got {self.prototype_weights}")
        if self.score_grid_size < 2 or self.reference_per_label < 1:
            raise ValueError("score_grid_size must be >= 2 and reference_per_label positive")


@dataclass
class GateOutcome:
    """What the gate decided, with the numbers behind it.

    Attributes:
        decision: "deploy" or "refuse".
        reason: why it refused (None when deployed).
        candidate: the chosen candidate's name.
        threshold: the acceptor-score threshold (None when refused or per-label).
        agreement_lower_bound: Clopper–Pearson (1 - delta) lower bound of agreement of the chosen
            rule on the calibration traces it handles; at least alpha when deployed.
        coverage_calibration: share of calibration traces handled (0 when refused).
        agreement_calibration: agreement on the handled calibration traces (point estimate).
        n_calibration: number of calibration traces.
        alpha: agreement certified.
        delta: allowed probability that the certificate is wrong.
        candidates: per candidate: name, kind, fit_seconds, routing_multiply_adds, validation
            accuracy, the coverage its test sequence is predicted to certify at alpha
            (validation only), whether chosen.
        frontier: per alpha of the frontier (filled by `run_gate`): alpha, candidate,
            coverage_certified, threshold, distance_threshold, agreement_lower_bound, refused.
        policy: the deployable router (None when refused).
        distance_threshold: the atypicality threshold of the deployed rule, a rank in [0, 1]
            mixing distance to training and the surrogate's entropy (None when refused).
        details: further JSON-able facts (sizes, per-label thresholds, the test sequence).
    """

    decision: str
    reason: str | None
    candidate: str
    threshold: float | None
    agreement_lower_bound: float | None
    coverage_calibration: float
    agreement_calibration: float | None
    n_calibration: int
    alpha: float
    delta: float
    candidates: list[dict]
    frontier: list[dict]
    policy: RoutingPolicy | None = None
    distance_threshold: float | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything but the policy, as JSON-able Python objects."""
        return {key: value for key, value in asdict(self).items() if key != "policy"}


def atypical_share(alpha: float, config: GateConfig) -> float:
    """Share of validation traffic the atypicality rule defers when certifying `alpha`."""
    growth = ((1.0 - 0.90) / (1.0 - alpha)) ** config.atypical_share_growth
    return min(config.atypical_share_max, config.atypical_share_at_90 * growth)


@dataclass
class _SplitView:
    """A candidate's view of one split: acceptor inputs and scores, agreement, atypicality.

    `label_known` marks traces whose predicted label was seen often enough in training.
    """

    features: dict[str, np.ndarray]
    scores: np.ndarray
    agrees: np.ndarray
    label_known: np.ndarray
    atypicality: np.ndarray


@dataclass
class _CandidateEvidence:
    """What the gate knows about one candidate before any alpha is certified.

    Attributes:
        candidate: the fitted surrogate.
        prototype_weight: weight of the prototype vote mixed into its probabilities.
        acceptor: the acceptor fitted on all validation traces (the one deployed).
        atypicality_quantiles: validation quantiles that define atypicality.
        validation: validation view with cross-fitted (honest) acceptor scores.
        validation_scores: the deployed acceptor's scores on validation (they fix the grid).
        calibration: calibration view with the deployed acceptor's scores.
    """

    candidate: FittedCandidate
    prototype_weight: float
    acceptor: Acceptor
    atypicality_quantiles: np.ndarray
    validation: _SplitView
    validation_scores: np.ndarray
    calibration: _SplitView

    @property
    def name(self) -> str:
        """The candidate's name, marked when its probabilities are mixed with prototypes."""
        if self.prototype_weight > 0.0:
            return f"{self.candidate.spec.name}+prototypes{self.prototype_weight:g}"
        return self.candidate.spec.name


@dataclass
class _Rules:
    """One candidate's nested rules at one alpha, strictest first, and their evidence.

    Attributes:
        atypicality_threshold: shared by every rule.
        score_thresholds: the grid: quantiles of the deployed acceptor's scores on eligible
            validation traces, at coverage levels 1/K, 2/K, ..., 1.
        expected_coverage: share of validation traces each rule handles, with honest scores.
        expected_agreement: agreement of each rule on validation, with honest scores.
        calibration_eligible: calibration traces the score threshold may handle.
        calibration_handled: calibration traces each rule handles.
        calibration_agreements: how many of those agree with the teacher.
    """

    atypicality_threshold: float
    score_thresholds: np.ndarray
    expected_coverage: np.ndarray
    expected_agreement: np.ndarray
    calibration_eligible: np.ndarray
    calibration_handled: np.ndarray
    calibration_agreements: np.ndarray


@dataclass
class GateEvidence:
    """Everything `prepare_gate` computes once and every alpha reuses."""

    config: GateConfig
    label_space: np.ndarray
    reference: ReferenceSet
    candidates: list[_CandidateEvidence]
    n_train: int
    n_validation: int
    n_calibration: int
    embedding_model: str = ""


@dataclass
class _Sequence:
    """The outcome of one fixed-sequence test over a candidate's grid of rules."""

    start: int
    last_certified: int
    handled: int
    agreements: int


def _as_labels(y: np.ndarray, name: str, n_rows: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n_rows,):
        raise ValueError(f"{name} must have one label per embedding row: {y.shape} vs {n_rows}")
    return y.astype(str)


def _as_embeddings(X: np.ndarray, name: str, dimension: int | None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of embeddings, got shape {X.shape}")
    if dimension is not None and X.shape[1] != dimension:
        raise ValueError(f"{name} has dimension {X.shape[1]}, expected {dimension}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _codes(labels: np.ndarray, label_space: np.ndarray) -> np.ndarray:
    """Index of each label in label_space, -1 when absent."""
    positions = np.searchsorted(label_space, labels)
    positions = np.minimum(positions, label_space.size - 1)
    return np.where(label_space[positions] == labels, positions, -1)


def _subset(features: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in features.items()}


def _cross_fitted_scores(
    features: dict[str, np.ndarray], agrees: np.ndarray, n_labels: int, config: GateConfig
) -> np.ndarray:
    """Acceptor scores on validation, each from an acceptor fitted without that trace."""
    n_rows = agrees.size
    n_folds = min(config.acceptor_folds, n_rows // 2)
    if n_folds < 2:
        acceptor = fit_acceptor(features, agrees, n_labels, config.acceptor_regularisation)
        return acceptor.score(features)
    order = np.random.default_rng(config.random_state).permutation(n_rows)
    scores = np.empty(n_rows)
    for fold in range(n_folds):
        held_out = order[fold::n_folds]
        kept = np.setdiff1d(order, held_out)
        acceptor = fit_acceptor(_subset(features, kept), agrees[kept], n_labels,
                                config.acceptor_regularisation)
        scores[held_out] = acceptor.score(_subset(features, held_out))
    return scores


def _coverage_levels(grid_size: int) -> np.ndarray:
    return np.arange(1, grid_size + 1) / grid_size


def _thresholds_at(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Score thresholds that handle about the given shares of `scores` (highest first).

    The last level (1.0) gets threshold 0, which every score in (0, 1) passes.
    """
    if scores.size == 0:
        return np.full(levels.size, np.inf)
    ordered = np.sort(scores)[::-1]
    positions = np.clip(np.ceil(levels * ordered.size).astype(int) - 1, 0, ordered.size - 1)
    thresholds = ordered[positions].astype(np.float64)
    thresholds[levels >= 1.0] = 0.0
    return thresholds


def _rule_counts(scores: np.ndarray, agrees: np.ndarray, eligible: np.ndarray,
                 thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Handled traces and agreements of the rule `eligible & score >= t`, for every t."""
    kept_scores = scores[eligible]
    order = np.argsort(-kept_scores, kind="stable")
    sorted_scores = -kept_scores[order]
    cumulative_agreements = np.concatenate([[0], np.cumsum(agrees[eligible][order])])
    handled = np.searchsorted(sorted_scores, -thresholds, side="right")
    return handled.astype(np.int64), cumulative_agreements[handled].astype(np.int64)


@dataclass(frozen=True)
class _SplitInputs:
    """A split's embeddings, teacher labels and similarities to the prototypes (computed once
    and shared by every candidate), and one candidate's probabilities on it."""

    X: np.ndarray
    y: np.ndarray
    label_similarity: np.ndarray
    probabilities: np.ndarray | None = None


def _view(candidate: FittedCandidate, prototype_weight: float, inputs: _SplitInputs,
          reference: ReferenceSet, config: GateConfig,
          ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    features = acceptor_features(inputs.probabilities, inputs.X, reference, prototype_weight,
                                 inputs.label_similarity)
    agrees = candidate.label_space[features["predicted"]] == inputs.y
    label_known = reference.label_counts[features["predicted"]] >= config.min_label_count
    return features, agrees, label_known


def _candidate_evidence(
    candidate: FittedCandidate, prototype_weight: float, validation_inputs: _SplitInputs,
    calibration_inputs: _SplitInputs, reference: ReferenceSet, config: GateConfig,
) -> _CandidateEvidence:
    n_labels = candidate.label_space.size
    features, agrees, label_known = _view(candidate, prototype_weight, validation_inputs,
                                          reference, config)
    honest_scores = _cross_fitted_scores(features, agrees, n_labels, config)
    acceptor = fit_acceptor(features, agrees, n_labels, config.acceptor_regularisation)
    quantiles = atypicality_reference(features)
    validation = _SplitView(features, honest_scores, agrees, label_known,
                            atypicality(features, quantiles))
    cal_features, cal_agrees, cal_known = _view(candidate, prototype_weight, calibration_inputs,
                                                reference, config)
    calibration = _SplitView(cal_features, acceptor.score(cal_features), cal_agrees, cal_known,
                             atypicality(cal_features, quantiles))
    return _CandidateEvidence(candidate, prototype_weight, acceptor, quantiles, validation,
                              acceptor.score(features), calibration)


def _rules(item: _CandidateEvidence, alpha: float, config: GateConfig) -> _Rules:
    """The nested rules of one candidate at `alpha`, fixed from validation; their counts.

    The grid comes from the deployed acceptor's validation scores; the honest estimate of each
    rule uses the cross-fitted scores at the same coverage level.
    """
    validation, calibration = item.validation, item.calibration
    share = atypical_share(alpha, config)
    atypicality_threshold = (float(np.quantile(validation.atypicality, 1.0 - share))
                             if share > 0 else 1.0)
    eligible = validation.label_known & (validation.atypicality <= atypicality_threshold)
    levels = _coverage_levels(config.score_grid_size)
    thresholds = _thresholds_at(item.validation_scores[eligible], levels)
    honest_thresholds = _thresholds_at(validation.scores[eligible], levels)
    handled, agreements = _rule_counts(validation.scores, validation.agrees, eligible,
                                       honest_thresholds)
    calibration_eligible = calibration.label_known & (
        calibration.atypicality <= atypicality_threshold
    )
    calibration_handled, calibration_agreements = _rule_counts(
        calibration.scores, calibration.agrees, calibration_eligible, thresholds
    )
    return _Rules(
        atypicality_threshold=atypicality_threshold,
        score_thresholds=thresholds,
        expected_coverage=handled / max(validation.agrees.size, 1),
        expected_agreement=np.where(handled > 0, agreements / np.maximum(handled, 1), 0.0),
        calibration_eligible=calibration_eligible,
        calibration_handled=calibration_handled,
        calibration_agreements=calibration_agreements,
    )


def _check_inputs(
    candidates: Sequence[FittedCandidate], X_train, y_train, X_val, y_val, X_cal, y_cal
) -> tuple:
    if not candidates:
        raise ValueError("the gate needs at least one fitted candidate")
    label_space = np.asarray(candidates[0].label_space).astype(str)
    for candidate in candidates[1:]:
        if not np.array_equal(candidate.label_space, label_space):
            raise ValueError("all candidates must share the same label space")
    if label_space.size < 2:
        raise ValueError("the label space has a single label: nothing to route")
    X_train = _as_embeddings(X_train, "X_train", None)
    dimension = X_train.shape[1]
    X_val = _as_embeddings(X_val, "X_val", dimension)
    X_cal = _as_embeddings(X_cal, "X_cal", dimension)
    y_train = _as_labels(y_train, "y_train", X_train.shape[0])
    y_val = _as_labels(y_val, "y_val", X_val.shape[0])
    y_cal = _as_labels(y_cal, "y_cal", X_cal.shape[0])
    if X_train.shape[0] == 0 or np.unique(y_train).size < 2:
        raise ValueError("the training split needs traces of at least two teacher labels")
    if X_val.shape[0] < 2:
        raise ValueError(f"the validation split needs at least 2 traces, got {X_val.shape[0]}: "
                         "it fits the acceptor and chooses the candidate")
    return label_space, X_train, y_train, X_val, y_val, X_cal, y_cal


def prepare_gate(
    candidates: Sequence[FittedCandidate],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    config: GateConfig,
    embedding_model: str = "",
) -> GateEvidence:
    """Everything the gate needs that does not depend on alpha, computed once per refit.

    Builds the training prototypes and, per candidate and prototype weight, its acceptor
    (cross-fitted on validation for honest estimates, then fitted on all of it), the atypicality
    reference, and the acceptor features of the calibration traces. Nothing fitted here reads
    calibration labels; they only enter the counts that the tests of `certify_alpha` use.

    Raises:
        ValueError: on inputs that cannot be gated (no candidates, a single label, fewer than
            two validation traces, mismatched shapes).
    """
    label_space, X_train, y_train, X_val, y_val, X_cal, y_cal = _check_inputs(
        candidates, X_train, y_train, X_val, y_val, X_cal, y_cal
    )
    train_codes = _codes(y_train, label_space)
    known = train_codes >= 0
    reference = build_reference_set(X_train[known], train_codes[known], label_space.size,
                                    config.reference_per_label, config.random_state)
    validation_inputs = _SplitInputs(X_val, y_val, reference.label_similarity(unit_rows(X_val)))
    calibration_inputs = _SplitInputs(X_cal, y_cal,
                                      reference.label_similarity(unit_rows(X_cal)))
    evidence = []
    for candidate in candidates:
        with_validation = replace(validation_inputs,
                                  probabilities=candidate.predict_proba(X_val))
        with_calibration = replace(calibration_inputs,
                                   probabilities=candidate.predict_proba(X_cal))
        evidence += [
            _candidate_evidence(candidate, weight, with_validation, with_calibration,
                                reference, config)
            for weight in config.prototype_weights
        ]
    return GateEvidence(
        config=config, label_space=label_space, reference=reference, candidates=evidence,
        n_train=int(X_train.shape[0]), n_validation=int(X_val.shape[0]),
        n_calibration=int(X_cal.shape[0]), embedding_model=embedding_model,
    )


def _expected_p_values(rules: _Rules, n_calibration: int, alpha: float) -> np.ndarray:
    expected_trials = rules.expected_coverage * n_calibration
    return expected_p_value(rules.expected_agreement * expected_trials, expected_trials, alpha)


def _planned_start(rules: _Rules, n_calibration: int, alpha: float) -> int:
    """The rule predicted (from validation only) to have the smallest calibration p-value."""
    return int(np.argmin(_expected_p_values(rules, n_calibration, alpha)))


def _predicted_coverage(rules: _Rules, n_calibration: int, alpha: float, delta: float) -> float:
    """Coverage the sequence is predicted to certify, from validation estimates only."""
    expected_p = _expected_p_values(rules, n_calibration, alpha)
    start = int(np.argmin(expected_p))
    if expected_p[start] > delta:
        return 0.0
    failures = np.flatnonzero(expected_p[start:] > delta)
    last = start + failures[0] - 1 if failures.size else expected_p.size - 1
    return float(rules.expected_coverage[last])


def _run_sequence(handled: np.ndarray, agreements: np.ndarray, start: int, alpha: float,
                  delta: float) -> _Sequence:
    last = fixed_sequence_from(agreements, handled, alpha, delta, start)
    if last < 0:
        return _Sequence(start, -1, 0, 0)
    return _Sequence(start, last, int(handled[last]), int(agreements[last]))


def _refusal(reason: str, candidate: str, evidence: GateEvidence, alpha: float,
             summaries: list[dict], details: dict) -> GateOutcome:
    LOGGER.warning("parity gate refuses at alpha=%.2f: %s", alpha, reason)
    return GateOutcome(
        decision=REFUSE, reason=reason, candidate=candidate, threshold=None,
        agreement_lower_bound=None, coverage_calibration=0.0, agreement_calibration=None,
        n_calibration=evidence.n_calibration, alpha=alpha, delta=evidence.config.delta,
        candidates=summaries, frontier=[], policy=None, distance_threshold=None,
        details=details,
    )


def _per_label_thresholds(item: _CandidateEvidence, rules: _Rules, start: int, alpha: float,
                          delta: float, n_labels: int) -> np.ndarray:
    """Certify each predicted label on its own calibration traces at delta / n_labels.

    By Bonferroni, with probability >= 1 - delta every certified label's agreement is >= alpha
    at once, hence so is the agreement of their union. Labels with no certified rule get an
    infinite score threshold (never handled).
    """
    label_delta = delta / n_labels
    calibration = item.calibration
    predicted = calibration.features["predicted"]
    eligible = rules.calibration_eligible
    needed = minimum_trials_to_certify(alpha, label_delta)
    thresholds = np.full(n_labels, np.inf)
    for label in np.unique(predicted[eligible]):
        rows = predicted == label
        if (rows & eligible).sum() < needed:
            continue
        handled, agreements = _rule_counts(calibration.scores[rows], calibration.agrees[rows],
                                           eligible[rows], rules.score_thresholds)
        sequence = _run_sequence(handled, agreements, start, alpha, label_delta)
        if sequence.last_certified >= 0:
            thresholds[label] = rules.score_thresholds[sequence.last_certified]
    return thresholds


def certify_alpha(evidence: GateEvidence, alpha: float) -> GateOutcome:
    """Choose a candidate for `alpha` and certify its loosest rule on calibration, or refuse.

    The candidate is the most accurate on validation among those whose test sequence is
    predicted (from validation only) to certify within `candidate_coverage_tolerance` of the
    largest coverage; among equally accurate ones, the cheapest to route
    (`multiply_adds_per_row`), then the first by name. The chosen candidate's sequence is
    tested on calibration (`fixed_sequence_from`). With `per_label_floor`, each predicted label
    gets its own sequence at delta / n_labels instead.

    Guarantee (assumption in the module docstring): when the decision is "deploy", with
    probability >= 1 - delta the deployed rule's agreement on handled traffic is >= alpha.
    """
    config = evidence.config
    delta = config.delta
    n_calibration = evidence.n_calibration
    n_labels = evidence.label_space.size

    all_rules = [_rules(item, alpha, config) for item in evidence.candidates]
    summaries = [
        {
            "name": item.name,
            "kind": item.candidate.spec.kind,
            "fit_seconds": round(item.candidate.fit_seconds, 3),
            "routing_multiply_adds": multiply_adds_per_row(item.candidate.kind,
                                                           item.candidate.arrays),
            "validation_accuracy": float(item.validation.agrees.mean()),
            "predicted_coverage_at_alpha": _predicted_coverage(rules, n_calibration, alpha,
                                                               delta),
            "chosen": False,
        }
        for item, rules in zip(evidence.candidates, all_rules)
    ]
    # Predicted coverages closer than the tolerance are ties: validation cannot tell them
    # apart, and the more accurate candidate is the safer bet on traffic unlike calibration.
    # Equal accuracy (common: it counts validation traces) goes to the cheaper forward pass,
    # then to the name; never to a measured time, so that the same refit chooses the same
    # candidate in any process (a backfill and the days one by one agree).
    best_coverage = max(summary["predicted_coverage_at_alpha"] for summary in summaries)
    chosen_index = min(
        range(len(summaries)),
        key=lambda i: (summaries[i]["predicted_coverage_at_alpha"]
                       < best_coverage - config.candidate_coverage_tolerance,
                       -summaries[i]["validation_accuracy"],
                       summaries[i]["routing_multiply_adds"], summaries[i]["name"]),
    )
    summaries[chosen_index]["chosen"] = True
    item, rules = evidence.candidates[chosen_index], all_rules[chosen_index]
    name = item.name
    start = _planned_start(rules, n_calibration, alpha)
    details = {
        "n_train": evidence.n_train,
        "n_validation": evidence.n_validation,
        "n_labels": int(n_labels),
        "score_grid_size": int(rules.score_thresholds.size),
        "atypical_share": atypical_share(alpha, config),
        "embedding_model": evidence.embedding_model,
        "surrogate_candidate": item.candidate.spec.name,
        "prototype_weight": item.prototype_weight,
        "sequence_start_expected_coverage": float(rules.expected_coverage[start]),
    }

    needed = minimum_trials_to_certify(alpha, delta)
    if n_calibration < needed:
        return _refusal(
            f"calibration split has {n_calibration} traces; certifying alpha={alpha} with "
            f"delta={delta} needs at least {needed} handled traces",
            name, evidence, alpha, summaries, details,
        )

    sequence = _run_sequence(rules.calibration_handled, rules.calibration_agreements, start,
                             alpha, delta)
    details["rules_certified"] = max(sequence.last_certified - start + 1, 0)
    if config.per_label_floor:
        label_thresholds = _per_label_thresholds(item, rules, start, alpha, delta, n_labels)
        certified_labels = np.isfinite(label_thresholds)
        if not certified_labels.any():
            return _refusal(
                f"no label's agreement could be certified at alpha={alpha} with delta={delta} "
                f"split over {n_labels} labels", name, evidence, alpha, summaries, details,
            )
        details["label_score_thresholds"] = {
            str(label): float(value)
            for label, value in zip(evidence.label_space, label_thresholds) if np.isfinite(value)
        }
        details["labels_certified"] = int(certified_labels.sum())
        calibration = item.calibration
        handled_rows = rules.calibration_eligible & (
            calibration.scores >= label_thresholds[calibration.features["predicted"]]
        )
        n_handled = int(handled_rows.sum())
        n_agree = int((handled_rows & calibration.agrees).sum())
        global_threshold, outcome_threshold = float("inf"), None
    else:
        if sequence.last_certified < 0:
            handled = int(rules.calibration_handled[start])
            agreements = int(rules.calibration_agreements[start])
            bound = clopper_pearson_lower(agreements, handled, delta) if handled else 0.0
            return _refusal(
                f"no rule could be certified at alpha={alpha} with delta={delta} on "
                f"{n_calibration} calibration traces: the first rule of the sequence (planned "
                f"on validation) handled {handled} traces with {agreements} agreements, "
                f"Clopper–Pearson lower bound {bound:.4f}",
                name, evidence, alpha, summaries, details,
            )
        global_threshold = float(rules.score_thresholds[sequence.last_certified])
        outcome_threshold = global_threshold
        label_thresholds = np.full(n_labels, global_threshold)
        n_handled, n_agree = sequence.handled, sequence.agreements

    lower_bound = clopper_pearson_lower(n_agree, n_handled, delta) if n_handled else 0.0
    coverage = n_handled / n_calibration
    policy = RoutingPolicy(
        label_space=[str(label) for label in evidence.label_space],
        threshold=global_threshold,
        alpha=alpha,
        delta=delta,
        surrogate_name=name,
        surrogate_kind=item.candidate.kind,
        surrogate_arrays=item.candidate.arrays,
        reference=evidence.reference,
        acceptor=item.acceptor,
        atypicality_quantiles=item.atypicality_quantiles,
        atypicality_threshold=rules.atypicality_threshold,
        label_score_thresholds=label_thresholds.astype(np.float64),
        min_label_count=config.min_label_count,
        prototype_weight=item.prototype_weight,
        embedding_model=evidence.embedding_model,
        metadata={"agreement_lower_bound": lower_bound, "coverage_calibration": coverage,
                  "n_calibration": n_calibration, "per_label_floor": config.per_label_floor},
    )
    LOGGER.info("parity gate deploys %s at alpha=%.2f: calibration coverage %.3f, agreement "
                "lower bound %.4f", name, alpha, coverage, lower_bound)
    return GateOutcome(
        decision=DEPLOY, reason=None, candidate=name, threshold=outcome_threshold,
        agreement_lower_bound=lower_bound, coverage_calibration=coverage,
        agreement_calibration=n_agree / n_handled if n_handled else None,
        n_calibration=n_calibration, alpha=alpha, delta=delta, candidates=summaries,
        frontier=[], policy=policy, distance_threshold=rules.atypicality_threshold,
        details=details,
    )


def frontier_point(outcome: GateOutcome) -> dict:
    """One row of the coverage frontier: what was certified at the outcome's alpha."""
    return {
        "alpha": outcome.alpha,
        "candidate": outcome.candidate,
        "coverage_certified": outcome.coverage_calibration,
        "threshold": outcome.threshold,
        "distance_threshold": outcome.distance_threshold,
        "agreement_lower_bound": outcome.agreement_lower_bound,
        "refused": outcome.decision == REFUSE,
    }


def run_gate_frontier(
    candidates: Sequence[FittedCandidate],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    config: GateConfig,
    alphas: Sequence[float],
    embedding_model: str = "",
) -> dict[float, GateOutcome]:
    """`certify_alpha` at every alpha in `alphas`, sharing one `prepare_gate`.

    Each outcome carries its own policy. Each holds with probability >= 1 - delta on its own.
    """
    evidence = prepare_gate(candidates, X_train, y_train, X_val, y_val, X_cal, y_cal, config,
                            embedding_model)
    return {alpha: certify_alpha(evidence, alpha) for alpha in sorted(set(alphas))}


def run_gate(
    candidates: Sequence[FittedCandidate],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    config: GateConfig,
    embedding_model: str = "",
) -> GateOutcome:
    """Choose a candidate, fit its acceptor and certify a routing rule at `config.alpha`.

    Steps: (1) `prepare_gate`: prototypes, distance threshold, acceptors, grids and calibration
    counts, once for all alphas; (2) `certify_alpha` at `config.alpha` and at every frontier
    alpha. The outcome is the one at `config.alpha`; its `frontier` lists every frontier alpha.

    Guarantee (see the module docstring for the assumption): when the decision is "deploy",
    with probability >= 1 - delta the deployed rule's agreement on handled traffic is >= alpha.
    With `per_label_floor`, the same holds for each handled label separately.

    Args:
        candidates: fitted on the training split (all with the same label space).
        X_train, y_train: the training split the candidates were fitted on.
        X_val, y_val: validation split (acceptor, candidate choice, grid and test plan).
        X_cal, y_cal: calibration split, used only for the certificate.
        config: gate settings.
        embedding_model: name of the embedder, stored in the policy.

    Returns:
        The outcome; `policy` is the deployable router when the decision is "deploy".

    Raises:
        ValueError: on inputs that cannot be gated (see `prepare_gate`).
    """
    alphas = set(config.frontier_alphas) | {config.alpha}
    outcomes = run_gate_frontier(candidates, X_train, y_train, X_val, y_val, X_cal, y_cal,
                                 config, sorted(alphas), embedding_model)
    outcome = outcomes[config.alpha]
    outcome.frontier = [frontier_point(outcomes[alpha]) for alpha in sorted(alphas)
                        if alpha in config.frontier_alphas]
    return outcome
