"""The Great Expectations suite that every day's parsed traces must meet.

The suite runs on the frame the reader parsed. Each failing row is sent to quarantine with the
reason named after the expectation it broke; the suite's overall result also feeds the
`raw_traces` asset check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

# A teacher label longer than this is not a label but a sentence the LLM returned by mistake.
MAX_TEACHER_LABEL_CHARS = 200

SUITE_NAME = "raw_traces_suite"
BLANK_TEXT = r"^\s*$"

# (reason recorded in quarantine, expectation class name, its keyword arguments)
EXPECTATIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("input_missing", "ExpectColumnValuesToNotBeNull", {"column": "input"}),
    ("input_blank", "ExpectColumnValuesToNotMatchRegex", {"column": "input", "regex": BLANK_TEXT}),
    ("teacher_missing", "ExpectColumnValuesToNotBeNull", {"column": "teacher"}),
    (
        "teacher_blank",
        "ExpectColumnValuesToNotMatchRegex",
        {"column": "teacher", "regex": BLANK_TEXT},
    ),
    (
        "teacher_too_long",
        "ExpectColumnValueLengthsToBeBetween",
        {"column": "teacher", "min_value": 1, "max_value": MAX_TEACHER_LABEL_CHARS},
    ),
)


@dataclass
class TraceValidation:
    """Outcome of the suite on one day's parsed traces.

    `row_reasons` maps a row's position in the validated frame to the first expectation it broke.
    """

    success: bool
    expectations: list[dict[str, Any]] = field(default_factory=list)
    row_reasons: dict[int, str] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _validation_definition():
    # Imported here: great_expectations costs several seconds to import.
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_or_update_pandas("traces")
    batch = source.add_dataframe_asset("day").add_batch_definition_whole_dataframe("whole_day")
    suite = context.suites.add_or_update(gx.ExpectationSuite(SUITE_NAME))
    for reason, class_name, kwargs in EXPECTATIONS:
        expectation = getattr(gxe, class_name)(**kwargs, meta={"reason": reason})
        suite.add_expectation(expectation)
    definition = gx.ValidationDefinition(name=f"{SUITE_NAME}_on_day", data=batch, suite=suite)
    return context.validation_definitions.add_or_update(definition)


def validate_traces(parsed: pd.DataFrame) -> TraceValidation:
    """Run the trace suite on `parsed` (columns `input` and `teacher`) and name failing rows."""
    frame = parsed[["input", "teacher"]].reset_index(drop=True).astype(object)
    if frame.empty:
        return TraceValidation(success=True, expectations=[], row_reasons={})
    result = _validation_definition().run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE"},
    )
    reasons_by_type = {
        (class_name, kwargs["column"]): reason for reason, class_name, kwargs in EXPECTATIONS
    }
    row_reasons: dict[int, str] = {}
    summaries = []
    for expectation_result in result.results:
        config = expectation_result.expectation_config
        reason = (config.meta or {}).get("reason") or reasons_by_type.get(
            (config.type, config.kwargs.get("column")), config.type
        )
        failing = expectation_result.result.get("unexpected_index_list") or []
        for position in failing:
            row_reasons.setdefault(int(position), reason)
        summaries.append(
            {
                "expectation": config.type,
                "column": config.kwargs.get("column"),
                "reason": reason,
                "success": bool(expectation_result.success),
                "unexpected_count": len(failing),
            }
        )
    return TraceValidation(success=bool(result.success), expectations=summaries,
                           row_reasons=row_reasons)
