"""`tracer-pipeline check-traces FILE...`: the counts `raw_traces` would record, on the terminal."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tracer_pipeline.cli import main


@pytest.fixture
def landing(tmp_path):
    """A day's landing folder with good and bad rows in all three formats."""
    folder = tmp_path / "2026-01-01"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(
        b'{"input": "lost my card", "teacher": "card_lost"}\n{broken\n'
        b'{"input": "   ", "teacher": "card_lost"}\n'
    )
    (folder / "b.csv").write_text("input,teacher\nwhere is my refund,refund\nx,\n")
    pd.DataFrame({"input": ["card stolen"], "teacher": [3]}).to_parquet(folder / "c.parquet")
    return folder


EXPECTED = {
    "rows_read": 6,
    "rows_used": 3,
    "rows_quarantined": 3,
    "reasons": {"malformed_json": 1, "input_blank": 1, "teacher_blank": 1},
}


def test_json_output_is_one_object_with_the_four_keys(landing, capsys):
    files = sorted(str(path) for path in landing.iterdir())
    assert main(["check-traces", *files, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED


def test_text_output_lists_the_counts_and_each_reason(landing, capsys):
    files = sorted(str(path) for path in landing.iterdir())
    assert main(["check-traces", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "files read:       3",
        "rows read:        6",
        "rows used:        3",
        "rows quarantined: 3",
        "  malformed_json: 1",
        "  input_blank: 1",
        "  teacher_blank: 1",
    ]


def test_a_landing_folder_reads_like_its_files(landing, capsys):
    assert main(["check-traces", str(landing), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED


def test_a_missing_path_is_an_error_not_a_count(tmp_path, capsys):
    assert main(["check-traces", str(tmp_path / "absent.jsonl")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "absent.jsonl" in captured.err
