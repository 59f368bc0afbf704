"""Hash-based splits: deterministic, close to their fractions, and never leaking a trace."""

from __future__ import annotations

import numpy as np
import pytest

from tracer_pipeline.surrogates.splits import (
    DEFAULT_SPLIT_FRACTIONS,
    SPLIT_NAMES,
    assign_splits,
    hash_unit_interval,
)

KEYS = [f"trace-{index}" for index in range(20_000)]


def test_same_keys_and_salt_give_the_same_splits():
    first = assign_splits(KEYS, salt="a")
    assert np.array_equal(first, assign_splits(KEYS, salt="a"))
    assert not np.array_equal(first, assign_splits(KEYS, salt="b"))


def test_split_shares_follow_the_fractions():
    splits = assign_splits(KEYS)
    for name, fraction in DEFAULT_SPLIT_FRACTIONS.items():
        share = float(np.mean(splits == name))
        # Multinomial sampling error at n = 20,000 is below 0.4 percentage points (3 sigma).
        assert share == pytest.approx(fraction, abs=0.01), name
    assert set(np.unique(splits)) == set(SPLIT_NAMES)


def test_no_trace_moves_when_traces_are_added_and_duplicates_share_a_split():
    before = dict(zip(KEYS[:5000], assign_splits(KEYS[:5000])))
    after = dict(zip(KEYS, assign_splits(KEYS)))
    assert all(after[key] == split for key, split in before.items())
    repeated = assign_splits(["same text", "other", "same text"])
    assert repeated[0] == repeated[2]


def test_each_trace_sits_in_exactly_one_split():
    splits = assign_splits(KEYS)
    members = {name: set(np.asarray(KEYS)[splits == name]) for name in SPLIT_NAMES}
    for first in SPLIT_NAMES:
        for second in SPLIT_NAMES:
            if first != second:
                assert not members[first] & members[second]
    assert sum(len(keys) for keys in members.values()) == len(KEYS)


def test_zero_fraction_splits_stay_empty_and_bad_fractions_raise():
    splits = assign_splits(KEYS, {"train": 0.5, "calibration": 0.5})
    assert set(np.unique(splits)) == {"train", "calibration"}
    with pytest.raises(ValueError):
        assign_splits(KEYS, {"train": 0.5, "calibration": 0.4})
    with pytest.raises(ValueError):
        assign_splits(KEYS, {"train": 1.2, "calibration": -0.2})
    with pytest.raises(ValueError):
        assign_splits(KEYS, {"test": 1.0})


def test_hash_positions_are_uniform():
    positions = hash_unit_interval(KEYS, "salt")
    assert positions.min() >= 0.0 and positions.max() < 1.0
    counts, _ = np.histogram(positions, bins=10, range=(0, 1))
    assert counts.min() > 1800 and counts.max() < 2200
