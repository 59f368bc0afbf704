"""A small hand-made held-out set and gate result, whose report numbers are worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from tracer_pipeline.report.build import HOLDOUT_COLUMNS

# 8 held-out traces: card_lost 4 (3 handled, 2 of them agree), card_stolen 3 (1 handled, agrees),
# close_account 1 (deferred).
HOLDOUT_ROWS = [
    ("t1", "I lost my card on the bus", "card_lost", "card_lost", True, 0.95, None),
    ("t2", "can't find my card", "card_lost", "card_lost", True, 0.90, None),
    ("t3", "my card is gone", "card_lost", "card_stolen", True, 0.70, None),
    ("t4", "wallet missing", "card_lost", "card_lost", False, 0.40, "low_confidence"),
    ("t5", "my card was stolen", "card_stolen", "card_stolen", True, 0.85, None),
    ("t6", "someone took my bag", "card_stolen", "card_lost", False, 0.30, "neighbours_disagree"),
    ("t7", "card taken at a bar", "card_stolen", "card_lost", False, 0.20, "low_confidence"),
    ("t8", "close my account", "close_account", "refund_request", False, 0.10, "label_rarely_seen"),
]


def frontier_points() -> list[dict]:
    return [
        {
            "alpha": alpha,
            "coverage_certified": coverage,
            "threshold": threshold,
            "agreement_lower_bound": bound,
            "refused": refused,
        }
        for alpha, coverage, threshold, bound, refused in (
            (0.95, 0.40, 0.88, 0.951, False),
            (0.80, 0.90, 0.41, 0.802, False),
            (0.90, 0.62, 0.65, 0.903, False),
            (0.99, 0.0, None, None, True),
        )
    ]


@pytest.fixture
def holdout() -> pd.DataFrame:
    return pd.DataFrame(HOLDOUT_ROWS, columns=list(HOLDOUT_COLUMNS))


@pytest.fixture
def deploying_gate() -> dict:
    return {
        "decision": "deploy",
        "reason": None,
        "candidate": "logistic_regression",
        "threshold": 0.65,
        "agreement_lower_bound": 0.9031,
        "coverage_calibration": 0.62,
        "n_calibration": 500,
        "alpha": 0.9,
        "delta": 0.05,
        "frontier": frontier_points(),
        "candidates": [
            {"name": "logistic_regression", "fit_seconds": 2.3456},
            {"name": "nearest_centroid", "fit_seconds": 0.1},
        ],
    }


@pytest.fixture
def refusing_gate(deploying_gate) -> dict:
    return {
        **deploying_gate,
        "decision": "refuse",
        "reason": "no threshold certifies agreement 90% at confidence 95%",
        "threshold": None,
        "agreement_lower_bound": None,
        "coverage_calibration": 0.0,
    }


@pytest.fixture
def promoted() -> dict:
    return {"decision": "promoted", "champion_version": "7", "reason": "first champion"}
