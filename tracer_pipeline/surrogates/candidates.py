"""Candidate surrogates on frozen sentence embeddings: specs, fitting, and a cache on disk.

Each candidate is fitted once per refit and reused for every alpha the gate certifies. Linear
models and the MLP are trained by the small numpy trainers of `tracer_pipeline.surrogates.training`
(scikit-learn's general solvers were about 10x slower on 384-d embeddings with ~80 labels); kNN
needs no fitting and the opt-in trees use scikit-learn. Every candidate is exported to numpy
arrays (see `tracer_pipeline.surrogates.arrays`) and predictions always come from those arrays,
so what the gate calibrates is exactly what the deployed router computes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracer_pipeline.surrogates import arrays as surrogate_arrays
from tracer_pipeline.surrogates import training

LOGGER = logging.getLogger(__name__)

LOGISTIC = "logistic"
SGD = "sgd"
KNN = "knn"
MLP = "mlp"
RANDOM_FOREST = "random_forest"
EXTRA_TREES = "extra_trees"
AVERAGE = "average"
CANDIDATE_KINDS = (LOGISTIC, SGD, KNN, MLP, RANDOM_FOREST, EXTRA_TREES, AVERAGE)


@dataclass(frozen=True)
class CandidateSpec:
    """What to fit: a unique `name`, a `kind` from `CANDIDATE_KINDS` and its `params`.

    An `average` candidate fits nothing: it averages the probabilities of the candidates named
    in `params["members"]`, which must come before it in the list of specs.
    """

    name: str
    kind: str
    params: dict = field(default_factory=dict)


def default_candidate_specs(include_trees: bool = False) -> list[CandidateSpec]:
    """Return the default candidates, cheapest first.

    Cosine kNN on the unit embeddings, softmax regression fitted by SGD, logistic regression on
    standardised embeddings over a small grid of C, a one-hidden-layer MLP, and the average of
    the SGD, logistic and MLP probabilities (free to build; averaging models that err on
    different inputs makes the acceptor's confidence features sharper). Trees (random forest,
    extra trees) are opt-in: on dense 384-d embeddings they are slower and rarely better.
    """
    specs = [
        CandidateSpec("knn_10", KNN, {"k": 10}),
        CandidateSpec("sgd_softmax", SGD, {"alpha": 1e-4, "epochs": 6}),
        CandidateSpec("logistic_C0.5", LOGISTIC, {"C": 0.5}),
        CandidateSpec("logistic_C2", LOGISTIC, {"C": 2.0}),
        CandidateSpec("mlp_256", MLP, {"hidden": 256, "alpha": 1e-4, "epochs": 10}),
        CandidateSpec("average_sgd_logistic_mlp", AVERAGE,
                      {"members": ["sgd_softmax", "logistic_C0.5", "mlp_256"]}),
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
        warm_started: whether the fit started from an earlier refit's solution.
    """

    spec: CandidateSpec
    label_space: np.ndarray
    fit_seconds: float
    kind: str = ""
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    warm_started: bool = False

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


def _unfold_standardisation(
    folded_weights: np.ndarray, folded_bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rewrite W'·x + b' as W·((x - mean)/scale) + b for a new (mean, scale): same function.

    The inverse of `_fold_standardisation`; a warm start of a refit whose traces have another
    mean and scale begins exactly at the earlier model's predictions.
    """
    folded_weights = np.asarray(folded_weights, dtype=np.float64)
    weights = folded_weights * scale[:, None]
    bias = np.asarray(folded_bias, dtype=np.float64) + mean @ folded_weights
    return weights, bias


def _output_labels(candidate: FittedCandidate) -> np.ndarray:
    """The labels of a candidate's output columns, in column order."""
    return candidate.label_space[candidate.arrays["columns"]]


def _carry_columns(
    previous: FittedCandidate, present_labels: np.ndarray, layer: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """An earlier output layer (arrays `weights<layer>`, `bias<layer>`) re-indexed to new labels.

    Columns of labels the earlier model knew are copied; a label it never saw gets zero weights
    and the lowest earlier bias (a small prior the optimiser then raises); a label that is gone
    (e.g. left the window) is dropped.
    """
    weights = np.asarray(previous.arrays[f"weights{layer}"], dtype=np.float64)
    bias = np.asarray(previous.arrays[f"bias{layer}"], dtype=np.float64)
    column_of = {label: column for column, label in enumerate(_output_labels(previous))}
    source = np.array([column_of.get(label, -1) for label in present_labels], dtype=np.int64)
    carried = source >= 0
    grown_weights = np.zeros((weights.shape[0], present_labels.size))
    lowest_bias = bias[source[carried]].min() if carried.any() else 0.0
    grown_bias = np.full(present_labels.size, lowest_bias)
    grown_weights[:, carried] = weights[:, source[carried]]
    grown_bias[carried] = bias[source[carried]]
    return grown_weights, grown_bias


def _warm_start_source(
    previous: FittedCandidate | None, spec: CandidateSpec, dimension: int
) -> FittedCandidate | None:
    """`previous` if it is the same candidate (name, kind, shape) on the same embeddings."""
    if previous is None or previous.spec.kind != spec.kind:
        return None
    if spec.kind in (LOGISTIC, SGD):
        weights = previous.arrays.get("weights")
        return previous if weights is not None and weights.shape[0] == dimension else None
    if spec.kind == MLP:
        first = previous.arrays.get("weights_0")
        hidden = int(spec.params.get("hidden", 256))
        if first is not None and first.shape == (dimension, hidden):
            return previous
    return None


def _fit_linear(spec: CandidateSpec, X: np.ndarray, codes: np.ndarray, n_classes: int,
                seed: int, warm_start: tuple | None = None,
                previous: FittedCandidate | None = None,
                label_space: np.ndarray | None = None) -> tuple:
    """Softmax regression on standardised embeddings: L-BFGS (`logistic`) or SGD (`sgd`).

    `warm_start` is a solution of this refit in its standardised space (neighbouring C values
    have nearby optima). `previous` is the same candidate of an earlier refit (labels in
    `label_space`): its solution, rewritten for this refit's standardisation and labels, is the
    start, and the solver runs `warm_max_iter` L-BFGS iterations (default 10) or `warm_epochs`
    SGD epochs (default 1; the step schedule starts again, so that labels new since then are
    learned at full step) instead of the cold budget.

    Returns the surrogate kind, its exported arrays and the solution in standardised space.
    """
    mean, scale = _standardisation(X)
    standardised = ((X - mean) / scale).astype(np.float32)
    # Outputs only for labels seen in training, so that unseen labels get probability 0.
    present = np.unique(codes)
    codes, n_classes = np.searchsorted(present, codes), present.size
    if previous is not None:
        folded = _carry_columns(previous, label_space[present])
        warm_start = _unfold_standardisation(*folded, mean, scale)
    if spec.kind == LOGISTIC:
        # A warm-started solve needs fewer iterations; both stop at a loose tolerance, which
        # costs little accuracy here and is what keeps a refit within seconds.
        if previous is not None:
            iterations = int(spec.params.get("warm_max_iter", 10))
        else:
            iterations = int(spec.params.get("max_iter", 60 if warm_start is None else 30))
        weights, bias = training.fit_softmax_lbfgs(
            standardised, codes, n_classes, C=float(spec.params.get("C", 1.0)),
            max_iter=iterations, start=warm_start,
        )
    else:
        weights, bias = training.fit_softmax_sgd(
            standardised, codes, n_classes, l2=float(spec.params.get("alpha", 1e-4)),
            epochs=int(spec.params.get("epochs" if previous is None else "warm_epochs",
                                       6 if previous is None else 1)),
            seed=seed, start=warm_start if previous is not None else None,
        )
    solution = (np.asarray(weights, dtype=np.float64), np.asarray(bias, dtype=np.float64))
    folded_weights, folded_bias = _fold_standardisation(*solution, mean, scale)
    exported = {"weights": folded_weights, "bias": folded_bias,
                "columns": present.astype(np.int64)}
    return surrogate_arrays.LINEAR_SOFTMAX, exported, solution


def _fit_mlp(spec: CandidateSpec, X: np.ndarray, codes: np.ndarray, n_classes: int,
             seed: int, previous: FittedCandidate | None = None,
             label_space: np.ndarray | None = None) -> tuple:
    """One-hidden-layer ReLU network on standardised embeddings, trained by Adam.

    With `previous` (the same candidate of an earlier refit, labels in `label_space`), training
    starts from its weights (the hidden layer rewritten for this refit's standardisation, the
    output layer re-indexed to this refit's labels) and runs `warm_epochs` epochs (default 1),
    or the full `epochs` when labels new since the earlier refit need their columns learned.
    """
    mean, scale = _standardisation(X)
    present = np.unique(codes)
    codes, n_classes = np.searchsorted(present, codes), present.size
    start = None
    epochs = int(spec.params.get("epochs", 10))
    if previous is not None:
        hidden_layer = _unfold_standardisation(
            previous.arrays["weights_0"], previous.arrays["bias_0"], mean, scale
        )
        start = [hidden_layer, _carry_columns(previous, label_space[present], layer="_1")]
        # A few Adam steps do not teach the fresh output columns of new labels: then the
        # full budget runs from the warm start.
        if set(label_space[present]) <= set(_output_labels(previous)):
            epochs = int(spec.params.get("warm_epochs", 1))
    layers = training.fit_mlp_adam(
        ((X - mean) / scale).astype(np.float32), codes, n_classes,
        hidden=int(spec.params.get("hidden", 256)), l2=float(spec.params.get("alpha", 1e-4)),
        epochs=epochs,
        learning_rate=float(spec.params.get("learning_rate", 1e-3)),
        batch_size=int(spec.params.get("batch_size", 128)), seed=seed, start=start,
    )
    (first_weights, first_bias), (second_weights, second_bias) = layers
    folded_weights, folded_bias = _fold_standardisation(
        first_weights.astype(np.float64), first_bias.astype(np.float64), mean, scale
    )
    return surrogate_arrays.MLP_RELU, {
        "n_layers": np.array(2),
        "weights_0": folded_weights,
        "bias_0": folded_bias,
        "weights_1": second_weights.astype(np.float32),
        "bias_1": second_bias.astype(np.float32),
        "columns": present.astype(np.int64),
    }


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
    warm_start_from: Sequence[FittedCandidate] | None = None,
) -> list[FittedCandidate]:
    """Fit each candidate once on (X, y) and export it to numpy arrays.

    Args:
        X: training embeddings, shape (n, dimension).
        y: teacher labels (str), shape (n,).
        specs: candidates to fit, in order.
        time_budget_s: once this many seconds have passed, no new candidate is started (the
            running one finishes; the first is always fitted); the skipped ones are logged.
            None means no budget.
        random_state: seed for the stochastic fitters.
        label_space: labels the probabilities should cover (sorted); default the labels of y.
            Labels in y must be part of it.
        warm_start_from: candidates of an earlier refit (e.g. the previous day's). A logistic,
            SGD or MLP candidate with the same name, kind and shape starts from that solution
            (rewritten for this refit's standardisation; labels new since then get fresh
            columns, labels gone are dropped) with a smaller iteration budget (`warm_max_iter`,
            `warm_epochs` in the spec's params). Other candidates are fitted cold.

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

    earlier = {candidate.spec.name: candidate for candidate in warm_start_from or ()}
    started = time.perf_counter()
    fitted: list[FittedCandidate] = []
    logistic_solution = None
    for position, spec in enumerate(specs):
        elapsed = time.perf_counter() - started
        if time_budget_s is not None and fitted and elapsed > time_budget_s:
            LOGGER.warning(
                "time budget of %.1f s exceeded after %.1f s: not fitting %s",
                time_budget_s, elapsed, [skipped.name for skipped in specs[position:]],
            )
            break
        fit_started = time.perf_counter()
        previous = _warm_start_source(earlier.get(spec.name), spec, X.shape[1])
        if spec.kind in (LOGISTIC, SGD):
            warm_start = logistic_solution if spec.kind == LOGISTIC else None
            kind, exported, solution = _fit_linear(spec, X, codes, labels.size, random_state,
                                                   warm_start, previous, labels)
            if spec.kind == LOGISTIC:
                logistic_solution = solution
        elif spec.kind == MLP:
            kind, exported = _fit_mlp(spec, X, codes, labels.size, random_state, previous,
                                      labels)
        elif spec.kind == KNN:
            kind, exported = _fit_knn(spec, X, codes)
        elif spec.kind in (RANDOM_FOREST, EXTRA_TREES):
            kind, exported = _fit_trees(spec, X, codes, random_state)
        elif spec.kind == AVERAGE:
            by_name = {candidate.spec.name: candidate for candidate in fitted}
            members = [by_name[name] for name in spec.params["members"] if name in by_name]
            if not members:
                LOGGER.warning("no member of %s was fitted: skipped", spec.name)
                continue
            kind = surrogate_arrays.AVERAGE
            exported = surrogate_arrays.average_arrays(
                [(member.kind, member.arrays) for member in members], labels.size
            )
        else:
            raise ValueError(f"unknown candidate kind {spec.kind!r}; known: {CANDIDATE_KINDS}")
        seconds = time.perf_counter() - fit_started
        LOGGER.info("fitted %s on %d traces in %.2f s%s", spec.name, X.shape[0], seconds,
                    " (warm start)" if previous is not None else "")
        fitted.append(FittedCandidate(spec, labels.copy(), seconds, kind, exported,
                                      warm_started=previous is not None))
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
            "warm_started": candidate.warm_started,
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
                            entry["surrogate_kind"], exported,
                            warm_started=bool(entry.get("warm_started", False)))
        )
    return loaded
