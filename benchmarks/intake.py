"""Intake benchmark: 100,000 trace rows with 10% assorted damage, read as `raw_traces` reads them.

Writes a landing folder of JSONL, CSV and Parquet files in which a known tenth of the rows is
damaged (each damaged row breaks exactly one rule, so its quarantine reason is known in
advance), reads it with the same snapshot and intake that `raw_traces` runs, and checks that
rows read = rows used + rows quarantined exactly and that every reason has the expected count.
Prints rows per second (wall time of the read, validation included; file writing excluded).

    python benchmarks/intake.py [--rows 100000] [--damage 0.1] [--json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracer_pipeline.traces.intake import LandingSnapshot, ingest_files
from tracer_pipeline.traces.validation import MAX_TEACHER_LABEL_CHARS

LABELS = ["card_lost", "card_arrival", "refund_request", "exchange_rate", "top_up_failed",
          "pin_blocked", "transfer_pending", "cash_withdrawal"]
FILES_PER_FORMAT = {"jsonl": 4, "csv": 3, "parquet": 3}
TOO_LONG_LABEL = "x" * (MAX_TEACHER_LABEL_CHARS + 1)

# Damage each format can carry, with the quarantine reason it must produce.
JSONL_DAMAGE = {
    "truncated line": "malformed_json",
    "array instead of object": "not_a_json_object",
    "latin-1 byte": "invalid_utf8",
    "no input field": "input_missing",
    "null teacher": "teacher_missing",
    "list as input": "non_string_input",
    "boolean teacher": "non_string_teacher",
    "whitespace input": "input_blank",
    "empty teacher": "teacher_blank",
    "sentence as teacher": "teacher_too_long",
}
CSV_DAMAGE = {
    "extra field": "malformed_csv_row",
    "latin-1 byte": "invalid_utf8",
    "empty input": "input_blank",
    "whitespace teacher": "teacher_blank",
    "sentence as teacher": "teacher_too_long",
}
PARQUET_DAMAGE = {
    "null input": "input_missing",
    "null teacher": "teacher_missing",
    "latin-1 byte": "invalid_utf8",
    "whitespace input": "input_blank",
    "sentence as teacher": "teacher_too_long",
}


def clean_row(rng: random.Random, number: int) -> tuple[str, str]:
    """A usable trace; some repeat earlier texts, some are very long, some labels are numbers."""
    label = rng.choice(LABELS)
    roll = rng.random()
    if roll < 0.05:
        text = f"message {rng.randrange(max(number, 1))} about {label}"  # likely a duplicate
    elif roll < 0.06:
        text = f"long complaint about {label}: " + "the app keeps failing. " * 150
    else:
        text = f"message {number} about {label.replace('_', ' ')}"
    return text, label


def jsonl_line(rng: random.Random, number: int, damage: str | None) -> bytes:
    text, label = clean_row(rng, number)
    record: dict = {"id": f"t{number}", "input": text, "teacher": label}
    if damage == "truncated line":
        return json.dumps(record).encode()[:-7]
    if damage == "array instead of object":
        return json.dumps([text, label]).encode()
    if damage == "latin-1 byte":
        return json.dumps(record).encode().replace(b'"input": "', b'"input": "\xe9', 1)
    if damage == "no input field":
        del record["input"]
    elif damage == "null teacher":
        record["teacher"] = None
    elif damage == "list as input":
        record["input"] = [text]
    elif damage == "boolean teacher":
        record["teacher"] = True
    elif damage == "whitespace input":
        record["input"] = " \t "
    elif damage == "empty teacher":
        record["teacher"] = ""
    elif damage == "sentence as teacher":
        record["teacher"] = TOO_LONG_LABEL
    elif rng.random() < 0.01:
        record["teacher"] = 7  # a numeric label: kept, as "7"
    return json.dumps(record).encode()


def csv_line(rng: random.Random, number: int, damage: str | None) -> bytes:
    text, label = clean_row(rng, number)
    fields = [f"t{number}", text, label]
    if damage == "extra field":
        fields.append("stray")
    elif damage == "empty input":
        fields[1] = ""
    elif damage == "whitespace teacher":
        fields[2] = "   "
    elif damage == "sentence as teacher":
        fields[2] = TOO_LONG_LABEL
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    encoded = buffer.getvalue().encode()
    if damage == "latin-1 byte":
        encoded = encoded.replace(f"t{number},".encode(), f"t{number},".encode() + b"\xe9", 1)
    return encoded


def parquet_row(rng: random.Random, number: int, damage: str | None) -> tuple:
    text, label = clean_row(rng, number)
    encoded: bytes | None = text.encode()
    teacher: str | None = label
    if damage == "null input":
        encoded = None
    elif damage == "null teacher":
        teacher = None
    elif damage == "latin-1 byte":
        encoded = b"m\xe9ssage " + encoded
    elif damage == "whitespace input":
        encoded = b"  "
    elif damage == "sentence as teacher":
        teacher = TOO_LONG_LABEL
    return f"t{number}", encoded, teacher


def write_landing(folder: Path, rows: int, damage_share: float, seed: int) -> Counter:
    """Write the landing files; return the expected quarantine count per reason."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = [(kind, index) for kind, count in FILES_PER_FORMAT.items() for index in range(count)]
    per_file = [rows // len(files) + (1 if i < rows % len(files) else 0)
                for i in range(len(files))]
    damaged_rows = set(rng.sample(range(rows), round(rows * damage_share)))
    damage_kinds = {"jsonl": JSONL_DAMAGE, "csv": CSV_DAMAGE, "parquet": PARQUET_DAMAGE}
    expected: Counter = Counter()
    number = 0
    for (kind, index), count in zip(files, per_file, strict=True):
        kinds = list(damage_kinds[kind])
        produced = []
        for _ in range(count):
            damage = rng.choice(kinds) if number in damaged_rows else None
            if damage is not None:
                expected[damage_kinds[kind][damage]] += 1
            maker = {"jsonl": jsonl_line, "csv": csv_line, "parquet": parquet_row}[kind]
            produced.append(maker(rng, number, damage))
            number += 1
        path = folder / f"traces_{index:02d}.{kind}"
        if kind == "jsonl":
            path.write_bytes(b"\n".join(produced) + b"\n")
        elif kind == "csv":
            path.write_bytes(b"id,input,teacher\n" + b"".join(produced))
        else:
            ids, inputs, teachers = zip(*produced, strict=True)
            pq.write_table(pa.table({"id": pa.array(ids), "input": pa.array(inputs, pa.binary()),
                                     "teacher": pa.array(teachers)}), path)
    return expected


def run(rows: int, damage_share: float, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="intake-benchmark-") as scratch:
        folder = Path(scratch) / "2026-01-01"
        expected = write_landing(folder, rows, damage_share, seed)
        # Great Expectations costs seconds to import and set up, once per process: do that
        # outside the timed read and report it apart.
        warm_up = Path(scratch) / "warm_up.jsonl"
        warm_up.write_text('{"input": "hello", "teacher": "greeting"}\n')
        started = time.perf_counter()
        ingest_files([warm_up])
        setup_seconds = time.perf_counter() - started
        started = time.perf_counter()
        snapshot = LandingSnapshot.take(folder)
        intake = ingest_files(snapshot.paths)
        seconds = time.perf_counter() - started
    summary = intake.summary()
    adds_up = summary["rows_read"] == summary["rows_used"] + summary["rows_quarantined"]
    reasons_match = summary["reasons"] == dict(expected)
    return {
        "rows_generated": rows,
        "rows_damaged": sum(expected.values()),
        "files": len(snapshot.files),
        **summary,
        "expected_reasons": dict(sorted(expected.items())),
        "rows_read_equals_used_plus_quarantined": adds_up,
        "reasons_match_damage": reasons_match,
        "duplicates_in_day": int(intake.traces["duplicate_in_day"].sum()),
        "long_texts": int(intake.traces["long_text"].sum()),
        "validation_setup_seconds": round(setup_seconds, 2),
        "read_seconds": round(seconds, 2),
        "rows_per_second": round(summary["rows_read"] / seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--damage", type=float, default=0.10, help="share of damaged rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.rows, args.damage, args.seed)
    ok = result["rows_read_equals_used_plus_quarantined"] and result["reasons_match_damage"]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['rows_generated']:,} rows in {result['files']} files "
              f"(JSONL, CSV, Parquet), {result['rows_damaged']:,} damaged")
        print(f"rows read {result['rows_read']:,} = used {result['rows_used']:,} + quarantined "
              f"{result['rows_quarantined']:,}: {result['rows_read_equals_used_plus_quarantined']}")
        print(f"quarantine reasons match the damage: {result['reasons_match_damage']}")
        for reason, count in result["reasons"].items():
            print(f"  {reason}: {count:,} (expected {result['expected_reasons'].get(reason, 0):,})")
        print(f"kept and flagged: {result['duplicates_in_day']:,} duplicates, "
              f"{result['long_texts']:,} long texts")
        print(f"read and validated in {result['read_seconds']} s: "
              f"{result['rows_per_second']:,} rows/s (plus {result['validation_setup_seconds']} s "
              "once per process to set up Great Expectations)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
