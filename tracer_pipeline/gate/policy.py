"""The deployable router: the surrogate, the acceptor and the certified thresholds, numpy only.

A `RoutingPolicy` answers an input with the surrogate's label when the input is handled, and
defers it to the teacher LLM otherwise. The surrogate is the fitted candidate, its probabilities
mixed with the soft vote of the nearest training prototypes when `prototype_weight` > 0. An
input is handled when all of these hold:

- the predicted label was seen at least `min_label_count` times in training,
- the input's atypicality (mean rank of its distance to the nearest training prototype and of
  the surrogate's entropy, against validation traffic; see `features.atypicality`) is at most
  `atypicality_threshold`: inputs unlike the traffic the gate was calibrated on are deferred,
- the acceptor score is at least the score threshold of the predicted label
  (`label_score_thresholds`, +inf for a label that is never handled).

Without the per-label floor every label shares the same score threshold (`threshold`).

The thresholds come from `tracer_pipeline.gate.calibration.run_gate`, which certifies the
agreement of exactly this rule. Saving writes JSON plus an `.npz` read with `allow_pickle=False`,
so loading a policy can never run code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tracer_pipeline.gate.features import (
    NUMERIC_FEATURES,
    Acceptor,
    ReferenceSet,
    acceptor_features,
    atypicality,
)
from tracer_pipeline.surrogates.arrays import predict_proba_arrays

POLICY_FORMAT_VERSION = 3
# Version 2 had no prototype mix: it loads with prototype_weight 0, routing as it did.
READABLE_POLICY_FORMATS = (2, 3)
POLICY_JSON = "policy.json"
POLICY_ARRAYS = "policy.npz"

DEFER_FAR_FROM_TRAINING = "far_from_training"
DEFER_LABEL_RARELY_SEEN = "label_rarely_seen"
DEFER_LABEL_NOT_CERTIFIED = "label_not_certified"
DEFER_NEIGHBOURS_DISAGREE = "neighbours_disagree"
DEFER_LOW_CONFIDENCE = "low_confidence"

# Below this soft vote of the nearest training traces, a low score is blamed on the neighbours.
NEIGHBOURS_DISAGREE_BELOW = 0.5


@dataclass
class RoutingDecisions:
    """The router's answer for a batch.

    Attributes:
        labels: the surrogate's label for every row (str), also for deferred rows.
        handled: True where the surrogate may answer, False where the teacher must.
        score: the acceptor score (estimated chance of agreeing with the teacher).
    """

    labels: np.ndarray
    handled: np.ndarray
    score: np.ndarray


@dataclass
class RoutingPolicy:
    """A certified router over precomputed embeddings.

    Attributes:
        label_space: the labels, in the column order of the surrogate's probabilities.
        threshold: the global acceptor-score threshold (+inf when only per-label thresholds
            are used, i.e. with the per-label floor).
        alpha: the agreement level certified on handled traffic.
        delta: the allowed probability that the certification is wrong.
        surrogate_name: the candidate chosen as surrogate.
        surrogate_kind: its numpy forward pass.
        surrogate_arrays: its parameters.
        reference: per-label prototypes of the training embeddings.
        acceptor: the score model.
        atypicality_quantiles: (2, resolution) validation quantiles of the distance to the
            nearest training prototype and of the surrogate's entropy.
        atypicality_threshold: inputs whose atypicality exceeds this are deferred.
        label_score_thresholds: score threshold per predicted label (+inf: never handled).
        min_label_count: labels seen fewer times in training are never handled.
        prototype_weight: the surrogate's probabilities are mixed with the prototypes' soft
            vote at this weight before anything else (see `features.acceptor_features`).
        embedding_model: name of the embedder the policy expects.
        metadata: JSON-able facts about the calibration (bounds, sizes, dates).
    """

    label_space: list[str]
    threshold: float
    alpha: float
    delta: float
    surrogate_name: str
    surrogate_kind: str
    surrogate_arrays: dict[str, np.ndarray]
    reference: ReferenceSet
    acceptor: Acceptor
    atypicality_quantiles: np.ndarray
    atypicality_threshold: float
    label_score_thresholds: np.ndarray
    min_label_count: int = 1
    prototype_weight: float = 0.0
    embedding_model: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._labels_array = np.array(self.label_space, dtype=str)
        self._label_handleable = (
            self.reference.label_counts >= self.min_label_count
        ) & np.isfinite(self.label_score_thresholds)
        # Labels that can never be handled get an unreachable threshold.
        self._effective_thresholds = np.where(
            self._label_handleable, self.label_score_thresholds, np.inf
        )

    def _evaluate(
        self, X: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        expected = self.reference.prototypes.shape[1]
        if X.ndim != 2 or X.shape[1] != expected:
            raise ValueError(f"expected embeddings of shape (n, {expected}), got {X.shape}")
        probabilities = predict_proba_arrays(
            self.surrogate_kind, self.surrogate_arrays, X, len(self.label_space)
        )
        features = acceptor_features(probabilities, X, self.reference, self.prototype_weight)
        score = self.acceptor.score(features)
        typical = atypicality(features, self.atypicality_quantiles) <= self.atypicality_threshold
        handled = (score >= self._effective_thresholds[features["predicted"]]) & typical
        return features, score, typical, handled

    def decide(self, X: np.ndarray) -> RoutingDecisions:
        """Route a batch of embeddings (n, dimension); see the module docstring for the rule."""
        features, score, _, handled = self._evaluate(X)
        return RoutingDecisions(
            labels=self._labels_array[features["predicted"]], handled=handled, score=score
        )

    def explain(self, X: np.ndarray) -> pd.DataFrame:
        """One row per input: the label, the features behind the score, and why it was deferred.

        `defer_reason` is None for handled inputs, else the first that applies of
        "far_from_training" (atypical: far from the training traces or unlike any label),
        "label_rarely_seen", "label_not_certified", "neighbours_disagree"
        (score too low and the nearest training traces favour another label) and
        "low_confidence" (score too low).
        """
        features, score, typical, handled = self._evaluate(X)
        predicted = features["predicted"]
        reasons = np.full(score.shape[0], DEFER_LOW_CONFIDENCE, dtype=object)
        reasons[features["knn_agreement"] < NEIGHBOURS_DISAGREE_BELOW] = DEFER_NEIGHBOURS_DISAGREE
        not_certified = ~np.isfinite(self.label_score_thresholds[predicted])
        reasons[not_certified] = DEFER_LABEL_NOT_CERTIFIED
        rare = self.reference.label_counts[predicted] < self.min_label_count
        reasons[rare] = DEFER_LABEL_RARELY_SEEN
        reasons[~typical] = DEFER_FAR_FROM_TRAINING
        reasons[handled] = None
        table = pd.DataFrame({"predicted": self._labels_array[predicted]})
        for name in NUMERIC_FEATURES:
            table[name] = features[name]
        table["score"] = score
        table["handled"] = handled
        table["defer_reason"] = reasons
        return table

    def save(self, folder: Path) -> None:
        """Write `policy.json` and `policy.npz` (plain arrays, no pickled objects)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"surrogate__{key}": value for key, value in self.surrogate_arrays.items()}
        arrays.update({
            "reference__prototypes": self.reference.prototypes,
            "reference__label_present": self.reference.label_present,
            "reference__label_counts": self.reference.label_counts,
            "acceptor__mean": self.acceptor.mean,
            "acceptor__scale": self.acceptor.scale,
            "acceptor__weights": self.acceptor.weights,
            "acceptor__label_bias": self.acceptor.label_bias,
            "label_score_thresholds": self.label_score_thresholds,
            "atypicality_quantiles": self.atypicality_quantiles,
        })
        np.savez(folder / POLICY_ARRAYS, **arrays)
        description = {
            "format_version": POLICY_FORMAT_VERSION,
            "label_space": list(self.label_space),
            "threshold": _json_float(self.threshold),
            "alpha": self.alpha,
            "delta": self.delta,
            "surrogate_name": self.surrogate_name,
            "surrogate_kind": self.surrogate_kind,
            "reference_per_label": self.reference.per_label,
            "acceptor_intercept": self.acceptor.intercept,
            "acceptor_features": list(NUMERIC_FEATURES),
            "atypicality_threshold": _json_float(self.atypicality_threshold),
            "min_label_count": self.min_label_count,
            "prototype_weight": self.prototype_weight,
            "embedding_model": self.embedding_model,
            "metadata": self.metadata,
        }
        (folder / POLICY_JSON).write_text(json.dumps(description, indent=2))

    @classmethod
    def load(cls, folder: Path) -> RoutingPolicy:
        """Read a policy written by `save`; refuses pickled content."""
        folder = Path(folder)
        description = json.loads((folder / POLICY_JSON).read_text())
        if description.get("format_version") not in READABLE_POLICY_FORMATS:
            raise ValueError(f"unsupported policy format {description.get('format_version')}")
        if tuple(description["acceptor_features"]) != NUMERIC_FEATURES:
            raise ValueError("policy was saved with a different acceptor feature list")
        with np.load(folder / POLICY_ARRAYS, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        prefix = "surrogate__"
        surrogate_arrays = {
            key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)
        }
        return cls(
            label_space=list(description["label_space"]),
            threshold=_from_json_float(description["threshold"]),
            alpha=float(description["alpha"]),
            delta=float(description["delta"]),
            surrogate_name=description["surrogate_name"],
            surrogate_kind=description["surrogate_kind"],
            surrogate_arrays=surrogate_arrays,
            reference=ReferenceSet(
                prototypes=arrays["reference__prototypes"],
                per_label=int(description["reference_per_label"]),
                label_present=arrays["reference__label_present"],
                label_counts=arrays["reference__label_counts"],
            ),
            acceptor=Acceptor(
                mean=arrays["acceptor__mean"],
                scale=arrays["acceptor__scale"],
                weights=arrays["acceptor__weights"],
                label_bias=arrays["acceptor__label_bias"],
                intercept=float(description["acceptor_intercept"]),
            ),
            atypicality_quantiles=arrays["atypicality_quantiles"],
            atypicality_threshold=_from_json_float(description["atypicality_threshold"]),
            label_score_thresholds=arrays["label_score_thresholds"],
            min_label_count=int(description["min_label_count"]),
            prototype_weight=float(description.get("prototype_weight", 0.0)),
            embedding_model=description["embedding_model"],
            metadata=description["metadata"],
        )


def _json_float(value: float) -> float | str:
    """Strict JSON has no infinity; write it as a string."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _from_json_float(value: float | str) -> float:
    return float(value)
