"""Deterministic assignment of traces to train / validation / calibration / holdout splits.

A trace's split depends only on a hash of (salt, trace key). Adding days of traces never moves
an existing trace to another split, and the splits are never re-balanced by label: they follow
the traffic as it comes, which is what the calibration guarantee needs (calibration traces
exchangeable with future traffic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

SPLIT_NAMES = ("train", "validation", "calibration", "holdout")

# Most traces train the surrogate; validation fits the acceptor and picks the candidate;
# calibration certifies the threshold (its size sets how tight the certified bound is);
# holdout is never touched by the refit and serves champion/challenger comparisons.
DEFAULT_SPLIT_FRACTIONS: dict[str, float] = {
    "train": 0.60,
    "validation": 0.12,
    "calibration": 0.18,
    "holdout": 0.10,
}

_HASH_RESOLUTION = 2**64


def _check_fractions(fractions: Mapping[str, float]) -> np.ndarray:
    unknown = set(fractions) - set(SPLIT_NAMES)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; known: {SPLIT_NAMES}")
    values = np.array([float(fractions.get(name, 0.0)) for name in SPLIT_NAMES])
    if np.any(values < 0) or not np.isfinite(values).all():
        raise ValueError(f"split fractions must be finite and >= 0, got {dict(fractions)}")
    if abs(values.sum() - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {values.sum():.6f}")
    return values


def hash_unit_interval(trace_keys: Sequence[str], salt: str) -> np.ndarray:
    """Map each key to a number in [0, 1) by SHA-256 of (salt, key); stable across runs."""
    salt_bytes = salt.encode() + b"\x00"
    positions = np.empty(len(trace_keys), dtype=np.float64)
    for index, key in enumerate(trace_keys):
        digest = hashlib.sha256(salt_bytes + str(key).encode()).digest()
        positions[index] = int.from_bytes(digest[:8], "big") / _HASH_RESOLUTION
    return positions


def assign_splits(
    trace_keys: Sequence[str],
    fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    salt: str = "tracer-v1",
) -> np.ndarray:
    """Return one split name per key, decided by a hash of (salt, key) alone.

    A trace keeps its split forever as days are added, and adding other keys never moves it.
    Each split receives about its fraction of the keys (a multinomial draw, not an exact count).

    Args:
        trace_keys: stable identifiers of the traces (e.g. a hash of input text and timestamp).
        fractions: share of traces per split name in `SPLIT_NAMES`; missing names and 0 mean the
            split gets no traces. Must sum to 1.
        salt: changes the whole assignment; keep it fixed for a deployment's lifetime.

    Returns:
        Array of split names (dtype object), aligned with `trace_keys`.
    """
    values = _check_fractions(fractions)
    upper_edges = np.cumsum(values)
    upper_edges[-1] = 1.0 + 1e-12
    positions = hash_unit_interval(trace_keys, salt)
    split_index = np.searchsorted(upper_edges, positions, side="right")
    # A split with fraction 0 has an empty interval, so searchsorted never lands in it.
    return np.array(SPLIT_NAMES, dtype=object)[split_index]
