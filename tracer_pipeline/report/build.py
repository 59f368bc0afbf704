"""Build the daily interpretability report from held-out traces and the gate's result.

Every number in the report that is not the gate's own comes from HELD-OUT traces, which the
surrogate never trained on: the coverage (share of traffic the surrogate handles), the agreement
(share of handled traces where the surrogate's label equals the teacher's), per teacher label,
why the rest was deferred, and which labels the surrogate confuses. The gate's numbers (certified
agreement lower bound, frontier, coverage on calibration) are copied as they are, labelled as
measured on calibration traces.

The report is a plain dict of JSON values (str, int, float, bool, None, lists and dicts), with
fractions rounded to 4 decimals and None wherever a number is undefined (for example the agreement
of a label the surrogate never handled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

HOLDOUT_COLUMNS = (
    "trace_id",
    "input",
    "teacher",
    "surrogate_label",
    "handled",
    "score",
    "defer_reason",
)
# A deferred trace whose defer_reason is missing is counted under this reason.
UNSPECIFIED_DEFER_REASON = "unspecified"
MAX_CONFUSIONS = 10
MAX_EXAMPLES = 10
# Example and confusion texts longer than this are cut, so that the report stays small.
EXAMPLE_TEXT_CHARS = 300
FRACTION_DIGITS = 4
SCORE_DIGITS = 4
THRESHOLD_DIGITS = 6
SECONDS_DIGITS = 2


def build_report(
    *,
    partition: str,
    holdout: pd.DataFrame,
    gate: Mapping,
    deployment: Mapping,
    n_traces: int,
    embedding_model: str,
    history: Sequence[Mapping] = (),
) -> dict:
    """Summarise one daily refit on its held-out traces.

    Args:
        partition: the day of the refit (YYYY-MM-DD).
        holdout: one row per held-out trace, with the columns in `HOLDOUT_COLUMNS`: `trace_id`,
            `input`, `teacher`, `surrogate_label`, `handled` (bool), `score` (float) and
            `defer_reason` (None when handled). May be empty.
        gate: the gate's result: `decision` ("deploy" or "refuse"), `reason`, `candidate`,
            `threshold`, `agreement_lower_bound`, `coverage_calibration`, `n_calibration`,
            `alpha`, `delta`, `frontier` (list of {alpha, coverage_certified, threshold,
            agreement_lower_bound, refused}) and `candidates` (list of {name, fit_seconds, ...}).
        deployment: `decision` ("promoted", "kept_champion" or "refused"), `champion_version`
            and `reason`.
        n_traces: number of traces the refit drew on (training, calibration and held-out).
        embedding_model: name of the sentence embedding model.
        history: earlier days' per-label coverage on held-out traces, as
            [{"partition": ..., "per_label": {label: coverage}}].

    Returns:
        The report: `partition`, `assumption`, `headline`, `frontier`, `candidates`,
        `per_label` (sorted by share, largest first), `defer_reasons`, `defer_reasons_by_label`,
        `confusions` (the 10 most frequent (teacher, surrogate) disagreements), `examples`
        ({"handled": [...], "deferred": [...]}, up to 10 each) and `history` (the given days
        plus this one, sorted by partition; an earlier entry for this partition is replaced).

    Raises:
        ValueError: if a non-empty `holdout` lacks one of `HOLDOUT_COLUMNS`.
    """
    holdout = _normalised_holdout(holdout)
    per_label = _per_label(holdout)
    alpha = float(gate["alpha"])
    delta = float(gate["delta"])

    handled = holdout[holdout["handled"]]
    headline = {
        "alpha": _fraction(alpha),
        "delta": _fraction(delta),
        "decision": gate["decision"],
        "reason": gate.get("reason"),
        "agreement_lower_bound": _fraction(gate.get("agreement_lower_bound")),
        "threshold": _rounded(gate.get("threshold"), THRESHOLD_DIGITS),
        "coverage_holdout": _fraction(_mean(holdout["handled"])),
        "agreement_holdout": _fraction(_mean(handled["teacher"] == handled["surrogate_label"])),
        "n_holdout": len(holdout),
        "n_handled_holdout": len(handled),
        "n_traces": int(n_traces),
        "coverage_calibration": _fraction(gate.get("coverage_calibration")),
        "n_calibration": _integer(gate.get("n_calibration")),
        "champion_version": _text(deployment.get("champion_version")),
        "deployment_decision": deployment["decision"],
        "deployment_reason": deployment.get("reason"),
        "candidate": gate.get("candidate"),
        "embedding_model": embedding_model,
    }

    return {
        "partition": partition,
        "assumption": assumption_sentence(alpha, delta),
        "headline": headline,
        "frontier": _frontier(gate.get("frontier") or ()),
        "candidates": [_candidate(candidate) for candidate in gate.get("candidates") or ()],
        "per_label": per_label,
        "defer_reasons": _defer_reasons(holdout),
        "defer_reasons_by_label": _defer_reasons_by_label(holdout, per_label),
        "confusions": _confusions(holdout),
        "examples": {
            "handled": _handled_examples(holdout),
            "deferred": _deferred_examples(holdout),
        },
        "history": _history(history, partition, per_label),
    }


def assumption_sentence(alpha: float, delta: float) -> str:
    """State what the gate guarantees, under which assumption, and what α and δ mean."""
    confidence = format_percent(1.0 - delta, trim=True)
    target = format_percent(alpha, trim=True)
    return (
        "The guarantee holds if the calibration traces are exchangeable with future traffic "
        "(drawn from the same distribution, in no particular order): then, with probability at "
        f"least 1 − δ = {confidence}, the surrogate agrees with the teacher on at least "
        f"α = {target} of the traffic it handles; α is the target agreement and δ the allowed "
        "chance that the guarantee fails."
    )


def worst_labels_markdown(report: Mapping, limit: int = 10) -> str:
    """A markdown table of the labels with the lowest coverage on held-out traces.

    Ties in coverage are broken by share (larger first), then by label.

    Args:
        report: a report from `build_report`.
        limit: most labels to list.

    Returns:
        The table, one label per row with its share of held-out traces, coverage and agreement
        as percentages ("—" where undefined); a one-line note when there are no held-out traces.
    """
    rows = sorted(
        report["per_label"], key=lambda row: (row["coverage"], -row["share"], row["label"])
    )[:limit]
    if not rows:
        return "_No held-out traces: no per-label coverage to show._"

    lines = [
        "| label | share of held-out traces | coverage (held-out) "
        "| agreement on handled (held-out) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        label = str(row["label"]).replace("|", "\\|")
        lines.append(
            f"| {label} | {format_percent(row['share'])} | {format_percent(row['coverage'])} "
            f"| {format_percent(row['agreement'])} |"
        )
    return "\n".join(lines)


def format_percent(fraction: float | None, digits: int = 1, *, trim: bool = False) -> str:
    """Show a fraction as a percentage, or "—" when it is undefined.

    Args:
        fraction: the fraction (0.934 is 93.4%), or None.
        digits: decimals of the percentage.
        trim: drop trailing zeros of the decimals ("95%" rather than "95.0%").

    Returns:
        The percentage text, for example "93.4%".
    """
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "—"
    text = f"{100.0 * fraction:.{digits}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


def _normalised_holdout(holdout: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in HOLDOUT_COLUMNS if column not in holdout.columns]
    if missing and len(holdout) > 0:
        raise ValueError(f"holdout lacks the columns {missing}")
    if len(holdout) == 0:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in HOLDOUT_COLUMNS}).astype(
            {"handled": bool, "score": float}
        )

    frame = holdout.loc[:, list(HOLDOUT_COLUMNS)].reset_index(drop=True).copy()
    for column in ("trace_id", "input", "teacher", "surrogate_label"):
        frame[column] = frame[column].astype(str)
    frame["handled"] = frame["handled"].astype(bool)
    frame["score"] = frame["score"].astype(float)
    reasons = frame["defer_reason"].astype(object).where(frame["defer_reason"].notna(), None)
    frame["defer_reason"] = pd.Series(
        [
            None if handled else (reason or UNSPECIFIED_DEFER_REASON)
            for handled, reason in zip(frame["handled"], reasons, strict=True)
        ],
        dtype=object,
    )
    return frame


def _per_label(holdout: pd.DataFrame) -> list[dict[str, Any]]:
    total = len(holdout)
    rows = []
    for label, group in holdout.groupby("teacher", sort=True):
        handled = group[group["handled"]]
        rows.append(
            {
                "label": label,
                "share": _fraction(len(group) / total),
                "n_holdout": len(group),
                "n_handled": len(handled),
                "coverage": _fraction(len(handled) / len(group)),
                "agreement": _fraction(_mean(handled["teacher"] == handled["surrogate_label"])),
                "never_handled": len(handled) == 0,
            }
        )
    rows.sort(key=lambda row: (-row["n_holdout"], row["label"]))
    return rows


def _defer_reasons(holdout: pd.DataFrame) -> dict[str, int]:
    deferred = holdout[~holdout["handled"]]
    counts = deferred["defer_reason"].value_counts()
    return {reason: int(count) for reason, count in _sorted_counts(counts.items())}


def _defer_reasons_by_label(
    holdout: pd.DataFrame, per_label: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, int]]:
    deferred = holdout[~holdout["handled"]]
    counts = deferred.groupby(["teacher", "defer_reason"]).size()
    by_label: dict[str, dict[str, int]] = {}
    for row in per_label:
        label = row["label"]
        if label in counts.index.get_level_values(0):
            label_counts = counts.loc[label]
            by_label[label] = {
                reason: int(count) for reason, count in _sorted_counts(label_counts.items())
            }
    return by_label


def _confusions(holdout: pd.DataFrame) -> list[dict[str, Any]]:
    disagreements = holdout[holdout["teacher"] != holdout["surrogate_label"]]
    confusions = []
    for (teacher, surrogate), group in disagreements.groupby(
        ["teacher", "surrogate_label"], sort=True
    ):
        confusions.append(
            {
                "teacher": teacher,
                "surrogate": surrogate,
                "count": len(group),
                "n_handled": int(group["handled"].sum()),
                "example": _excerpt(group["input"].iloc[0]),
            }
        )
    confusions.sort(key=lambda row: (-row["count"], row["teacher"], row["surrogate"]))
    return confusions[:MAX_CONFUSIONS]


def _handled_examples(holdout: pd.DataFrame) -> list[dict[str, Any]]:
    """Handled traces where the surrogate disagrees with the teacher first, then lowest scores.

    Both are what a reviewer wants to look at: the mistakes the surrogate served, and the
    traces it only just accepted.
    """
    handled = holdout[holdout["handled"]].assign(
        agrees=lambda frame: frame["teacher"] == frame["surrogate_label"]
    )
    chosen = handled.sort_values(["agrees", "score", "trace_id"], kind="stable")
    return [_example(row) for row in chosen.head(MAX_EXAMPLES).itertuples(index=False)]


def _deferred_examples(holdout: pd.DataFrame) -> list[dict[str, Any]]:
    """Deferred traces, taking the highest-scored one of each defer reason in turn."""
    deferred = holdout[~holdout["handled"]].sort_values(
        ["score", "trace_id"], ascending=[False, True], kind="stable"
    )
    queues = [
        list(group.itertuples(index=False))
        for _, group in deferred.groupby("defer_reason", sort=True)
    ]
    chosen = []
    while queues and len(chosen) < MAX_EXAMPLES:
        for queue in queues:
            if queue and len(chosen) < MAX_EXAMPLES:
                chosen.append(queue.pop(0))
        queues = [queue for queue in queues if queue]
    return [_example(row) for row in chosen]


def _example(row: Any) -> dict[str, Any]:
    return {
        "trace_id": row.trace_id,
        "input": _excerpt(row.input),
        "teacher": row.teacher,
        "surrogate_label": row.surrogate_label,
        "score": _rounded(row.score, SCORE_DIGITS),
        "defer_reason": row.defer_reason,
    }


def _candidate(candidate: Mapping) -> dict[str, Any]:
    summary = _jsonable(dict(candidate))
    summary["fit_seconds"] = _rounded(candidate.get("fit_seconds"), SECONDS_DIGITS)
    return summary


def _frontier(frontier: Sequence[Mapping]) -> list[dict[str, Any]]:
    points = [_jsonable(dict(point)) for point in frontier]
    return sorted(points, key=lambda point: point["alpha"])


def _history(
    history: Sequence[Mapping], partition: str, per_label: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    days = [
        {"partition": str(day["partition"]), "per_label": _jsonable(dict(day["per_label"]))}
        for day in history
        if str(day["partition"]) != partition
    ]
    days.append(
        {"partition": partition, "per_label": {row["label"]: row["coverage"] for row in per_label}}
    )
    return sorted(days, key=lambda day: day["partition"])


def _sorted_counts(items: Any) -> list[tuple[str, int]]:
    return sorted(((str(key), int(count)) for key, count in items), key=lambda kv: (-kv[1], kv[0]))


def _excerpt(text: str) -> str:
    if len(text) <= EXAMPLE_TEXT_CHARS:
        return text
    return text[: EXAMPLE_TEXT_CHARS - 1].rstrip() + "…"


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def _fraction(value: Any) -> float | None:
    return _rounded(value, FRACTION_DIGITS)


def _rounded(value: Any, digits: int) -> float | None:
    if value is None:
        return None
    number = float(value)
    if math.isnan(number):
        return None
    return round(number, digits)


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    """A copy of `value` made of JSON types: numpy scalars unwrapped, floats rounded, NaN None."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _rounded(value, THRESHOLD_DIGITS)
    return str(value)
