"""The gate's guarantee on real data: repeated split-and-calibrate on Banking77.

Candidates are fitted once on a fixed part of Banking77's training split; the remaining traces
are re-split at random, many times, into validation, calibration and unseen traces (all
exchangeable, as the guarantee assumes). Each repetition runs the gate at alpha 0.90 and 0.95
and routes the unseen traces. The share of repetitions whose realised agreement on the unseen
handled traces falls below alpha must not exceed delta, up to the binomial sampling error of
that share (three standard deviations). The realised agreement itself is measured on a finite
unseen set, which only makes the check stricter.

To show that the check can fail, the same repetitions also score a rule chosen without
multiplicity control or bound (the loosest threshold whose calibration agreement reaches
alpha): at alpha 0.95, where the threshold binds, it must fail far more often than allowed.

Reads embeddings cached by `benchmarks/embedding_cache.py` (embeds Banking77, about two minutes
on two cores, when the cache is cold). Skipped when the datasets folder is missing.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from tracer_pipeline import settings
from tracer_pipeline.gate import calibration
from tracer_pipeline.gate.calibration import GateConfig, certify_alpha, prepare_gate
from tracer_pipeline.gate.features import acceptor_features, atypicality
from tracer_pipeline.surrogates.candidates import CandidateSpec, fit_candidates
from tracer_pipeline.surrogates.splits import assign_splits

pytestmark = pytest.mark.slow

ALPHAS = (0.90, 0.95)
DELTA = 0.05
REPETITIONS = 60
SIZES = {"validation": 1000, "calibration": 1500}


@pytest.fixture(scope="module")
def banking77():
    folder = settings.datasets_dir()
    if not (folder / "banking77" / "banking77.parquet").exists():
        missing = (f"Banking77 not found under {folder}; set TRACER_DATASETS_DIR to the "
                   "shared datasets folder")
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the validity test: {missing}")
        pytest.skip(missing)
    from benchmarks.embedding_cache import cached_embeddings, load_dataset

    frame = load_dataset("banking77", folder)
    X = cached_embeddings("banking77", frame["text"].tolist())
    train = (frame["split"] == "train").to_numpy()
    return X[train], frame.loc[train, "label"].to_numpy(dtype=str), frame.loc[train, "text"]


def _naive_rule_agreement(evidence, alpha: float, X_unseen, y_unseen) -> float | None:
    """Unseen agreement of the loosest rule whose calibration point estimate reaches alpha."""
    item = evidence.candidates[0]
    rules = calibration._rules(item, alpha, evidence.config)
    point = rules.calibration_agreements / np.maximum(rules.calibration_handled, 1)
    reaching = np.flatnonzero((point >= alpha) & (rules.calibration_handled > 0))
    if reaching.size == 0:
        return None
    threshold = rules.score_thresholds[reaching.max()]
    probabilities = item.candidate.predict_proba(X_unseen)
    features = acceptor_features(probabilities, X_unseen, evidence.reference,
                                 item.prototype_weight)
    handled = ((item.acceptor.score(features) >= threshold)
               & (atypicality(features, item.atypicality_quantiles)
                  <= rules.atypicality_threshold))
    agrees = item.candidate.label_space[features["predicted"]] == y_unseen
    return float(agrees[handled].mean()) if handled.any() else None


def test_realised_agreement_falls_below_alpha_at_most_delta_of_the_time(banking77):
    X, y, texts = banking77
    fixed = assign_splits(texts.tolist(), {"train": 0.45, "calibration": 0.55}, salt="validity")
    train, pool = np.flatnonzero(fixed == "train"), np.flatnonzero(fixed == "calibration")
    candidates = fit_candidates(X[train], y[train], [CandidateSpec("sgd_softmax", "sgd")],
                                label_space=np.unique(y))
    config = GateConfig(alpha=ALPHAS[0], delta=DELTA, frontier_alphas=ALPHAS)

    rng = np.random.default_rng(2026)
    violations = {alpha: 0 for alpha in ALPHAS}
    deployed = {alpha: 0 for alpha in ALPHAS}
    naive_violations = {alpha: 0 for alpha in ALPHAS}
    for _ in range(REPETITIONS):
        order = rng.permutation(pool)
        validation = order[: SIZES["validation"]]
        calibration_rows = order[SIZES["validation"]: SIZES["validation"] + SIZES["calibration"]]
        unseen = order[SIZES["validation"] + SIZES["calibration"]:]
        evidence = prepare_gate(candidates, X[train], y[train], X[validation], y[validation],
                                X[calibration_rows], y[calibration_rows], config)
        for alpha in ALPHAS:
            outcome = certify_alpha(evidence, alpha)
            naive = _naive_rule_agreement(evidence, alpha, X[unseen], y[unseen])
            naive_violations[alpha] += naive is not None and naive < alpha
            if outcome.policy is None:
                continue
            deployed[alpha] += 1
            decisions = outcome.policy.decide(X[unseen])
            handled = decisions.handled
            agreement = float((decisions.labels[handled] == y[unseen][handled]).mean())
            violations[alpha] += agreement < alpha

    allowed = DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / REPETITIONS)
    for alpha in ALPHAS:
        # A gate that never deploys would pass trivially: it must deploy nearly always here.
        assert deployed[alpha] >= 0.9 * REPETITIONS, (alpha, deployed)
        assert violations[alpha] / deployed[alpha] <= allowed, (alpha, violations, deployed)
    # Where the threshold binds (at 0.90 the surrogate alone already agrees more than 90% of
    # the time), the unguarded rule fails about half the time: the check has power.
    assert naive_violations[0.95] / REPETITIONS > 2 * allowed, naive_violations
