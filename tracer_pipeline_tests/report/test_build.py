"""build_report and worst_labels_markdown on a hand-made held-out set, a refused gate, no traces."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tracer_pipeline.report.build import (
    HOLDOUT_COLUMNS,
    build_report,
    format_percent,
    worst_labels_markdown,
)

PARTITION = "2026-01-05"
PRICE_PER_LLM_CALL = 0.002
DAILY_TRAFFIC = 10_000


def _report(holdout, gate, deployment, history=()) -> dict:
    return build_report(
        partition=PARTITION,
        holdout=holdout,
        gate=gate,
        deployment=deployment,
        n_traces=40,
        embedding_model="sentence-transformers/all-MiniLM-L6-v2",
        price_per_llm_call=PRICE_PER_LLM_CALL,
        daily_traffic=DAILY_TRAFFIC,
        history=history,
    )


def test_headline_numbers_are_computed_on_the_held_out_traces(holdout, deploying_gate, promoted):
    headline = _report(holdout, deploying_gate, promoted)["headline"]

    # 4 of 8 handled; of those t1, t2, t5 agree with the teacher and t3 does not.
    assert headline["coverage_holdout"] == 0.5
    assert headline["agreement_holdout"] == 0.75
    assert headline["n_holdout"] == 8
    assert headline["n_handled_holdout"] == 4
    copied_from_gate_and_deployment = {
        "alpha": 0.9,
        "delta": 0.05,
        "decision": "deploy",
        "reason": None,
        "agreement_lower_bound": 0.9031,
        "threshold": 0.65,
        "n_traces": 40,
        "champion_version": "7",
        "deployment_decision": "promoted",
        "candidate": "logistic_regression",
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "coverage_calibration": 0.62,
        "n_calibration": 500,
    }
    assert {
        key: headline[key] for key in copied_from_gate_and_deployment
    } == copied_from_gate_and_deployment


def test_per_label_rows_are_sorted_by_share_with_coverage_and_agreement(
    holdout, deploying_gate, promoted
):
    per_label = _report(holdout, deploying_gate, promoted)["per_label"]

    assert per_label == [
        {
            "label": "card_lost",
            "share": 0.5,
            "n_holdout": 4,
            "n_handled": 3,
            "coverage": 0.75,
            "agreement": 2 / 3,
            "never_handled": False,
        },
        {
            "label": "card_stolen",
            "share": 0.375,
            "n_holdout": 3,
            "n_handled": 1,
            "coverage": 1 / 3,
            "agreement": 1.0,
            "never_handled": False,
        },
        {
            "label": "close_account",
            "share": 0.125,
            "n_holdout": 1,
            "n_handled": 0,
            "coverage": 0.0,
            "agreement": None,
            "never_handled": True,
        },
    ]


def test_defer_reasons_are_counted_overall_and_by_teacher_label(holdout, deploying_gate, promoted):
    report = _report(holdout, deploying_gate, promoted)

    assert report["defer_reasons"] == {
        "low_confidence": 2,
        "label_rarely_seen": 1,
        "neighbours_disagree": 1,
    }
    assert list(report["defer_reasons"]) == [
        "low_confidence",
        "label_rarely_seen",
        "neighbours_disagree",
    ]
    assert report["defer_reasons_by_label"] == {
        "card_lost": {"low_confidence": 1},
        "card_stolen": {"low_confidence": 1, "neighbours_disagree": 1},
        "close_account": {"label_rarely_seen": 1},
    }


def test_confusions_count_disagreements_most_frequent_first(holdout, deploying_gate, promoted):
    confusions = _report(holdout, deploying_gate, promoted)["confusions"]

    assert confusions == [
        {
            "teacher": "card_stolen",
            "surrogate": "card_lost",
            "count": 2,
            "n_handled": 0,
            "example": "someone took my bag",
        },
        {
            "teacher": "card_lost",
            "surrogate": "card_stolen",
            "count": 1,
            "n_handled": 1,
            "example": "my card is gone",
        },
        {
            "teacher": "close_account",
            "surrogate": "refund_request",
            "count": 1,
            "n_handled": 0,
            "example": "close my account",
        },
    ]


def test_confusions_keep_only_the_ten_most_frequent_pairs(deploying_gate, promoted):
    rows = [
        (f"t{index}", f"text {index}", f"label_{index}", "other", True, 0.9, None)
        for index in range(12)
    ]
    rows += [("extra", "again", "label_3", "other", True, 0.9, None)]
    holdout = pd.DataFrame(rows, columns=list(HOLDOUT_COLUMNS))

    confusions = _report(holdout, deploying_gate, promoted)["confusions"]

    assert len(confusions) == 10
    assert confusions[0] == {
        "teacher": "label_3",
        "surrogate": "other",
        "count": 2,
        "n_handled": 2,
        "example": "text 3",
    }


def test_examples_show_handled_disagreements_first_and_each_defer_reason_in_turn(
    holdout, deploying_gate, promoted
):
    examples = _report(holdout, deploying_gate, promoted)["examples"]

    assert [example["trace_id"] for example in examples["handled"]] == ["t3", "t5", "t2", "t1"]
    assert [example["trace_id"] for example in examples["deferred"]] == ["t8", "t4", "t6", "t7"]
    assert examples["handled"][0] == {
        "trace_id": "t3",
        "input": "my card is gone",
        "teacher": "card_lost",
        "surrogate_label": "card_stolen",
        "score": 0.7,
        "defer_reason": None,
    }
    assert examples["deferred"][0]["defer_reason"] == "label_rarely_seen"


def test_frontier_and_candidates_are_copied_from_the_gate(holdout, deploying_gate, promoted):
    report = _report(holdout, deploying_gate, promoted)

    assert [point["alpha"] for point in report["frontier"]] == [0.8, 0.9, 0.95, 0.99]
    assert report["frontier"][-1] == {
        "alpha": 0.99,
        "coverage_certified": 0.0,
        "threshold": None,
        "agreement_lower_bound": None,
        "refused": True,
    }
    assert report["candidates"][0] == {"name": "logistic_regression", "fit_seconds": 2.3456}


def test_history_gains_this_day_and_replaces_a_stale_entry_for_it(
    holdout, deploying_gate, promoted
):
    history = [
        {"partition": PARTITION, "per_label": {"card_lost": 0.1}},
        {"partition": "2026-01-04", "per_label": {"card_lost": 0.5, "card_stolen": 0.2}},
    ]

    report = _report(holdout, deploying_gate, promoted, history=history)

    assert report["history"] == [
        {
            "partition": "2026-01-04",
            "n_traces": None,
            "per_label": {"card_lost": 0.5, "card_stolen": 0.2},
        },
        {
            "partition": PARTITION,
            "n_traces": 40,
            "per_label": {"card_lost": 0.75, "card_stolen": 1 / 3, "close_account": 0.0},
        },
    ]


def test_assumption_names_exchangeability_alpha_and_delta(holdout, deploying_gate, promoted):
    assumption = _report(holdout, deploying_gate, promoted)["assumption"]

    assert "exchangeable" in assumption
    assert "α = 90%" in assumption
    assert "1 − δ = 95%" in assumption


def test_report_is_plain_json(holdout, deploying_gate, promoted):
    report = _report(holdout, deploying_gate, promoted)

    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_missing_defer_reasons_and_numpy_types_are_normalised(deploying_gate, promoted):
    holdout = pd.DataFrame(
        {
            "trace_id": ["a", "b", "c"],
            "input": ["x", "y", "z"],
            "teacher": ["card_lost", "card_lost", "card_stolen"],
            "surrogate_label": ["card_lost", "card_lost", "card_stolen"],
            "handled": [True, False, False],
            "score": [0.9, 0.5, 0.4],
            "defer_reason": [None, None, float("nan")],
        }
    )

    report = _report(holdout, deploying_gate, promoted)

    assert report["defer_reasons"] == {"unspecified": 2}
    assert report["examples"]["handled"][0]["defer_reason"] is None
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_refused_gate_reports_nothing_handled(holdout, refusing_gate):
    refused_holdout = holdout.assign(handled=False, defer_reason="gate_refused")
    deployment = {"decision": "refused", "champion_version": None, "reason": None}

    report = _report(refused_holdout, refusing_gate, deployment)

    headline = report["headline"]
    assert headline["decision"] == "refuse"
    assert headline["threshold"] is None
    assert headline["agreement_lower_bound"] is None
    assert headline["coverage_holdout"] == 0.0
    assert headline["agreement_holdout"] is None
    assert headline["champion_version"] is None
    assert all(row["never_handled"] and row["agreement"] is None for row in report["per_label"])
    assert report["defer_reasons"] == {"gate_refused": 8}
    assert report["examples"]["handled"] == []
    assert len(report["examples"]["deferred"]) == 8


@pytest.mark.parametrize(
    "empty_holdout",
    [pd.DataFrame(), pd.DataFrame(columns=list(HOLDOUT_COLUMNS))],
    ids=["no_columns", "no_rows"],
)
def test_empty_holdout_gives_undefined_numbers_and_empty_sections(
    empty_holdout, deploying_gate, promoted
):
    report = _report(empty_holdout, deploying_gate, promoted)

    headline = report["headline"]
    assert headline["n_holdout"] == 0
    assert headline["coverage_holdout"] is None
    assert headline["agreement_holdout"] is None
    assert report["per_label"] == []
    assert report["defer_reasons"] == {}
    assert report["defer_reasons_by_label"] == {}
    assert report["confusions"] == []
    assert report["examples"] == {"handled": [], "deferred": []}
    assert report["history"] == [{"partition": PARTITION, "n_traces": 40, "per_label": {}}]
    assert worst_labels_markdown(report).startswith("_No held-out traces")


def test_holdout_without_a_required_column_is_refused(holdout, deploying_gate, promoted):
    with pytest.raises(ValueError, match="surrogate_label"):
        _report(holdout.drop(columns=["surrogate_label"]), deploying_gate, promoted)


def test_worst_labels_markdown_lists_lowest_coverage_first(holdout, deploying_gate, promoted):
    report = _report(holdout, deploying_gate, promoted)

    assert worst_labels_markdown(report, limit=2) == "\n".join(
        [
            "| label | share of held-out traces | coverage (held-out) "
            "| agreement on handled (held-out) |",
            "| --- | ---: | ---: | ---: |",
            "| close_account | 12.5% | 0.0% | — |",
            "| card_stolen | 37.5% | 33.3% | 100.0% |",
        ]
    )
    assert len(worst_labels_markdown(report).splitlines()) == 2 + 3


@pytest.mark.parametrize(
    ("fraction", "trim", "expected"),
    [(0.934, False, "93.4%"), (0.95, True, "95%"), (0.975, True, "97.5%"), (None, False, "—")],
)
def test_format_percent(fraction, trim, expected):
    assert format_percent(fraction, trim=trim) == expected


def test_plateau_is_no_gain_over_the_last_days_despite_more_traces(
    holdout, deploying_gate, promoted
):
    # Today (40 traces): card_lost 0.75, card_stolen 1/3, close_account 0.0.
    history = [
        {"partition": "2026-01-03", "n_traces": 20, "per_label": {"card_lost": 0.9,
                                                                  "card_stolen": 0.1}},
        {"partition": "2026-01-04", "n_traces": 30, "per_label": {"card_lost": 0.8,
                                                                  "card_stolen": 0.2,
                                                                  "close_account": 0.0}},
    ]

    over_time = _report(holdout, deploying_gate, promoted, history=history)["over_time"]

    rows = {row["label"]: row for row in over_time["labels"]}
    assert over_time["days"] == ["2026-01-03", "2026-01-04", PARTITION]
    assert over_time["n_traces"] == [20, 30, 40]
    assert rows["card_lost"]["coverage"] == [0.9, 0.8, 0.75]
    assert rows["card_lost"]["plateau"] is True  # fell below its best with more traces
    assert rows["card_lost"]["gain"] == pytest.approx(-0.15)
    assert rows["card_stolen"]["plateau"] is False
    assert rows["card_stolen"]["gain"] == pytest.approx(1 / 3 - 0.2)
    assert rows["close_account"]["plateau"] is None  # two days only
    assert rows["close_account"]["gain"] is None


def test_no_plateau_is_claimed_when_the_refit_drew_on_no_more_traces(
    holdout, deploying_gate, promoted
):
    history = [
        {"partition": day, "n_traces": 40, "per_label": {"card_lost": 0.9}}
        for day in ("2026-01-03", "2026-01-04")
    ]

    over_time = _report(holdout, deploying_gate, promoted, history=history)["over_time"]

    (card_lost,) = [row for row in over_time["labels"] if row["label"] == "card_lost"]
    assert card_lost["plateau"] is False
    assert card_lost["gain"] == pytest.approx(-0.15)
