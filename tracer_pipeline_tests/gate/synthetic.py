"""Synthetic traces for gate tests: labelled clusters on the unit sphere, some of them close."""

from __future__ import annotations

import numpy as np

from tracer_pipeline.surrogates.candidates import CandidateSpec, fit_candidates

N_LABELS = 6
DIMENSION = 24
# Two label pairs share nearby centres, so the surrogate errs between them and the acceptor
# has something to rank.
CENTRES = np.random.default_rng(99).standard_normal((N_LABELS, DIMENSION))
CENTRES[1] = CENTRES[0] + 0.6 * np.random.default_rng(98).standard_normal(DIMENSION)
CENTRES[3] = CENTRES[2] + 0.6 * np.random.default_rng(97).standard_normal(DIMENSION)

FAST_SPECS = [
    CandidateSpec("knn_10", "knn", {"k": 10}),
    CandidateSpec("sgd_softmax", "sgd", {"epochs": 6}),
]


def traces(n: int, seed: int, noisy_label: str | None = None,
           noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """`n` embeddings and teacher labels; `noisy_label`'s teacher answers at random with
    probability `noise` (or every label's, when `noisy_label` is "all")."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, N_LABELS, n)
    X = CENTRES[codes] + 1.0 * rng.standard_normal((n, DIMENSION))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if noisy_label is not None:
        affected = (np.ones(n, dtype=bool) if noisy_label == "all"
                    else codes == int(noisy_label.split("_")[1]))
        flip = affected & (rng.random(n) < noise)
        codes = np.where(flip, rng.integers(0, N_LABELS, n), codes)
    return X.astype(np.float32), np.array([f"label_{code}" for code in codes])


def splits(seed: int = 0, n_calibration: int = 1500, **noise) -> dict:
    """Train, validation, calibration and fresh traces, and candidates fitted on train."""
    parts = {}
    for offset, (name, size) in enumerate(
        [("train", 1500), ("validation", 600), ("calibration", n_calibration),
         ("fresh", 4000)]
    ):
        parts[name] = traces(size, seed * 10 + offset, **noise)
    X_train, y_train = parts["train"]
    labels = [f"label_{code}" for code in range(N_LABELS)]
    parts["candidates"] = fit_candidates(X_train, y_train, FAST_SPECS, label_space=labels)
    return parts
