"""Small numpy trainers for the surrogates: softmax regression (L-BFGS or SGD) and a ReLU MLP.

Written for dense, standardised sentence embeddings with tens to hundreds of labels, where
scikit-learn's general-purpose solvers spend most of their time in overhead. Everything runs in
float32 matrix products; the objective is the mean cross-entropy plus an L2 penalty on weights.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from tracer_pipeline.surrogates.arrays import softmax


def _one_hot(codes: np.ndarray, n_classes: int) -> np.ndarray:
    targets = np.zeros((codes.size, n_classes), dtype=np.float32)
    targets[np.arange(codes.size), codes] = 1.0
    return targets


def fit_softmax_lbfgs(
    X: np.ndarray, codes: np.ndarray, n_classes: int, C: float = 1.0, max_iter: int = 200,
    tolerance: float = 1e-5, start: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS.

    Minimises C * sum(cross-entropy) + 0.5 * ||W||^2 (scikit-learn's convention), scaled by
    1 / (C n) for numerical comfort. The bias is not penalised. `start` (weights, bias) warm-starts
    the solver, e.g. from the solution at a neighbouring C; with `max_iter` 0 it is returned as is.

    Returns:
        weights (dimension, n_classes) and bias (n_classes,), float64.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n_rows, dimension = X.shape
    targets = _one_hot(codes, n_classes)
    penalty = 1.0 / (C * n_rows)

    def objective(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        weights = parameters[: dimension * n_classes].reshape(dimension, n_classes)
        bias = parameters[dimension * n_classes:]
        logits = X @ weights.astype(np.float32) + bias.astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        loss = float((log_norm - (logits * targets).sum(axis=1)).mean())
        probabilities = np.exp(logits - log_norm[:, None])
        residual = (probabilities - targets) / n_rows
        weight_gradient = (X.T @ residual).astype(np.float64) + penalty * weights
        loss += 0.5 * penalty * float((weights**2).sum())
        gradient = np.concatenate([weight_gradient.ravel(), residual.sum(axis=0)])
        return loss, gradient

    if start is None:
        initial = np.zeros(dimension * n_classes + n_classes)
    else:
        initial = np.concatenate([np.ravel(start[0]), np.ravel(start[1])]).astype(np.float64)
    if max_iter <= 0:
        return initial[: dimension * n_classes].reshape(dimension, n_classes), initial[
            dimension * n_classes:]
    result = optimize.minimize(
        objective, initial, jac=True, method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tolerance, "ftol": 1e-10},
    )
    weights = result.x[: dimension * n_classes].reshape(dimension, n_classes)
    return weights, result.x[dimension * n_classes:]


def _minibatches(n_rows: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n_rows)
    for start in range(0, n_rows, batch_size):
        yield order[start : start + batch_size]


def fit_softmax_sgd(
    X: np.ndarray, codes: np.ndarray, n_classes: int, l2: float = 1e-4, epochs: int = 15,
    learning_rate: float = 0.05, batch_size: int = 64, seed: int = 0,
    start: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by minibatch SGD with momentum 0.9, decaying step.

    `start` (weights, bias) warm-starts from an earlier solution (the step schedule starts
    again from `learning_rate`).

    Returns:
        weights (dimension, n_classes) and bias (n_classes,), float32.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if start is None:
        weights = np.zeros((X.shape[1], n_classes), dtype=np.float32)
        bias = np.zeros(n_classes, dtype=np.float32)
    else:
        weights = np.array(start[0], dtype=np.float32)
        bias = np.array(start[1], dtype=np.float32)
    weight_velocity, bias_velocity = np.zeros_like(weights), np.zeros_like(bias)
    targets = _one_hot(codes, n_classes)
    for epoch in range(epochs):
        step = learning_rate / (1.0 + epoch)
        for batch in _minibatches(X.shape[0], batch_size, rng):
            residual = (softmax(X[batch] @ weights + bias) - targets[batch]) / batch.size
            weight_velocity = 0.9 * weight_velocity - step * (X[batch].T @ residual + l2 * weights)
            bias_velocity = 0.9 * bias_velocity - step * residual.sum(axis=0)
            weights += weight_velocity
            bias += bias_velocity
    return weights, bias


def fit_mlp_adam(
    X: np.ndarray, codes: np.ndarray, n_classes: int, hidden: int = 256, l2: float = 1e-4,
    epochs: int = 20, learning_rate: float = 1e-3, batch_size: int = 128, seed: int = 0,
    start: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One-hidden-layer ReLU network with a softmax output, trained by Adam.

    `start` ([(W1, b1), (W2, b2)], shapes as returned) warm-starts from earlier weights; the
    Adam moments start from zero either way.

    Returns:
        [(W1, b1), (W2, b2)], float32.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    dimension = X.shape[1]
    parameters = [
        (rng.standard_normal((dimension, hidden)) * np.sqrt(2.0 / dimension)).astype(np.float32),
        np.zeros(hidden, dtype=np.float32),
        (rng.standard_normal((hidden, n_classes)) * np.sqrt(1.0 / hidden)).astype(np.float32),
        np.zeros(n_classes, dtype=np.float32),
    ]
    if start is not None:
        (first_weights, first_bias), (second_weights, second_bias) = start
        expected = [value.shape for value in parameters]
        parameters = [np.array(value, dtype=np.float32) for value in
                      (first_weights, first_bias, second_weights, second_bias)]
        if [value.shape for value in parameters] != expected:
            raise ValueError(f"start shapes {[v.shape for v in parameters]} != {expected}")
    first_moment = [np.zeros_like(value) for value in parameters]
    second_moment = [np.zeros_like(value) for value in parameters]
    targets = _one_hot(codes, n_classes)
    step_count = 0
    for _ in range(epochs):
        for batch in _minibatches(X.shape[0], batch_size, rng):
            inputs = X[batch]
            pre_activation = inputs @ parameters[0] + parameters[1]
            hidden_units = np.maximum(pre_activation, 0.0)
            residual = (softmax(hidden_units @ parameters[2] + parameters[3]) - targets[batch])
            residual /= batch.size
            hidden_gradient = (residual @ parameters[2].T) * (pre_activation > 0)
            gradients = [
                inputs.T @ hidden_gradient + l2 * parameters[0],
                hidden_gradient.sum(axis=0),
                hidden_units.T @ residual + l2 * parameters[2],
                residual.sum(axis=0),
            ]
            step_count += 1
            correction_1 = 1.0 - 0.9**step_count
            correction_2 = 1.0 - 0.999**step_count
            for index, gradient in enumerate(gradients):
                first_moment[index] = 0.9 * first_moment[index] + 0.1 * gradient
                second_moment[index] = 0.999 * second_moment[index] + 0.001 * gradient**2
                update = (first_moment[index] / correction_1) / (
                    np.sqrt(second_moment[index] / correction_2) + 1e-8
                )
                parameters[index] -= learning_rate * update
    return [(parameters[0], parameters[1]), (parameters[2], parameters[3])]
