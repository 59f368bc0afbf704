"""The parity gate: pick a surrogate, fit its acceptor, and certify a routing rule.

What is guaranteed, and under which assumption. Let the calibration traces be exchangeable with
the future traffic (same distribution, e.g. traces sampled from the same days and sources), and
let everything fitted (candidates, acceptor, the grid of thresholds and their testing order) be
independent of the calibration traces (they come from the train and validation splits only).
Then, with probability at least 1 - delta over the draw of the calibration traces, the deployed
rule's agreement with the teacher on the traffic it handles is at least alpha. This is
Learn-then-Test (Angelopoulos et al., 2021) with exact binomial p-values and fixed-sequence
testing, so the number of thresholds tried costs no correction.

The rule is two-dimensional: an input is handled when its acceptor score is at least a score
threshold AND its distance to the nearest training prototype is at most a distance threshold
(and its predicted label was seen at least `min_label_count` times in training). The family of
(score threshold, distance threshold) pairs and its testing order are fixed from the validation
split before the calibration traces are read; the distance rule is therefore certified together
with the score rule, not bolted on afterwards. Traffic unlike anything in calibration (e.g.
out-of-scope queries) is outside the guarantee; the distance rule is what keeps most of it away
from the surrogate, and the gate prefers the tightest distance threshold that costs at most
`distance_coverage_tolerance` of calibration coverage.

Each alpha of the frontier is certified separately: each claim holds with probability >= 1 -
delta on its own, not all of them simultaneously.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import special

from tracer_pipeline.gate.features import (
    acceptor_features,
    build_reference_set,
    fit_acceptor,
)
from tracer_pipeline.gate.policy import RoutingPolicy
from tracer_pipeline.gate.statistics import (
    agreement_p_value,
    clopper_pearson_lower,
    fixed_sequence_select,
    minimum_trials_to_certify,
)
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
        min_score_coverage: the strictest score threshold handles this share of validation.
        distance_quantiles: distance thresholds, as quantiles of the validation traces'
            distances to the nearest training prototype (1.0 = the farthest validation trace).
        distance_coverage_tolerance: calibration coverage the gate gives up, at most, to use a
            tighter distance threshold (protection against traffic calibration never saw).
        reference_per_label: prototypes per label for the nearest-neighbour features.
        min_label_count: labels seen fewer times in training are never handled.
        acceptor_folds: folds of cross-fitting on validation, for honest candidate comparison
            and for the testing order.
        acceptor_regularisation: C of the acceptor's logistic regression.
        random_state: seed for the acceptor folds and the prototypes.
    """

    alpha: float = 0.95
    delta: float = 0.05
    frontier_alphas: tuple[float, ...] = (0.80, 0.85, 0.90, 0.95, 0.99)
    per_label_floor: bool = False
    score_grid_size: int = 100
    min_score_coverage: float = 0.02
    distance_quantiles: tuple[float, ...] = (0.95, 0.98, 0.99, 1.0)
    distance_coverage_tolerance: float = 0.01
    reference_per_label: int = 16
    min_label_count: int = 3
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
        if not self.distance_quantiles or any(
            not 0.0 < value <= 1.0 for value in self.distance_quantiles
        ):
            raise ValueError(f"distance quantiles must lie in (0, 1], got "
                             f"{self.distance_quantiles}")
        if self.score_grid_size < 1 or self.reference_per_label < 1:
            raise ValueError("score_grid_size and reference_per_label must be positive")


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
        candidates: per candidate: name, kind, fit_seconds, validation accuracy, validation
            coverage and agreement at alpha (cross-fitted acceptor), whether chosen.
        frontier: per alpha of the frontier: alpha, coverage_certified, threshold,
            distance_threshold, agreement_lower_bound, refused.
        policy: the deployable router (None when refused).
        distance_threshold: the distance threshold of the chosen rule (None when refused).
        details: further JSON-able facts (sizes, per-label thresholds, testing statistics).
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


@dataclass
class _Evaluated:
    """A candidate's surrogate, acceptor inputs and agreement on one split."""

    features: dict[str, np.ndarray]
    agrees: np.ndarray


@dataclass
class _Family:
    """The (score threshold, distance threshold) hypotheses, fixed before calibration."""

    score_thresholds: np.ndarray  # (n_score,), strictest first
    score_coverages: np.ndarray  # validation coverage level of each score threshold
    distance_thresholds: np.ndarray  # (n_distance,), tightest first


@dataclass
class _Certified:
    """The rule chosen among the certified hypotheses for one alpha (or one label)."""

    score_index: int
    distance_index: int
    handled: int
    agreements: int
    n_rejected: int


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


def _evaluate(
    candidate: FittedCandidate, X: np.ndarray, y: np.ndarray, reference
) -> _Evaluated:
    probabilities = candidate.predict_proba(X)
    features = acceptor_features(probabilities, X, reference)
    agrees = candidate.label_space[features["predicted"]] == y
    return _Evaluated(features, agrees)


def _subset(features: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in features.items()}


def _cross_fitted_scores(
    evaluated: _Evaluated, n_labels: int, config: GateConfig
) -> np.ndarray:
    """Acceptor scores on validation, each from an acceptor fitted without that trace."""
    n_rows = evaluated.agrees.size
    n_folds = min(config.acceptor_folds, n_rows // 2)
    if n_folds < 2:
        acceptor = fit_acceptor(evaluated.features, evaluated.agrees, n_labels,
                                config.acceptor_regularisation)
        return acceptor.score(evaluated.features)
    order = np.random.default_rng(config.random_state).permutation(n_rows)
    scores = np.empty(n_rows)
    for fold in range(n_folds):
        held_out = order[fold::n_folds]
        kept = np.setdiff1d(order, held_out)
        acceptor = fit_acceptor(_subset(evaluated.features, kept), evaluated.agrees[kept],
                                n_labels, config.acceptor_regularisation)
        scores[held_out] = acceptor.score(_subset(evaluated.features, held_out))
    return scores


def _best_prefix(
    scores: np.ndarray, agrees: np.ndarray, alpha: float, delta: float
) -> tuple[float, float | None]:
    """Largest share handled (highest scores first) whose agreement bound reaches alpha."""
    if agrees.size == 0:
        return 0.0, None
    order = np.argsort(-scores, kind="stable")
    cumulative = np.cumsum(agrees[order])
    best_coverage, best_agreement = 0.0, None
    # Clopper–Pearson bounds are monotone enough that a coarse scan suffices here.
    for handled in np.unique(np.linspace(1, agrees.size, min(agrees.size, 200)).astype(int)):
        successes = int(cumulative[handled - 1])
        if clopper_pearson_lower(successes, handled, delta) >= alpha:
            best_coverage = handled / agrees.size
            best_agreement = successes / handled
    return best_coverage, best_agreement


def _thresholds_at(scores: np.ndarray, coverages: np.ndarray) -> np.ndarray:
    """Score thresholds that handle about the given shares of `scores` (highest first)."""
    ordered = np.sort(scores)[::-1]
    positions = np.clip(np.ceil(coverages * ordered.size).astype(int) - 1, 0, ordered.size - 1)
    thresholds = ordered[positions].astype(np.float64)
    thresholds[coverages >= 1.0] = 0.0  # the loosest score threshold handles every score
    return thresholds


def _build_family(
    validation_scores: np.ndarray, validation_distances: np.ndarray, config: GateConfig
) -> _Family:
    """Score thresholds from validation-score quantiles, distances from distance quantiles."""
    coverages = np.linspace(config.min_score_coverage, 1.0, config.score_grid_size)
    thresholds = _thresholds_at(validation_scores, coverages)
    _, first = np.unique(thresholds, return_index=True)
    kept = np.sort(first)  # coverages ascend, so this is strictest first
    distances = np.quantile(validation_distances, sorted(config.distance_quantiles))
    return _Family(
        score_thresholds=thresholds[kept],
        score_coverages=coverages[kept],
        distance_thresholds=np.unique(distances),
    )


def _handled_counts(
    scores: np.ndarray, distances: np.ndarray, agrees: np.ndarray, eligible: np.ndarray,
    family: _Family,
) -> tuple[np.ndarray, np.ndarray]:
    """Handled traces and agreements for every hypothesis, arrays (n_score, n_distance)."""
    n_score, n_distance = family.score_thresholds.size, family.distance_thresholds.size
    handled = np.zeros((n_score, n_distance), dtype=np.int64)
    agreements = np.zeros((n_score, n_distance), dtype=np.int64)
    passes_score = scores[None, :] >= family.score_thresholds[:, None]
    for column, distance in enumerate(family.distance_thresholds):
        mask = passes_score & ((distances <= distance) & eligible)[None, :]
        handled[:, column] = mask.sum(axis=1)
        agreements[:, column] = (mask & agrees[None, :]).sum(axis=1)
    return handled, agreements


def _testing_order(
    expected_handled: np.ndarray, expected_agreement: np.ndarray, n_calibration: int,
    alpha: float,
) -> np.ndarray:
    """Order hypotheses by the p-value expected at calibration size, smallest first.

    The expectation is computed from cross-fitted validation scores only, so the order is
    fixed before any calibration trace is read (required by fixed-sequence testing). Ties go to
    the stricter hypothesis.
    """
    trials = expected_handled * n_calibration
    successes = expected_agreement * trials
    with np.errstate(invalid="ignore", divide="ignore"):
        # P(Binomial(n, alpha) >= k) = I_alpha(k, n - k + 1), continued to real n and k.
        expected_p = special.betainc(np.maximum(successes, 1e-9),
                                     np.maximum(trials - successes + 1, 1e-9), alpha)
    expected_p = np.where(trials >= 1, expected_p, 1.0)
    n_score, n_distance = expected_handled.shape
    strictness = np.add.outer(np.arange(n_score), np.arange(n_distance)).ravel()
    return np.lexsort((strictness, expected_p.ravel()))


def _certify(
    handled: np.ndarray, agreements: np.ndarray, order: np.ndarray, alpha: float,
    delta: float, n_total: int, coverage_tolerance: float,
) -> _Certified | None:
    """Fixed-sequence test in `order`; choose among the certified hypotheses.

    Among all rejected (certified) hypotheses, any choice keeps the guarantee. The gate takes the
    tightest distance threshold whose best certified coverage is within `coverage_tolerance` of
    the best overall, then the largest coverage at that distance.
    """
    flat_handled, flat_agreements = handled.ravel(), agreements.ravel()
    p_values = []
    for index in order:
        p_value = agreement_p_value(int(flat_agreements[index]), int(flat_handled[index]), alpha)
        p_values.append(p_value)
        if p_value > delta:
            break
    last = fixed_sequence_select(p_values, delta)
    if last < 0:
        return None
    rejected = order[: last + 1]
    coverage = flat_handled[rejected] / max(n_total, 1)
    n_distance = handled.shape[1]
    distance_index = rejected % n_distance
    best = coverage.max()
    acceptable = coverage >= best - coverage_tolerance
    tightest = distance_index[acceptable].min()
    at_tightest = np.flatnonzero(acceptable & (distance_index == tightest))
    chosen = rejected[at_tightest[np.argmax(coverage[at_tightest])]]
    return _Certified(
        score_index=int(chosen // n_distance),
        distance_index=int(chosen % n_distance),
        handled=int(flat_handled[chosen]),
        agreements=int(flat_agreements[chosen]),
        n_rejected=int(last + 1),
    )


def _check_inputs(
    candidates: Sequence[FittedCandidate], X_train, y_train, X_val, y_val, X_cal, y_cal
) -> tuple:
    if not candidates:
        raise ValueError("run_gate needs at least one fitted candidate")
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


def _refusal(reason: str, candidate: str, n_calibration: int, config: GateConfig,
             candidates: list[dict], frontier: list[dict], details: dict) -> GateOutcome:
    LOGGER.warning("parity gate refuses: %s", reason)
    return GateOutcome(
        decision=REFUSE, reason=reason, candidate=candidate, threshold=None,
        agreement_lower_bound=None, coverage_calibration=0.0, agreement_calibration=None,
        n_calibration=n_calibration, alpha=config.alpha, delta=config.delta,
        candidates=candidates, frontier=frontier, policy=None, details=details,
    )


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

    Steps: (1) per candidate, an acceptor is cross-fitted on validation and the candidate's
    validation coverage at alpha is measured with those honest scores; the candidate with the
    largest coverage wins (then accuracy, then fit time). (2) The winner's acceptor is refitted
    on all validation traces, and the family of (score, distance) thresholds and its testing
    order are fixed from validation. (3) On calibration, exact binomial p-values are tested in
    that order (fixed-sequence Learn-then-Test) for alpha and for each frontier alpha.

    Guarantee (see the module docstring for the assumption): when the decision is "deploy",
    with probability >= 1 - delta the deployed rule's agreement on handled traffic is >= alpha.
    With `per_label_floor`, the same holds for each handled label separately.

    Args:
        candidates: fitted on the training split (all with the same label space).
        X_train, y_train: the training split the candidates were fitted on.
        X_val, y_val: validation split (acceptor, candidate choice, grid and order).
        X_cal, y_cal: calibration split, used only for the certificate.
        config: gate settings.
        embedding_model: name of the embedder, stored in the policy.

    Returns:
        The outcome; `policy` is the deployable router when the decision is "deploy".

    Raises:
        ValueError: on inputs that cannot be gated (no candidates, a single label, fewer than
            two validation traces, mismatched shapes).
    """
    label_space, X_train, y_train, X_val, y_val, X_cal, y_cal = _check_inputs(
        candidates, X_train, y_train, X_val, y_val, X_cal, y_cal
    )
    n_labels = label_space.size
    n_calibration = X_cal.shape[0]
    alphas = sorted(set(config.frontier_alphas) | {config.alpha})

    # 1. Reference prototypes of training traces, shared by every candidate.
    train_codes = _codes(y_train, label_space)
    known = train_codes >= 0
    reference = build_reference_set(X_train[known], train_codes[known], n_labels,
                                    config.reference_per_label, config.random_state)
    label_counts = reference.label_counts

    # 2. Compare candidates on validation with cross-fitted acceptors.
    summaries, evaluations, honest_scores = [], [], []
    for candidate in candidates:
        evaluated = _evaluate(candidate, X_val, y_val, reference)
        scores = _cross_fitted_scores(evaluated, n_labels, config)
        coverage, agreement = _best_prefix(scores, evaluated.agrees, config.alpha, config.delta)
        evaluations.append(evaluated)
        honest_scores.append(scores)
        summaries.append({
            "name": candidate.spec.name,
            "kind": candidate.spec.kind,
            "fit_seconds": round(candidate.fit_seconds, 3),
            "validation_accuracy": float(evaluated.agrees.mean()),
            "validation_coverage_at_alpha": float(coverage),
            "validation_agreement_at_alpha": agreement,
            "chosen": False,
        })
    ranking = sorted(
        range(len(candidates)),
        key=lambda i: (-summaries[i]["validation_coverage_at_alpha"],
                       -summaries[i]["validation_accuracy"], summaries[i]["fit_seconds"]),
    )
    chosen_index = ranking[0]
    summaries[chosen_index]["chosen"] = True
    chosen = candidates[chosen_index]
    validation = evaluations[chosen_index]
    LOGGER.info("chose %s (validation coverage %.3f at alpha %.2f)", chosen.spec.name,
                summaries[chosen_index]["validation_coverage_at_alpha"], config.alpha)

    # 3. Final acceptor on all validation traces; the family and its order from validation.
    acceptor = fit_acceptor(validation.features, validation.agrees, n_labels,
                            config.acceptor_regularisation)
    validation_scores = acceptor.score(validation.features)
    family = _build_family(validation_scores, validation.features["knn_distance"], config)
    # The same coverage levels on cross-fitted scores give honest estimates for the order.
    honest_family = _Family(
        _thresholds_at(honest_scores[chosen_index], family.score_coverages),
        family.score_coverages, family.distance_thresholds,
    )
    validation_eligible = label_counts[validation.features["predicted"]] >= config.min_label_count
    expected_handled, expected_agreements = _handled_counts(
        honest_scores[chosen_index], validation.features["knn_distance"], validation.agrees,
        validation_eligible, honest_family,
    )
    n_validation = validation.agrees.size
    expected_coverage = expected_handled / n_validation
    expected_agreement = np.where(expected_handled > 0,
                                  expected_agreements / np.maximum(expected_handled, 1), 0.0)

    details = {
        "n_train": int(X_train.shape[0]),
        "n_validation": int(n_validation),
        "n_labels": int(n_labels),
        "score_grid_size": int(family.score_thresholds.size),
        "distance_grid": [float(value) for value in family.distance_thresholds],
        "embedding_model": embedding_model,
    }
    needed = minimum_trials_to_certify(config.alpha, config.delta)
    if n_calibration < needed:
        return _refusal(
            f"calibration split has {n_calibration} traces; certifying alpha={config.alpha} "
            f"with delta={config.delta} needs at least {needed} handled traces",
            chosen.spec.name, n_calibration, config, summaries,
            [_refused_point(alpha) for alpha in alphas], details,
        )

    # 4. Calibration: counts for every hypothesis, then fixed-sequence testing per alpha.
    calibration = _evaluate(chosen, X_cal, y_cal, reference)
    calibration_scores = acceptor.score(calibration.features)
    calibration_distances = calibration.features["knn_distance"]
    calibration_eligible = (
        label_counts[calibration.features["predicted"]] >= config.min_label_count
    )
    handled, agreements = _handled_counts(calibration_scores, calibration_distances,
                                          calibration.agrees, calibration_eligible, family)
    frontier, certified_by_alpha = [], {}
    for alpha in alphas:
        order = _testing_order(expected_coverage, expected_agreement, n_calibration, alpha)
        certified = _certify(handled, agreements, order, alpha, config.delta, n_calibration,
                             config.distance_coverage_tolerance)
        certified_by_alpha[alpha] = certified
        frontier.append(_frontier_point(alpha, certified, family, n_calibration, config.delta))
    frontier = [point for point in frontier if point["alpha"] in config.frontier_alphas]

    # 5. The rule at the main alpha: global, or one per label with the per-label floor.
    main_order = _testing_order(expected_coverage, expected_agreement, n_calibration,
                                config.alpha)
    if config.per_label_floor:
        label_scores, label_distances = _per_label_rules(
            calibration, calibration_scores, calibration_eligible, family, main_order, config,
            n_labels,
        )
        if not np.isfinite(label_scores).any():
            return _refusal(
                f"no label's agreement could be certified at alpha={config.alpha} with "
                f"delta={config.delta} split over {n_labels} labels",
                chosen.spec.name, n_calibration, config, summaries, frontier, details,
            )
        global_threshold, global_distance = math.inf, float(family.distance_thresholds[-1])
        details["label_score_thresholds"] = {
            str(label): float(value) for label, value in zip(label_space, label_scores)
            if np.isfinite(value)
        }
        details["labels_certified"] = int(np.isfinite(label_scores).sum())
        predicted = calibration.features["predicted"]
        rule = ((calibration_scores >= label_scores[predicted])
                & (calibration_distances <= label_distances[predicted]) & calibration_eligible)
        n_handled, n_agree = int(rule.sum()), int((rule & calibration.agrees).sum())
        outcome_threshold, outcome_distance = None, None
    else:
        certified = certified_by_alpha[config.alpha]
        if certified is None:
            best_bound = _best_bound(handled, agreements, config.delta)
            return _refusal(
                f"no (score, distance) threshold could be certified at alpha={config.alpha} "
                f"with delta={config.delta} on {n_calibration} calibration traces (highest "
                f"Clopper–Pearson lower bound of any rule with >= {needed} handled traces: "
                f"{best_bound:.4f})",
                chosen.spec.name, n_calibration, config, summaries, frontier, details,
            )
        global_threshold = float(family.score_thresholds[certified.score_index])
        global_distance = float(family.distance_thresholds[certified.distance_index])
        label_scores = np.full(n_labels, global_threshold)
        label_distances = np.full(n_labels, global_distance)
        n_handled, n_agree = certified.handled, certified.agreements
        outcome_threshold, outcome_distance = global_threshold, global_distance
        details["hypotheses_certified"] = certified.n_rejected

    lower_bound = clopper_pearson_lower(n_agree, n_handled, config.delta)
    metadata = {
        "agreement_lower_bound": lower_bound,
        "coverage_calibration": n_handled / n_calibration,
        "n_calibration": n_calibration,
        "per_label_floor": config.per_label_floor,
    }
    policy = RoutingPolicy(
        label_space=[str(label) for label in label_space],
        threshold=global_threshold,
        alpha=config.alpha,
        delta=config.delta,
        surrogate_name=chosen.spec.name,
        surrogate_kind=chosen.kind,
        surrogate_arrays=chosen.arrays,
        reference=reference,
        acceptor=acceptor,
        distance_threshold=global_distance,
        label_score_thresholds=label_scores.astype(np.float64),
        label_distance_thresholds=label_distances.astype(np.float64),
        min_label_count=config.min_label_count,
        embedding_model=embedding_model,
        metadata=metadata,
    )
    LOGGER.info("parity gate deploys %s: coverage %.3f on calibration, agreement lower bound "
                "%.4f at alpha %.2f", chosen.spec.name, n_handled / n_calibration, lower_bound,
                config.alpha)
    return GateOutcome(
        decision=DEPLOY,
        reason=None,
        candidate=chosen.spec.name,
        threshold=outcome_threshold,
        agreement_lower_bound=lower_bound,
        coverage_calibration=n_handled / n_calibration,
        agreement_calibration=n_agree / n_handled if n_handled else None,
        n_calibration=n_calibration,
        alpha=config.alpha,
        delta=config.delta,
        candidates=summaries,
        frontier=frontier,
        policy=policy,
        distance_threshold=outcome_distance,
        details=details,
    )


def _refused_point(alpha: float) -> dict:
    return {"alpha": alpha, "coverage_certified": 0.0, "threshold": None,
            "distance_threshold": None, "agreement_lower_bound": None, "refused": True}


def _frontier_point(alpha: float, certified: _Certified | None, family: _Family,
                    n_calibration: int, delta: float) -> dict:
    if certified is None:
        return _refused_point(alpha)
    return {
        "alpha": alpha,
        "coverage_certified": certified.handled / n_calibration,
        "threshold": float(family.score_thresholds[certified.score_index]),
        "distance_threshold": float(family.distance_thresholds[certified.distance_index]),
        "agreement_lower_bound": clopper_pearson_lower(certified.agreements, certified.handled,
                                                       delta),
        "refused": False,
    }


def _best_bound(handled: np.ndarray, agreements: np.ndarray, delta: float) -> float:
    """Highest Clopper–Pearson bound over hypotheses, for the refusal message only."""
    flat_handled, flat_agreements = handled.ravel(), agreements.ravel()
    best = 0.0
    for index in np.argsort(-flat_agreements / np.maximum(flat_handled, 1))[:50]:
        if flat_handled[index] > 0:
            best = max(best, clopper_pearson_lower(int(flat_agreements[index]),
                                                   int(flat_handled[index]), delta))
    return best


def _per_label_rules(
    calibration: _Evaluated, calibration_scores: np.ndarray, eligible: np.ndarray,
    family: _Family, order: np.ndarray, config: GateConfig, n_labels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Certify each predicted label on its own calibration traces at delta / n_labels.

    By Bonferroni, with probability >= 1 - delta every certified label's agreement is >= alpha
    at once, hence so is the agreement of their union. Labels with no certified hypothesis get
    an infinite score threshold (never handled).
    """
    label_delta = config.delta / n_labels
    predicted = calibration.features["predicted"]
    distances = calibration.features["knn_distance"]
    score_thresholds = np.full(n_labels, np.inf)
    distance_thresholds = np.full(n_labels, float(family.distance_thresholds[-1]))
    needed = minimum_trials_to_certify(config.alpha, label_delta)
    for label in np.unique(predicted):
        rows = np.flatnonzero(predicted == label)
        if rows.size < needed:
            continue
        handled, agreements = _handled_counts(
            calibration_scores[rows], distances[rows], calibration.agrees[rows], eligible[rows],
            family,
        )
        certified = _certify(handled, agreements, order, config.alpha, label_delta, rows.size,
                             config.distance_coverage_tolerance)
        if certified is not None:
            score_thresholds[label] = family.score_thresholds[certified.score_index]
            distance_thresholds[label] = family.distance_thresholds[certified.distance_index]
    return score_thresholds, distance_thresholds
