"""The demo trace generator: deterministic, varied texts, LLM-like teacher mistakes, files."""

from __future__ import annotations

import datetime
import json
from collections import Counter
from pathlib import Path

import pytest

from tracer_pipeline.demo.generator import (
    DEMO_CONFUSABLE_PAIRS,
    DEMO_INTENTS,
    TRACE_FILE_NAME,
    generate_traces,
    write_demo_landing,
)
from tracer_pipeline.demo.templates import RELATED_INTENTS, VAGUE_TEMPLATES

DAY = datetime.date(2026, 1, 5)
CONFUSABLE = {frozenset(pair) for pair in DEMO_CONFUSABLE_PAIRS}


@pytest.fixture(scope="module")
def many_traces() -> list[dict]:
    return generate_traces(4000, day=DAY, seed=7)


def _wrong(traces: list[dict]) -> list[dict]:
    return [trace for trace in traces if trace["teacher"] != trace["metadata"]["true_intent"]]


def test_same_arguments_give_identical_traces():
    assert generate_traces(300, day=DAY, seed=3) == generate_traces(300, day=DAY, seed=3)


def test_other_seed_gives_other_traces():
    first = generate_traces(300, day=DAY, seed=3)
    second = generate_traces(300, day=DAY, seed=4)
    assert {trace["id"] for trace in first}.isdisjoint({trace["id"] for trace in second})
    assert [trace["input"] for trace in first] != [trace["input"] for trace in second]


def test_there_are_at_least_14_intents_and_all_of_them_occur(many_traces):
    assert len(DEMO_INTENTS) >= 14
    assert len(set(DEMO_INTENTS)) == len(DEMO_INTENTS)
    assert {trace["metadata"]["true_intent"] for trace in many_traces} == set(DEMO_INTENTS)


def test_traces_have_the_trace_fields_with_unique_ids_and_timestamps_within_the_day(
    many_traces,
):
    for trace in many_traces:
        assert set(trace) == {"id", "input", "teacher", "timestamp", "metadata"}
        assert trace["input"].strip()
        assert trace["teacher"] in DEMO_INTENTS
        assert trace["metadata"]["channel"] in {"chat", "email", "app"}
        assert datetime.datetime.fromisoformat(trace["timestamp"]).date() == DAY
    assert len({trace["id"] for trace in many_traces}) == len(many_traces)
    timestamps = [trace["timestamp"] for trace in many_traces]
    assert timestamps == sorted(timestamps)


def test_class_frequencies_are_imbalanced(many_traces):
    counts = Counter(trace["metadata"]["true_intent"] for trace in many_traces)
    assert max(counts.values()) >= 5 * min(counts.values())


def test_teacher_noise_rate_is_a_few_percent(many_traces):
    noise_rate = len(_wrong(many_traces)) / len(many_traces)
    assert 0.03 <= noise_rate <= 0.06


def test_teacher_mistakes_concentrate_on_confusable_pairs_and_ambiguous_texts(many_traces):
    wrong = _wrong(many_traces)
    inside_pairs = [
        trace
        for trace in wrong
        if frozenset((trace["teacher"], trace["metadata"]["true_intent"])) in CONFUSABLE
    ]
    assert len(inside_pairs) / len(wrong) >= 0.55

    ambiguous = [trace for trace in many_traces if trace["metadata"]["ambiguous"]]
    clear = [trace for trace in many_traces if not trace["metadata"]["ambiguous"]]
    ambiguous_error_rate = len(_wrong(ambiguous)) / len(ambiguous)
    clear_error_rate = len(_wrong(clear)) / len(clear)
    assert ambiguous_error_rate >= 5 * clear_error_rate


def test_wrong_teacher_labels_are_related_labels_not_random_flips(many_traces):
    # A uniform flip over 19 intents would rarely land on the one or two related labels.
    plausible = {
        (intent, related) for intent, labels in RELATED_INTENTS.items() for related in labels
    }
    plausible |= {(intent, lure) for intent, pairs in VAGUE_TEMPLATES.items() for _, lure in pairs}
    plausible |= {(first, second) for first, second in DEMO_CONFUSABLE_PAIRS}
    plausible |= {(second, first) for first, second in DEMO_CONFUSABLE_PAIRS}
    wrong = _wrong(many_traces)
    assert all((trace["metadata"]["true_intent"], trace["teacher"]) in plausible for trace in wrong)


def test_texts_rarely_repeat(many_traces):
    unique_share = len({trace["input"] for trace in many_traces}) / len(many_traces)
    assert unique_share >= 0.85


def test_texts_come_in_several_styles(many_traces):
    texts = [trace["input"] for trace in many_traces]
    assert any(text.startswith(("Dear", "To whom")) for text in texts)
    assert any("!!" in text for text in texts)
    assert any(text == text.lower() and len(text) > 40 for text in texts)
    lengths = [len(text.split()) for text in texts]
    assert min(lengths) <= 3
    assert max(lengths) >= 30


def test_days_differ():
    monday = generate_traces(200, day=DAY, seed=0)
    tuesday = generate_traces(200, day=DAY + datetime.timedelta(days=1), seed=0)
    assert {trace["id"] for trace in monday}.isdisjoint({trace["id"] for trace in tuesday})
    assert {trace["input"] for trace in monday} != {trace["input"] for trace in tuesday}


def test_negative_count_is_refused():
    with pytest.raises(ValueError):
        generate_traces(-1, day=DAY, seed=0)


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_landing_files_hold_the_good_rows_and_one_of_each_kind_of_bad_row(tmp_path):
    days = [DAY, DAY + datetime.timedelta(days=1)]
    written = write_demo_landing(tmp_path, days, rows_per_day=[50, 80], seed=1, bad_rows_per_day=4)

    assert written == {days[0].isoformat(): 54, days[1].isoformat(): 84}
    for day, good_rows in zip(days, (50, 80), strict=True):
        folder = tmp_path / day.isoformat()
        assert [path.name for path in folder.iterdir()] == [TRACE_FILE_NAME]
        lines = _read_lines(folder / TRACE_FILE_NAME)
        assert len(lines) == good_rows + 4

        records, malformed = [], 0
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                malformed += 1
        assert malformed == 1
        assert sum(1 for record in records if "teacher" not in record) == 1
        assert sum(1 for record in records if record["input"] == "") == 1
        assert sum(1 for record in records if record["input"] and not record["input"].strip()) == 1
        good = [
            record for record in records if "teacher" in record and record["input"].strip()
        ]
        assert good == generate_traces(good_rows, day=day, seed=1)


def test_default_bad_rows_are_spread_among_the_good_rows(tmp_path):
    write_demo_landing(tmp_path, [DAY], rows_per_day=100)
    lines = _read_lines(tmp_path / DAY.isoformat() / TRACE_FILE_NAME)
    assert len(lines) == 103
    bad_positions = []
    for position, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad_positions.append(position)
            continue
        if "teacher" not in record or not record["input"].strip():
            bad_positions.append(position)
    assert len(bad_positions) == 3
    assert 0 < bad_positions[0] and bad_positions[-1] < len(lines) - 1


def test_rewriting_a_day_replaces_its_file_with_the_same_bytes(tmp_path):
    write_demo_landing(tmp_path, [DAY], rows_per_day=30, seed=2)
    path = tmp_path / DAY.isoformat() / TRACE_FILE_NAME
    first = path.read_bytes()
    path.write_text("stale content\n", encoding="utf-8")

    write_demo_landing(tmp_path, [DAY], rows_per_day=30, seed=2)

    assert path.read_bytes() == first
    assert sorted(item.name for item in path.parent.iterdir()) == [TRACE_FILE_NAME]


def test_rows_per_day_must_match_the_days(tmp_path):
    with pytest.raises(ValueError):
        write_demo_landing(tmp_path, [DAY], rows_per_day=[10, 20])
