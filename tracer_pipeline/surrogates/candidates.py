"""Candidate surrogates on frozen sentence embeddings: specs, fitting, and a cache on disk.

Each candidate is fitted once per refit with scikit-learn and then exported to numpy arrays
(see `tracer_pipeline.surrogates.arrays`); predictions always come from those arrays, so what the
gate calibrates is exactly what the deployed router computes.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracer_pipeline.surrogates import arrays as surrogate_arrays

LOGGER = logging.getLogger(__name__)

LOGISTIC = "logistic"
SGD = "sgd"
KNN = "knn"
MLP = "mlp"
RANDOM_FOREST = "random_forest"
EXTRA_TREES = "extra_trees"
CANDIDATE_KINDS = (LOGISTIC, SGD, KNN, MLP, RANDOM_FOREST, EXTRA_TREES)


@dataclass(frozen=True)
class CandidateSpec:
    """What to fit: a unique `name`, a `kind` from `CANDIDATE_KINDS` and its `params`."""

    name: str
    kind: str
    params: dict = field(default_factory=dict)


def default_candidate_specs(include_trees: bool = False) -> list[CandidateSpec]:
    """Return the default candidates, cheapest first.

    Logistic regression on standardised embeddings over a small grid of C, a linear model fitted
    by SGD, cosine kNN on the unit embeddings and a one-hidden-layer MLP. Trees (random forest,
    extra trees) are opt-in: on dense 384-d embeddings they are slower and rarely better.
    """
    specs = [
        CandidateSpec("logistic_C0.5", LOGISTIC, {"C": 0.5}),
        CandidateSpec("logistic_C2", LOGISTIC, {"C": 2.0}),
        CandidateSpec("sgd_log", SGD, {"alpha": 1e-4}),
        CandidateSpec("knn_10", KNN, {"k": 10}),
        CandidateSpec("mlp_512", MLP, {"hidden": 512, "alpha": 1e-3, "max_iter": 60}),
    ]
    if include_trees:
        specs += [
            CandidateSpec("random_forest", RANDOM_FOREST, {"n_trees": 100, "max_depth": 24}),
            CandidateSpec("extra_trees", EXTRA_TREES, {"n_trees": 100, "max_depth": 24}),
        ]
    return specs


@dataclass
class FittedCandidate:
    """A fitted candidate surrogate, held as numpy arrays.

    Attributes:
        spec: what was fitted.
        label_space: sorted string labels; the columns of `predict_proba`.
        fit_seconds: wall time of the fit, in seconds.
        kind: the numpy forward pass (see `tracer_pipeline.surrogates.arrays`).
        arrays: the exported parameters.
    """

    spec: CandidateSpec
    label_space: np.ndarray
    fit_seconds: float
    kind: str = ""
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n, len(label_space)); labels the candidate never saw get 0."""
        return surrogate_arrays.predict_proba_arrays(
            self.kind, self.arrays, X, len(self.label_space)
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable label per row."""
        return self.label_space[np.argmax(self.predict_proba(X), axis=1)]


def _standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-8] = 1.0
    return mean, scale


def _fold_standardisation(
    weights: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rewrite W·((x - mean)/scale) + b as W'·x + b' so prediction needs no scaler."""
    folded_weights = weights / scale[:, None]
    folded_bias = bias - (mean / scale) @ weights
    return folded_weights.astype(np.float32), folded_bias.astype(np.float32)


def _binary_as_two_columns(weights: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A one-output binary model as two softmax logits [0, z]."""
    return (
        np.hstack([np.zeros_like(weights), weights]),
        np.concatenate([np.zeros_like(bias), bias]),
    )


def _fit_linear(spec: CandidateSpec, X: np.ndarray, codes: np.ndarray, seed: int) -> tuple:
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    mean, scale = _standardisation(X)
    standardised = (X - mean) / scale
    if spec.kind == LOGISTIC:
        model = LogisticRegression(
            C=float(spec.params.get("C", 1.0)), max_iter=int(spec.params.get("max_iter", 300)),
            tol=float(spec.params.get("tol", 1e-3)),
        )
    else:
        model = SGDClassifier(
            loss="log_loss", alpha=float(spec.params.get("alpha", 1e-4)),
            max_iter=int(spec.params.get("max_iter", 30)), tol=1e-4, random_state=seed,
        )
    with warnings.catch_warnings():
        # Not reaching the tolerance within max_iter is a speed trade-off we accept.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        model.fit(standardised, codes)
    weights = model.coef_.T.astype(np.float64)
    bias = np.atleast_1d(model.intercept_).astype(np.float64)
    kind = surrogate_arrays.LINEAR_SOFTMAX if spec.kind == LOGISTIC else surrogate_arrays.LINEAR_OVR
    if weights.shape[1] == 1:
        weights, bias = _binary_as_two_columns(weights, bias)
        kind = surrogate_arrays.LINEAR_SOFTMAX
    weights, bias = _fold_standardisation(weights, bias, mean, scale)
    return kind, {"weights": weights, "bias": bias, "columns": model.classes_.astype(np.int64)}


def _fit_mlp(spec: CandidateSpec, X: np.ndarray, codes: np.ndarray, seed: int) -> tuple:
    from sklearn.neural_network import MLPClassifier

    mean, scale = _standardisation(X)
    model = MLPClassifier(
        hidden_layer_sizes=(int(spec.params.get("hidden", 512)),),
        alpha=float(spec.params.get("alpha", 1e-3)),
        max_iter=int(spec.params.get("max_iter", 60)),
        batch_size=int(spec.params.get("batch_size", 128)),
        learning_rate_init=float(spec.params.get("learning_rate", 1e-3)),
        early_stopping=False,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*converge.*")
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit((X - mean) / scale, codes)
    layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in
              zip(model.coefs_, model.intercepts_)]
    if layers[-1][0].shape[1] == 1:
        layers[-1] = _binary_as_two_columns(*layers[-1])
    exported: dict[str, np.ndarray] = {"n_layers": np.array(len(layers))}
    first_weights, first_bias = _fold_standardisation(layers[0][0], layers[0][1], mean, scale)
    exported["weights_0"], exported["bias_0"] = first_weights, first_bias
    for index, (weights, bias) in enumerate(layers[1:], start=1):
        exported[f"weights_{index}"] = weights.astype(np.float32)
        exported[f"bias_{index}"] = bias.astype(np.float32)
    exported["columns"] = model.classes_.astype(np.int64)
    return surrogate_arrays.MLP_RELU, exported


def _fit_knn(spec: CandidateSpec, X: np.ndarray, codes: np.ndarray) -> tuple:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    present = np.unique(codes)
    return surrogate_arrays.NEAREST_NEIGHBOURS, {
        "reference": np.ascontiguousarray(X / norms, dtype=np.float32),
        "reference_columns": np.searchsorted(present, codes).astype(np.int64),
        "n_outputs": np.array(present.size),
        "k": np.array(int(spec.params.get("k", 10))),
        "columns": present.astype(np.int64),
    }


def _fit_trees(spec: CandidateSpec, X: np.ndarray, codes: np.ndarray, seed: int) -> tuple:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    estimator = RandomForestClassifier if spec.kind == RANDOM_FOREST else ExtraTreesClassifier
    model = estimator(
        n_estimators=int(spec.params.get("n_trees", 100)),
        max_depth=int(spec.params.get("max_depth", 24)),
        n_jobs=int(spec.params.get("n_jobs", 2)),
        random_state=seed,
    )
    model.fit(X, codes)
    features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
    offset = 0
    for tree in (member.tree_ for member in model.estimators_):
        is_leaf = tree.children_left < 0
        features.append(np.where(is_leaf, -1, tree.feature))
        thresholds.append(tree.threshold)
        lefts.append(np.where(is_leaf, -1, tree.children_left + offset))
        rights.append(np.where(is_leaf, -1, tree.children_right + offset))
        leaf = tree.value[:, 0, :]
        values.append(leaf / np.maximum(leaf.sum(axis=1, keepdims=True), 1e-12))
        roots.append(offset)
        offset += tree.node_count
    return surrogate_arrays.TREE_ENSEMBLE, {
        "feature": np.concatenate(features).astype(np.int64),
        "threshold": np.concatenate(thresholds).astype(np.float64),
        "left": np.concatenate(lefts).astype(np.int64),
        "right": np.concatenate(rights).astype(np.int64),
        "value": np.concatenate(values).astype(np.float32),
        "roots": np.array(roots, dtype=np.int64),
        "max_depth": np.array(max(member.tree_.max_depth for member in model.estimators_)),
        "columns": model.classes_.astype(np.int64),
    }


def _check_training_data(X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array of embeddings, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have one label per row of X: {y.shape} vs {X.shape[0]} rows")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    if np.unique(y).size < 2:
        raise ValueError("need at least two distinct teacher labels to fit a surrogate")


def fit_candidates(
    X: np.ndarray,
    y: np.ndarray,
    specs: Sequence[CandidateSpec],
    time_budget_s: float | None = None,
    random_state: int = 0,
    label_space: Sequence[str] | None = None,
) -> list[FittedCandidate]:
    """Fit each candidate once on (X, y) and export it to numpy arrays.

    Args:
        X: training embeddings, shape (n, dimension).
        y: teacher labels (str), shape (n,).
        specs: candidates to fit, in order.
        time_budget_s: once this many seconds have passed, no new candidate is started (the
            running one finishes); the skipped ones are logged. None means no budget.
        random_state: seed for the stochastic fitters.
        label_space: labels the probabilities should cover (sorted); default the labels of y.
            Labels in y must be part of it.

    Returns:
        The fitted candidates, in the order of `specs` (skipped ones omitted).
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(str)
    _check_training_data(X, y)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}")
    labels = np.unique(y) if label_space is None else np.array(sorted(set(label_space)), dtype=str)
    codes = np.searchsorted(labels, y)
    if np.any(codes >= labels.size) or np.any(labels[np.minimum(codes, labels.size - 1)] != y):
        raise ValueError("every training label must belong to label_space")

    started = time.perf_counter()
    fitted: list[FittedCandidate] = []
    for position, spec in enumerate(specs):
        elapsed = time.perf_counter() - started
        if time_budget_s is not None and elapsed > time_budget_s:
            LOGGER.warning(
                "time budget of %.1f s exceeded after %.1f s: not fitting %s",
                time_budget_s, elapsed, [skipped.name for skipped in specs[position:]],
            )
            break
        fit_started = time.perf_counter()
        if spec.kind in (LOGISTIC, SGD):
            kind, exported = _fit_linear(spec, X, codes, random_state)
        elif spec.kind == MLP:
            kind, exported = _fit_mlp(spec, X, codes, random_state)
        elif spec.kind == KNN:
            kind, exported = _fit_knn(spec, X, codes)
        elif spec.kind in (RANDOM_FOREST, EXTRA_TREES):
            kind, exported = _fit_trees(spec, X, codes, random_state)
        else:
            raise ValueError(f"unknown candidate kind {spec.kind!r}; known: {CANDIDATE_KINDS}")
        seconds = time.perf_counter() - fit_started
        LOGGER.info("fitted %s on %d traces in %.2f s", spec.name, X.shape[0], seconds)
        fitted.append(FittedCandidate(spec, labels.copy(), seconds, kind, exported))
    return fitted


def save_candidates(candidates: Sequence[FittedCandidate], folder: Path) -> None:
    """Write candidates to `folder` as one .npz per candidate plus an index.json (no pickle)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for position, candidate in enumerate(candidates):
        file_name = f"candidate_{position:02d}.npz"
        np.savez(folder / file_name, label_space=candidate.label_space.astype(str),
                 **candidate.arrays)
        index.append({
            "file": file_name,
            "name": candidate.spec.name,
            "kind": candidate.spec.kind,
            "params": candidate.spec.params,
            "surrogate_kind": candidate.kind,
            "fit_seconds": candidate.fit_seconds,
        })
    (folder / "index.json").write_text(json.dumps({"candidates": index}, indent=2))


def load_candidates(folder: Path) -> list[FittedCandidate]:
    """Read candidates written by `save_candidates`."""
    folder = Path(folder)
    index = json.loads((folder / "index.json").read_text())["candidates"]
    loaded = []
    for entry in index:
        with np.load(folder / entry["file"], allow_pickle=False) as stored:
            exported = {key: stored[key] for key in stored.files}
        label_space = exported.pop("label_space").astype(str)
        spec = CandidateSpec(entry["name"], entry["kind"], dict(entry["params"]))
        loaded.append(
            FittedCandidate(spec, label_space, float(entry["fit_seconds"]),
                            entry["surrogate_kind"], exported)
        )
    return loaded
