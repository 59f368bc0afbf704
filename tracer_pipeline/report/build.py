"""Build the daily interpretability report from held-out traces and the gate's result.

Every number in the report that is not the gate's own comes from HELD-OUT traces, which the
surrogate never trained on: the coverage (share of traffic the surrogate handles), the agreement
(share of handled traces where the surrogate's label equals the teacher's), per teacher label,
why the rest was deferred, and which labels the surrogate confuses. The gate's numbers (certified
agreement lower bound, frontier, coverage on calibration) are copied as they are, labelled as
measured on calibration traces.

Boundary pairs put a handled held-out input beside the nearest deferred held-out input of the
same teacher label (exact cosine nearest neighbours in embedding space), to show where the
routing boundary runs. Over time, a label's coverage has plateaued when the last days brought
more traces but no gain in its coverage. The cost saved per day is what the LLM calls avoided
would have cost: daily traffic × held-out coverage × price per call.

The report is a plain dict of JSON values (str, int, float, bool, None, lists and dicts), with
None wherever a number is undefined (for example the agreement of a label the surrogate never
handled). Numbers are kept as computed, not rounded (only dollars are rounded to cents), so that
they equal the gate's figures in MLflow and the page, which rounds for display, never rounds twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tracer_pipeline.storage import HOLDOUT_COLUMNS

# A deferred trace whose defer_reason is missing is counted under this reason.
UNSPECIFIED_DEFER_REASON = "unspecified"
MAX_CONFUSIONS = 10
MAX_EXAMPLES = 10
MAX_BOUNDARY_PAIRS = 10
# A label has plateaued when its held-out coverage today is less than PLATEAU_MIN_GAIN above its
# best over the previous PLATEAU_DAYS - 1 days, although the refit drew on more traces.
# Known shortcoming: the plateau compares point estimates of a label's held-out coverage from day
# to day; with few held-out traces of a label it can be noise (no interval is used yet).
PLATEAU_DAYS = 3
PLATEAU_MIN_GAIN = 0.01
MONEY_DIGITS = 2

# The reasons the router records for a deferral: (code in the JSON, name, what it means).
DEFER_REASONS = (
    ("low_confidence", "low confidence", "the acceptor's score was below the threshold"),
    (
        "far_from_training",
        "far from every training trace",
        "the input lies farther from the training traces in embedding space (or is more "
        "ambiguous to the surrogate) than the traffic the gate was calibrated on",
    ),
    (
        "neighbours_disagree",
        "neighbours disagree",
        "the score was below the threshold and the nearest training traces favour another label",
    ),
    (
        "label_rarely_seen",
        "label rarely seen",
        "the predicted label had too few training traces to be handled",
    ),
    (
        "label_not_certified",
        "label not certified",
        "the gate could not certify agreement α on the predicted label alone (per-label floor)",
    ),
    (
        "gate_refused",
        "gate refused",
        "the gate refused to deploy the refit, so every input goes to the LLM",
    ),
    (UNSPECIFIED_DEFER_REASON, "unspecified", "deferred without a recorded reason"),
)
# Example and confusion texts longer than this are cut, so that the report stays small.
EXAMPLE_TEXT_CHARS = 300


def build_report(
    *,
    partition: str,
    holdout: pd.DataFrame,
    gate: Mapping,
    deployment: Mapping,
    n_traces: int,
    embedding_model: str,
    price_per_llm_call: float,
    daily_traffic: int,
    holdout_embeddings: np.ndarray | None = None,
    history: Sequence[Mapping] = (),
    previous_champion: Mapping | None = None,
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
            and `reason`; optionally `champion_before`, `challenger_version` and `comparison`
            (challenger and champion on the newest day's held-out traces).
        n_traces: number of traces the refit drew on (training, calibration and held-out).
        embedding_model: name of the sentence embedding model.
        price_per_llm_call: US dollars per call to the teacher LLM.
        daily_traffic: classification requests per day.
        holdout_embeddings: the embeddings of `holdout`, row for row, for the boundary pairs;
            None leaves the boundary pairs empty.
        history: earlier days' per-label coverage on held-out traces, as
            [{"partition": ..., "n_traces": ..., "per_label": {label: coverage}}].
        previous_champion: the report of the day whose refit was the champion before this
            deployment (`champion_before`), to show what changed; None when there was none.

    Returns:
        The report: `partition`, `assumption`, `headline`, `frontier`, `candidates`,
        `per_label` (sorted by share, largest first), `defer_reasons`, `defer_reasons_by_label`,
        `confusions` (the 10 most frequent (teacher, surrogate) disagreements), `examples`
        ({"handled": [...], "deferred": [...]}, up to 10 each), `boundary_pairs`, `history`
        (the given days plus this one, sorted by partition; an earlier entry for this partition
        is replaced), `over_time` (per-label coverage by day with a plateau flag),
        `champion_change` and `defer_reason_names` (code → name and meaning).

    Raises:
        ValueError: if a non-empty `holdout` lacks one of `HOLDOUT_COLUMNS`, or
            `holdout_embeddings` does not have one row per held-out trace.
    """
    if holdout_embeddings is not None and len(holdout_embeddings) != len(holdout):
        raise ValueError(
            f"{len(holdout_embeddings)} embeddings for {len(holdout)} held-out traces"
        )
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
        "threshold": _number(gate.get("threshold")),
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
        **_cost_saved(_mean(holdout["handled"]), price_per_llm_call, daily_traffic),
    }
    history_days = _history(history, partition, int(n_traces), per_label)

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
        "boundary_pairs": _boundary_pairs(holdout, holdout_embeddings, per_label),
        "history": history_days,
        "over_time": _over_time(history_days, per_label),
        "champion_change": _champion_change(deployment, headline, per_label, previous_champion),
        "defer_reason_names": {
            code: {"name": name, "meaning": meaning} for code, name, meaning in DEFER_REASONS
        },
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


def headline_markdown(report: Mapping) -> str:
    """The headline as a short markdown list, for the materialization's metadata."""
    head = report["headline"]
    decision = head["decision"] + (f" ({head['reason']})" if head.get("reason") else "")
    return "\n".join(
        [
            f"- gate: **{decision}** at α = {format_percent(head['alpha'], trim=True)}, "
            f"δ = {format_percent(head['delta'], trim=True)}",
            f"- certified agreement lower bound (calibration traces): "
            f"{format_percent(head['agreement_lower_bound'])}",
            f"- coverage on held-out traces: {format_percent(head['coverage_holdout'])}; "
            f"agreement on handled held-out traces: {format_percent(head['agreement_holdout'])} "
            f"({head['n_handled_holdout']} of {head['n_holdout']} handled)",
            f"- deployment: {head['deployment_decision']}; champion version "
            f"{head['champion_version'] or 'none'}",
            f"- traces used: {head['n_traces']}",
            f"- cost saved per day: ${head['cost_saved_per_day']:,.2f} "
            f"({head['llm_calls_avoided_per_day']:,} of {head['daily_traffic']:,} LLM calls at "
            f"${head['price_per_llm_call']:g} each, at held-out coverage)",
        ]
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
        "score": _number(row.score),
        "defer_reason": row.defer_reason,
    }


def _candidate(candidate: Mapping) -> dict[str, Any]:
    summary = _jsonable(dict(candidate))
    summary["fit_seconds"] = _number(candidate.get("fit_seconds"))
    return summary


def _frontier(frontier: Sequence[Mapping]) -> list[dict[str, Any]]:
    points = [_jsonable(dict(point)) for point in frontier]
    return sorted(points, key=lambda point: point["alpha"])


def _history(
    history: Sequence[Mapping],
    partition: str,
    n_traces: int,
    per_label: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    days = [
        {
            "partition": str(day["partition"]),
            "n_traces": _integer(day.get("n_traces")),
            "per_label": _jsonable(dict(day["per_label"])),
        }
        for day in history
        if str(day["partition"]) != partition
    ]
    days.append(
        {
            "partition": partition,
            "n_traces": n_traces,
            "per_label": {row["label"]: row["coverage"] for row in per_label},
        }
    )
    return sorted(days, key=lambda day: day["partition"])


def _over_time(
    history_days: Sequence[Mapping[str, Any]], per_label: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per-label held-out coverage by day, and whether each label's coverage has plateaued.

    A label has plateaued (True) when the refit of the last day drew on more traces than the
    one PLATEAU_DAYS - 1 days of history earlier, and its coverage today is less than
    PLATEAU_MIN_GAIN above its best over those earlier days. None: fewer than PLATEAU_DAYS days
    with a coverage for the label, or no trace counts to compare. `gain` is the label's coverage
    today minus its best over those earlier days (negative when it fell), None likewise.
    """
    days = [day["partition"] for day in history_days]
    labels = [row["label"] for row in per_label]
    labels += sorted({label for day in history_days for label in day["per_label"]} - set(labels))
    rows = []
    for label in labels:
        coverage = [day["per_label"].get(label) for day in history_days]
        rows.append(
            {
                "label": label,
                "coverage": coverage,
                "plateau": _plateau(coverage, [day.get("n_traces") for day in history_days]),
                "gain": _gain(coverage),
            }
        )
    return {
        "days": days,
        "n_traces": [day.get("n_traces") for day in history_days],
        "plateau_days": PLATEAU_DAYS,
        "plateau_min_gain": PLATEAU_MIN_GAIN,
        "labels": rows,
    }


def _gain(coverage: Sequence[float | None]) -> float | None:
    window = [value for value in coverage if value is not None][-PLATEAU_DAYS:]
    if len(window) < PLATEAU_DAYS:
        return None
    return window[-1] - max(window[:-1])


def _plateau(coverage: Sequence[float | None], n_traces: Sequence[int | None]) -> bool | None:
    window = [
        (value, count)
        for value, count in zip(coverage, n_traces, strict=True)
        if value is not None
    ][-PLATEAU_DAYS:]
    if len(window) < PLATEAU_DAYS or window[0][1] is None or window[-1][1] is None:
        return None
    more_traces = window[-1][1] > window[0][1]
    best_before = max(value for value, _ in window[:-1])
    return bool(more_traces and window[-1][0] - best_before < PLATEAU_MIN_GAIN)


def _cost_saved(
    coverage: float | None, price_per_llm_call: float, daily_traffic: int
) -> dict[str, Any]:
    """LLM calls and dollars the surrogate saves per day at its held-out coverage."""
    calls_avoided = daily_traffic * (coverage or 0.0)
    return {
        "price_per_llm_call": float(price_per_llm_call),
        "daily_traffic": int(daily_traffic),
        "llm_calls_avoided_per_day": round(calls_avoided),
        "cost_saved_per_day": round(calls_avoided * price_per_llm_call, MONEY_DIGITS),
    }


def _boundary_pairs(
    holdout: pd.DataFrame,
    embeddings: np.ndarray | None,
    per_label: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Per teacher label, the closest (handled, deferred) pair of its held-out inputs.

    Exact nearest neighbours by cosine similarity over all handled × deferred inputs of the
    label; labels whose inputs were all handled or all deferred have no pair. Labels are taken
    by share of held-out traces, largest first, up to MAX_BOUNDARY_PAIRS.
    """
    if embeddings is None or len(holdout) == 0:
        return []
    unit = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms == 0, 1.0, norms)
    handled_mask = holdout["handled"].to_numpy(dtype=bool)
    teacher = holdout["teacher"].to_numpy(dtype=object)

    pairs = []
    for row in per_label:
        same_label = teacher == row["label"]
        handled_rows = np.flatnonzero(same_label & handled_mask)
        deferred_rows = np.flatnonzero(same_label & ~handled_mask)
        if len(handled_rows) == 0 or len(deferred_rows) == 0:
            continue
        similarity = unit[handled_rows] @ unit[deferred_rows].T
        best_handled, best_deferred = np.unravel_index(np.argmax(similarity), similarity.shape)
        pairs.append(
            {
                "label": row["label"],
                "cosine_similarity": _number(similarity[best_handled, best_deferred]),
                "handled": _example(holdout.iloc[handled_rows[best_handled]]),
                "deferred": _example(holdout.iloc[deferred_rows[best_deferred]]),
            }
        )
        if len(pairs) == MAX_BOUNDARY_PAIRS:
            break
    return pairs


# Headline figures compared between the previous champion's report and today's.
CHAMPION_CHANGE_FIGURES = {
    "alpha": "fraction",
    "candidate": "text",
    "coverage_holdout": "fraction",
    "agreement_holdout": "fraction",
    "agreement_lower_bound": "fraction",
    "coverage_calibration": "fraction",
    "threshold": "number",
    "n_traces": "count",
}


def _champion_change(
    deployment: Mapping,
    headline: Mapping[str, Any],
    per_label: Sequence[Mapping[str, Any]],
    previous_champion: Mapping | None,
) -> dict[str, Any]:
    """What the deployment decided against the previous champion, and what differs from it.

    `comparison` is the deployment's own: challenger and champion on the same fresh traces.
    `figures` and `per_label` set the previous champion's report beside today's, each measured
    on its own day's held-out traces.
    """
    change: dict[str, Any] = {
        "decision": deployment.get("decision"),
        "reason": deployment.get("reason"),
        "champion_before": _text(deployment.get("champion_before")),
        "champion_after": _text(deployment.get("champion_version")),
        "challenger_version": _text(deployment.get("challenger_version")),
        "comparison": _jsonable(deployment.get("comparison")),
        "previous_champion_partition": None,
        "figures": [],
        "per_label": [],
    }
    if previous_champion is None:
        return change

    before_headline = previous_champion.get("headline", {})
    change["previous_champion_partition"] = previous_champion.get("partition")
    change["figures"] = [
        {
            "figure": key,
            "unit": unit,
            "previous_champion": before_headline.get(key),
            "today": headline.get(key),
        }
        for key, unit in CHAMPION_CHANGE_FIGURES.items()
    ]
    before = {row["label"]: row["coverage"] for row in previous_champion.get("per_label", ())}
    today = {row["label"]: row["coverage"] for row in per_label}
    for label in [row["label"] for row in per_label] + sorted(set(before) - set(today)):
        coverage_before, coverage_today = before.get(label), today.get(label)
        difference = (
            None
            if coverage_before is None or coverage_today is None
            else _fraction(coverage_today - coverage_before)
        )
        change["per_label"].append(
            {
                "label": label,
                "coverage_previous_champion": coverage_before,
                "coverage_today": coverage_today,
                "change": difference,
            }
        )
    return change


def _sorted_counts(items: Any) -> list[tuple[str, int]]:
    return sorted(((str(key), int(count)) for key, count in items), key=lambda kv: (-kv[1], kv[0]))


def _excerpt(text: str) -> str:
    if len(text) <= EXAMPLE_TEXT_CHARS:
        return text
    return text[: EXAMPLE_TEXT_CHARS - 1].rstrip() + "…"


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def _fraction(value: Any) -> float | None:
    return _number(value)


def _number(value: Any) -> float | None:
    """The value as a float, or None when it is None or NaN."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    """A copy of `value` made of JSON types: numpy scalars unwrapped, NaN None."""
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
        return _number(value)
    return str(value)
