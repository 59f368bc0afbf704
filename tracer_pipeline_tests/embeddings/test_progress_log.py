"""ProgressLog: a long embedding run logs its progress, a short one stays quiet."""

from __future__ import annotations

import logging

from tracer_pipeline.embeddings.embedder import PROGRESS_LOG_SECONDS, ProgressLog

LOGGER_NAME = "tracer_pipeline.tests.progress"


def test_a_long_run_logs_how_far_it_got_and_a_short_run_logs_nothing(caplog):
    logger = logging.getLogger(LOGGER_NAME)
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    short = ProgressLog(100, logger)
    short(50, 100)
    short(100, 100)
    assert caplog.records == []

    long = ProgressLog(100, logger)
    long.started -= 2 * PROGRESS_LOG_SECONDS  # as if the run began 20 s ago
    long.last_logged = long.started
    long(40, 100)
    long(60, 100)  # within 10 s of the previous line: quiet
    long(100, 100)  # the end of a long run is always logged

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("embedded 40/100 texts")
    assert messages[1].startswith("embedded 100/100 texts")
