"""Generated customer-support traces for the demo: a bank's support desk, one folder per day.

Real benchmark data may not be committed, so the demo writes its own traces. Each trace is a
customer query built from a template of its true intent, slot fillers (cards, merchants,
amounts, places, ...) and a paraphrase style (polite, terse, angry, extra context, email
greeting and sign-off, lowercase, typos), so that texts rarely repeat.

The teacher label is wrong the way an LLM is wrong, not at random: a few per cent of traces,
mostly texts that fit both intents of a confusable pair (lost or stolen card, pending or failed
transfer, refund requested or not received, declined card or broken contactless), then
underspecified texts that get the related label an LLM leans to, and rarely a clear text that
gets a plausible related label. `metadata["true_intent"]` keeps the intent the text was built
from, for analysis.

Everything is deterministic in its arguments: each trace draws from its own random generator
seeded by (seed, day, index), so the same call always writes the same files.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tracer_pipeline.demo.templates import (
    AMBIGUOUS_TEMPLATES,
    ANGRY_CLOSINGS,
    ANGRY_OPENINGS,
    CLEAR_TEMPLATES,
    CONFUSABLE_PAIRS,
    CONTEXT_SENTENCES,
    CURRENCY_SYMBOLS,
    CUSTOMER_NAMES,
    EMAIL_OPENINGS,
    EMAIL_SIGNOFFS,
    INTENT_WEIGHTS,
    POLITE_CLOSINGS,
    POLITE_OPENINGS,
    RELATED_INTENTS,
    SLOT_FILLERS,
    TERSE_TEMPLATES,
    VAGUE_TEMPLATES,
)

DEMO_INTENTS: tuple[str, ...] = tuple(INTENT_WEIGHTS)
DEMO_CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = CONFUSABLE_PAIRS
TRACE_FILE_NAME = "traces.jsonl"

# Which kind of text a trace gets, given its intent. Intents of a confusable pair get a text
# that fits both intents this often; intents with vague templates get one this often.
AMBIGUOUS_TEXT_RATE = 0.22
VAGUE_TEXT_RATE = 0.08
TERSE_TEXT_RATE = 0.07

# How often the teacher gives a wrong label, by kind of text. Together with the rates above these
# give about 4.5-5 % wrong labels overall, about 70 % of them inside confusable pairs.
TEACHER_ERROR_RATE_AMBIGUOUS = 0.22
TEACHER_ERROR_RATE_VAGUE = 0.22
TEACHER_ERROR_RATE_CLEAR_IN_PAIR = 0.025
TEACHER_ERROR_RATE_CLEAR = 0.006
# A wrong teacher label on a text of a confusable pair names the other intent of the pair this
# often; otherwise it names one of the intent's related labels.
PARTNER_SHARE_OF_PAIR_ERRORS = 0.85

CHANNEL_WEIGHTS = {"chat": 0.5, "app": 0.3, "email": 0.2}
# Day-to-day drift of the intent mix: a lognormal factor per intent and day, and on some days a
# transfer outage that multiplies failed transfers.
DAILY_WEIGHT_SIGMA = 0.2
OUTAGE_DAY_RATE = 0.15
OUTAGE_MULTIPLIER = 3.0

BAD_ROW_KINDS = ("empty_input", "missing_teacher", "malformed_json", "whitespace_input")

_PARTNER_OF: dict[str, str] = {
    intent: other for pair in CONFUSABLE_PAIRS for intent, other in (pair, pair[::-1])
}
_PAIR_OF: dict[str, tuple[str, str]] = {
    intent: pair for pair in CONFUSABLE_PAIRS for intent in pair
}


def generate_traces(n: int, *, day: datetime.date, seed: int) -> list[dict]:
    """Generate `n` well-formed demo traces for one day, sorted by timestamp.

    Args:
        n: number of traces.
        day: the day the traces belong to; their timestamps fall within it (UTC), and the day
            also shifts the intent mix a little, as real traffic drifts.
        seed: seed of the random choices; the result is a function of (n, day, seed).

    Returns:
        A list of dicts with keys `id` (unique for (seed, day, index)), `input`, `teacher`,
        `timestamp` (ISO 8601 with UTC offset) and `metadata` ({"channel", "true_intent",
        "ambiguous"}; `ambiguous` marks texts that fit both intents of a confusable pair).

    Raises:
        ValueError: if `n` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")

    intent_weights = _daily_intent_weights(day, seed)
    intents = list(intent_weights)
    weights = [intent_weights[intent] for intent in intents]
    traces = []
    for index in range(n):
        rng = random.Random(f"trace|{seed}|{day.isoformat()}|{index}")
        true_intent = rng.choices(intents, weights=weights)[0]
        traces.append(_generate_trace(rng, true_intent, day, seed, index))

    traces.sort(key=lambda trace: (trace["timestamp"], trace["id"]))
    return traces


def write_demo_landing(
    landing_dir: Path,
    days: Sequence[datetime.date],
    rows_per_day: int | Sequence[int] = 400,
    *,
    seed: int = 0,
    bad_rows_per_day: int = 3,
) -> dict[str, int]:
    """Write one landing folder of generated traces per day, with a few deliberately bad rows.

    Each day goes to `landing_dir/<YYYY-MM-DD>/traces.jsonl`, one JSON object per line. The file
    is written to a hidden temporary name in the same folder and then moved into place with
    `os.replace`, so a reader never sees half a file; an existing file for the day is replaced
    (the same arguments always write the same bytes).

    The bad rows, so that the quarantine has something to show, cycle through an empty input, a
    missing teacher, a line of malformed JSON and a whitespace-only input (the cycle starts at a
    different kind each day), and sit at fixed places among the good rows.

    Args:
        landing_dir: folder that holds the per-day landing folders; created if missing.
        days: the days to write.
        rows_per_day: good traces per day, one number for all days or one per day.
        seed: seed of the generated traces.
        bad_rows_per_day: deliberately bad rows added to each day's file.

    Returns:
        {day in ISO format: lines written}, bad rows included.

    Raises:
        ValueError: if `rows_per_day` is a sequence whose length differs from `days`, or a
            count is negative.
    """
    if isinstance(rows_per_day, Sequence):
        counts = [int(count) for count in rows_per_day]
        if len(counts) != len(days):
            raise ValueError(
                f"rows_per_day has {len(counts)} entries for {len(days)} days; give one per day"
            )
    else:
        counts = [int(rows_per_day)] * len(days)
    if bad_rows_per_day < 0 or any(count < 0 for count in counts):
        raise ValueError("row counts must be >= 0")

    landing_dir = Path(landing_dir)
    written: dict[str, int] = {}
    for day, count in zip(days, counts, strict=True):
        good_lines = [_json_line(trace) for trace in generate_traces(count, day=day, seed=seed)]
        bad_lines = _bad_lines(day, seed, bad_rows_per_day)
        lines = _interleave(good_lines, bad_lines)
        day_dir = landing_dir / day.isoformat()
        day_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(day_dir / TRACE_FILE_NAME, "".join(line + "\n" for line in lines))
        written[day.isoformat()] = len(lines)
    return written


def _daily_intent_weights(day: datetime.date, seed: int) -> dict[str, float]:
    rng = random.Random(f"day|{seed}|{day.isoformat()}")
    weights = {
        intent: base * rng.lognormvariate(0.0, DAILY_WEIGHT_SIGMA)
        for intent, base in INTENT_WEIGHTS.items()
    }
    if rng.random() < OUTAGE_DAY_RATE:
        weights["transfer_failed"] *= OUTAGE_MULTIPLIER
    return weights


def _generate_trace(
    rng: random.Random, true_intent: str, day: datetime.date, seed: int, index: int
) -> dict[str, Any]:
    channel = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()))[0]
    slots = _fill_slots(rng)

    # Pick the kind of text, then the template; the kind decides how likely the teacher errs.
    pair = _PAIR_OF.get(true_intent)
    vague = VAGUE_TEMPLATES.get(true_intent, ())
    draw = rng.random()
    lure: str | None = None
    if pair is not None and draw < AMBIGUOUS_TEXT_RATE:
        kind = "ambiguous"
        template = rng.choice(AMBIGUOUS_TEMPLATES[pair])
    elif vague and draw > 1.0 - VAGUE_TEXT_RATE:
        kind = "vague"
        template, lure = rng.choice(vague)
    elif rng.random() < TERSE_TEXT_RATE:
        kind = "terse"
        template = rng.choice(TERSE_TEMPLATES[true_intent])
    else:
        kind = "clear"
        template = rng.choice(CLEAR_TEMPLATES[true_intent])

    core = template.format_map(slots)
    text = core if kind == "terse" else _paraphrase(rng, core, channel, slots)
    teacher = _teacher_label(rng, true_intent, kind, lure)
    return {
        "id": _trace_id("trace", seed, day, index),
        "input": text,
        "teacher": teacher,
        "timestamp": _timestamp(rng, day),
        "metadata": {
            "channel": channel,
            "true_intent": true_intent,
            "ambiguous": kind == "ambiguous",
        },
    }


def _fill_slots(rng: random.Random) -> dict[str, str]:
    slots = {name: rng.choice(options) for name, options in SLOT_FILLERS.items()}
    slots["recipient"] = slots["recipient"].format(country=slots["country"])
    symbol = rng.choice(CURRENCY_SYMBOLS)
    slots["amount"] = _amount(rng, symbol)
    slots["amount2"] = _amount(rng, symbol)
    slots["years"] = str(rng.randint(2, 15))
    return slots


def _amount(rng: random.Random, symbol: str) -> str:
    shape = rng.random()
    if shape < 0.4:
        return f"{symbol}{rng.randint(5, 300)}"
    if shape < 0.8:
        return f"{symbol}{rng.randint(1, 250)}.{rng.randint(0, 99):02d}"
    return f"{symbol}{rng.randint(3, 40) * 50:,}"


def _paraphrase(rng: random.Random, core: str, channel: str, slots: Mapping[str, str]) -> str:
    style = rng.choices(
        ("plain", "polite", "angry", "context"), weights=(0.3, 0.3, 0.15, 0.25)
    )[0]
    parts = [core]
    if style == "polite":
        if channel != "email" and rng.random() < 0.7:
            parts.insert(0, rng.choice(POLITE_OPENINGS))
        if rng.random() < 0.7:
            parts.append(rng.choice(POLITE_CLOSINGS))
    elif style == "angry":
        parts.insert(0, rng.choice(ANGRY_OPENINGS))
        parts[-1] = parts[-1].rstrip(".?") + rng.choice(("!", "!!", "!!!", "?!"))
        if rng.random() < 0.6:
            parts.append(rng.choice(ANGRY_CLOSINGS))
    elif style == "context":
        context = rng.choice(CONTEXT_SENTENCES).format_map(slots)
        if rng.random() < 0.5:
            parts.insert(0, context)
        else:
            parts.append(context)

    if channel == "email":
        parts.insert(0, rng.choice(EMAIL_OPENINGS))
        parts.append(f"{rng.choice(EMAIL_SIGNOFFS)} {rng.choice(CUSTOMER_NAMES)}")
    text = " ".join(parts)

    if channel == "chat" and rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.2:
        text = text.rstrip(".")
    if rng.random() < 0.12:
        text = _add_typos(rng, text)
    return text


def _add_typos(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    long_words = [position for position, word in enumerate(words) if len(word) >= 4]
    for position in rng.sample(long_words, k=min(len(long_words), rng.randint(1, 2))):
        word = words[position]
        cut = rng.randrange(1, len(word) - 1)
        operation = rng.choice(("swap", "drop", "double"))
        if operation == "swap":
            word = word[: cut - 1] + word[cut] + word[cut - 1] + word[cut + 1 :]
        elif operation == "drop":
            word = word[:cut] + word[cut + 1 :]
        else:
            word = word[:cut] + word[cut] + word[cut:]
        words[position] = word
    return " ".join(words)


def _teacher_label(rng: random.Random, true_intent: str, kind: str, lure: str | None) -> str:
    partner = _PARTNER_OF.get(true_intent)
    if kind == "ambiguous":
        return partner if rng.random() < TEACHER_ERROR_RATE_AMBIGUOUS else true_intent
    if kind == "vague":
        return lure if rng.random() < TEACHER_ERROR_RATE_VAGUE else true_intent

    error_rate = TEACHER_ERROR_RATE_CLEAR_IN_PAIR if partner else TEACHER_ERROR_RATE_CLEAR
    if rng.random() >= error_rate:
        return true_intent
    if partner and rng.random() < PARTNER_SHARE_OF_PAIR_ERRORS:
        return partner
    return rng.choice(RELATED_INTENTS[true_intent])


def _timestamp(rng: random.Random, day: datetime.date) -> str:
    # Support traffic peaks in the afternoon; a fifth of it comes at any hour.
    if rng.random() < 0.8:
        seconds = int(rng.gauss(14.5 * 3600, 3.5 * 3600))
    else:
        seconds = rng.randrange(86400)
    seconds = min(max(seconds, 0), 86399)
    start = datetime.datetime.combine(day, datetime.time(0, 0), tzinfo=datetime.UTC)
    return (start + datetime.timedelta(seconds=seconds)).isoformat()


def _trace_id(tag: str, seed: int, day: datetime.date, index: int) -> str:
    digest = hashlib.sha256(f"{tag}|{seed}|{day.isoformat()}|{index}".encode()).hexdigest()
    return f"tr_{digest[:20]}"


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False)


def _bad_lines(day: datetime.date, seed: int, count: int) -> list[str]:
    first_kind = day.toordinal() % len(BAD_ROW_KINDS)
    lines = []
    for position in range(count):
        kind = BAD_ROW_KINDS[(first_kind + position) % len(BAD_ROW_KINDS)]
        rng = random.Random(f"bad|{seed}|{day.isoformat()}|{position}")
        record: dict[str, Any] = {
            "id": _trace_id("bad", seed, day, position),
            "input": "I lost my card yesterday, please block it.",
            "teacher": "card_lost",
            "timestamp": _timestamp(rng, day),
            "metadata": {"channel": "app", "true_intent": "card_lost", "ambiguous": False},
        }
        if kind == "empty_input":
            record["input"] = ""
        elif kind == "whitespace_input":
            record["input"] = "  \t  "
        elif kind == "missing_teacher":
            del record["teacher"]
        line = _json_line(record)
        if kind == "malformed_json":
            # A line cut off mid-write: the closing quote and braces are missing.
            line = line[: line.index('"teacher"') + len('"teacher": "card')]
        lines.append(line)
    return lines


def _interleave(good_lines: list[str], bad_lines: list[str]) -> list[str]:
    """Place the bad lines evenly among the good ones, at positions fixed by the counts."""
    lines = list(good_lines)
    step = len(good_lines) // (len(bad_lines) + 1) if bad_lines else 0
    for number, bad_line in enumerate(bad_lines, start=1):
        lines.insert(number * step + number - 1, bad_line)
    return lines


def _write_atomically(path: Path, content: str) -> None:
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
