"""The figures of `benchmarks/speed.py`: their JSON shape, ratios and targets (no timing)."""

from __future__ import annotations

import json

import pytest

from benchmarks.speed import Figure, Target, print_table


def test_json_object_has_the_issue_fields_and_the_ratio_of_value_to_reference():
    figure = Figure("refit_seconds", 30.0, "s", 600.0, note="not in JSON",
                    target=Target("ratio", at_most=0.1))

    data = json.loads(json.dumps(figure.as_json()))

    assert data == {"name": "refit_seconds", "value": 30.0, "unit": "s", "reference": 600.0,
                    "ratio": 0.05, "target": "ratio <= 0.1", "meets_target": True}


def test_a_reference_that_did_not_run_is_missing_not_invented():
    figure = Figure("refit_seconds", 30.0, "s", None, target=Target("ratio", at_most=0.1))

    data = figure.as_json()

    assert data["reference"] is None and data["ratio"] is None
    assert data["meets_target"] is None  # unknown, neither met nor failed


@pytest.mark.parametrize(
    ("target", "value", "reference", "met"),
    [
        (Target("value", at_most=20.0), 19.9, None, True),
        (Target("value", at_most=20.0), 20.1, 400.0, False),
        (Target("ratio", at_least=2.0), 500.0, 250.0, True),
        (Target("ratio", at_least=2.0), 499.0, 250.0, False),
        (Target("difference", at_least=-1.0), 90.2, 91.1, True),
        (Target("difference", at_least=-1.0), 89.9, 91.1, False),
    ],
)
def test_target_bounds_the_value_the_ratio_or_the_difference(target, value, reference, met):
    assert Figure("f", value, "u", reference, target=target).meets_target is met


def test_table_prints_a_missing_reference_as_missing(capsys):
    print_table([Figure("routing_single_row_ms", 0.2, "ms", None,
                        target=Target("value", at_most=1.0))])

    row = capsys.readouterr().out.splitlines()[2]
    assert row.split()[:4] == ["routing_single_row_ms", "0.2", "ms", "missing"]
    assert row.rstrip().endswith("yes")


def test_a_child_process_reports_its_own_peak_memory_not_its_parents():
    import subprocess
    import sys

    import numpy as np

    from benchmarks.speed import peak_resident_mb

    held = np.ones(50_000_000)  # 400 MB resident in this process while the child starts
    child = subprocess.run(
        [sys.executable, "-c", "from benchmarks.speed import peak_resident_mb; "
         "print(peak_resident_mb())"],
        check=True, capture_output=True, text=True,
    )

    assert held.nbytes == 400_000_000 and peak_resident_mb() > 400
    assert float(child.stdout) < 200  # ru_maxrss would say > 400: the parent's peak
