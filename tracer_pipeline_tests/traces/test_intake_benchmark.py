"""The intake benchmark's own check, on a small landing folder: damage in, reasons out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "intake.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("intake_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_damaged_row_is_quarantined_with_the_reason_its_damage_calls_for():
    result = load_benchmark().run(rows=3_000, damage_share=0.10, seed=1)
    assert result["rows_read"] == 3_000
    assert result["rows_quarantined"] == result["rows_damaged"] == 300
    assert result["rows_read"] == result["rows_used"] + result["rows_quarantined"]
    assert result["reasons"] == result["expected_reasons"]
    assert result["rows_per_second"] > 0
