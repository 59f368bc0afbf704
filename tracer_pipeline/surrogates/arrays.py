"""Numpy-only forward passes of fitted surrogates.

Every candidate, once fitted with scikit-learn, is exported to a kind name and a dict of numpy
arrays. Both `FittedCandidate.predict_proba` and the deployed `RoutingPolicy` use the functions
here, so the probabilities the gate calibrated are exactly the ones the router computes, and a
saved router needs neither scikit-learn nor pickle to run.

Array conventions (all kinds): `columns` (int64) maps each model output column to its index in
the label space; labels absent from a candidate's training get probability 0.
"""

from __future__ import annotations

import numpy as np

LINEAR_SOFTMAX = "linear_softmax"
LINEAR_OVR = "linear_ovr"
MLP_RELU = "mlp_relu"
NEAREST_NEIGHBOURS = "nearest_neighbours"
TREE_ENSEMBLE = "tree_ensemble"
AVERAGE = "average"

SURROGATE_KINDS = (LINEAR_SOFTMAX, LINEAR_OVR, MLP_RELU, NEAREST_NEIGHBOURS, TREE_ENSEMBLE, AVERAGE)

# An AVERAGE surrogate stores its members' arrays under "<index>__<key>" and their kinds in
# "member_kinds"; its probabilities are the mean of the members' probabilities.
MEMBER_SEPARATOR = "__"

# Rows per chunk when a pass builds an (n, n_reference) similarity matrix.
_CHUNK_ROWS = 2048


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def _model_outputs(kind: str, arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Probabilities over the model's own output columns."""
    if kind == LINEAR_SOFTMAX:
        return softmax(X @ arrays["weights"] + arrays["bias"])
    if kind == LINEAR_OVR:
        scores = _sigmoid(X @ arrays["weights"] + arrays["bias"])
        totals = scores.sum(axis=1, keepdims=True)
        totals[totals == 0] = 1.0
        return scores / totals
    if kind == MLP_RELU:
        hidden = X
        n_layers = int(arrays["n_layers"])
        for layer in range(n_layers):
            hidden = hidden @ arrays[f"weights_{layer}"] + arrays[f"bias_{layer}"]
            if layer < n_layers - 1:
                np.maximum(hidden, 0, out=hidden)
        return softmax(hidden)
    if kind == NEAREST_NEIGHBOURS:
        return _nearest_neighbour_votes(arrays, X)
    if kind == TREE_ENSEMBLE:
        return _tree_ensemble_proba(arrays, X)
    if kind == AVERAGE:
        return _average_proba(arrays, X)
    raise ValueError(f"unknown surrogate kind {kind!r}; known: {SURROGATE_KINDS}")


def predict_proba_arrays(
    kind: str, arrays: dict[str, np.ndarray], X: np.ndarray, n_labels: int
) -> np.ndarray:
    """Return probabilities (n, n_labels) whose columns follow the label space.

    Args:
        kind: one of `SURROGATE_KINDS`.
        arrays: the exported parameters of the surrogate.
        X: embeddings, shape (n, dimension).
        n_labels: size of the label space.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of embeddings, got shape {X.shape}")
    outputs = _model_outputs(kind, arrays, X)
    columns = arrays["columns"]
    if len(columns) == n_labels and np.array_equal(columns, np.arange(n_labels)):
        return outputs.astype(np.float32, copy=False)
    probabilities = np.zeros((X.shape[0], n_labels), dtype=np.float32)
    probabilities[:, columns] = outputs
    return probabilities


def multiply_adds_per_row(kind: str, arrays: dict[str, np.ndarray]) -> int:
    """Multiply-adds one row's forward pass costs: a deterministic measure of routing cost.

    Linear models and the MLP: the sizes of their weight matrices; kNN: the reference matrix
    (one similarity per training trace); trees: one comparison per tree and level; an average:
    the sum of its members. The extra cost every policy shares (the prototype similarities and
    the acceptor) is left out, so only differences between candidates count.
    """
    if kind in (LINEAR_SOFTMAX, LINEAR_OVR):
        return int(arrays["weights"].size)
    if kind == MLP_RELU:
        return sum(int(arrays[f"weights_{layer}"].size) for layer in range(int(arrays["n_layers"])))
    if kind == NEAREST_NEIGHBOURS:
        return int(arrays["reference"].size)
    if kind == TREE_ENSEMBLE:
        return int(arrays["roots"].size) * (int(arrays["max_depth"]) + 1)
    if kind == AVERAGE:
        return sum(multiply_adds_per_row(member_kind, member)
                   for member_kind, member in _average_members(arrays))
    raise ValueError(f"unknown surrogate kind {kind!r}; known: {SURROGATE_KINDS}")


def _nearest_neighbour_votes(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Similarity-weighted votes of the k nearest training traces (cosine on unit vectors)."""
    reference = arrays["reference"]
    reference_columns = arrays["reference_columns"]
    n_outputs = int(arrays["n_outputs"])
    k = min(int(arrays["k"]), reference.shape[0])
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit = X / norms
    votes = np.zeros((X.shape[0], n_outputs), dtype=np.float32)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = unit[start : start + _CHUNK_ROWS] @ reference.T
        nearest = np.argpartition(-block, k - 1, axis=1)[:, :k]
        similarity = np.take_along_axis(block, nearest, axis=1)
        weights = np.maximum(similarity, 0.0) + 1e-3
        rows = np.repeat(np.arange(block.shape[0]), k)
        np.add.at(votes[start : start + _CHUNK_ROWS], (rows, reference_columns[nearest].ravel()),
                  weights.ravel())
    votes /= votes.sum(axis=1, keepdims=True)
    return votes


def average_arrays(members: list[tuple[str, dict[str, np.ndarray]]],
                   n_labels: int) -> dict[str, np.ndarray]:
    """Arrays of an AVERAGE surrogate over (kind, arrays) members fitted on one label space."""
    arrays: dict[str, np.ndarray] = {
        "member_kinds": np.array([kind for kind, _ in members]),
        "columns": np.arange(n_labels, dtype=np.int64),
    }
    for index, (_, member) in enumerate(members):
        for key, value in member.items():
            arrays[f"{index}{MEMBER_SEPARATOR}{key}"] = value
    return arrays


def _average_members(arrays: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The (kind, arrays) of each member of an AVERAGE surrogate, in order."""
    members = []
    for index, kind in enumerate(arrays["member_kinds"]):
        prefix = f"{index}{MEMBER_SEPARATOR}"
        members.append((str(kind), {key[len(prefix):]: value for key, value in arrays.items()
                                    if key.startswith(prefix)}))
    return members


def _average_proba(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    members = _average_members(arrays)
    n_labels = len(arrays["columns"])
    total = np.zeros((X.shape[0], n_labels), dtype=np.float32)
    for kind, member in members:
        total += predict_proba_arrays(kind, member, X, n_labels)
    return total / len(members)


def _tree_ensemble_proba(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Average of leaf class distributions over the trees, all trees walked together."""
    feature = arrays["feature"]
    threshold = arrays["threshold"]
    left = arrays["left"]
    right = arrays["right"]
    leaf_values = arrays["value"]
    roots = arrays["roots"]
    node = np.broadcast_to(roots, (X.shape[0], roots.size)).copy()
    rows = np.arange(X.shape[0])[:, None]
    for _ in range(int(arrays["max_depth"]) + 1):
        split_feature = feature[node]
        internal = split_feature >= 0
        if not internal.any():
            break
        goes_left = X[rows, np.maximum(split_feature, 0)] <= threshold[node]
        node = np.where(internal, np.where(goes_left, left[node], right[node]), node)
    return leaf_values[node].mean(axis=1)
