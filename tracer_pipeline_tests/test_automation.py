"""The landing-folder sensor requests a refit once per new or changed day folder."""

import json

import dagster as dg

from tracer_pipeline.automation import daily_refit_schedule, landing_folder_sensor


def test_sensor_requests_new_days_once_and_again_after_a_change(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACER_LANDING_DIR", str(tmp_path))
    (tmp_path / "2026-01-02").mkdir()
    (tmp_path / "2026-01-02" / "a.jsonl").write_text('{"input": "x", "teacher": "y"}\n')
    (tmp_path / "not-a-day").mkdir()
    (tmp_path / "not-a-day" / "a.jsonl").write_text('{"input": "x", "teacher": "y"}\n')
    (tmp_path / "2026-01-03").mkdir()  # empty: nothing to refit yet

    first = landing_folder_sensor(dg.build_sensor_context())
    assert [r.partition_key for r in first.run_requests] == ["2026-01-02"]

    unchanged = landing_folder_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert isinstance(unchanged, dg.SkipReason)

    (tmp_path / "2026-01-02" / "b.jsonl").write_text('{"input": "z", "teacher": "y"}\n')
    changed = landing_folder_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert [r.partition_key for r in changed.run_requests] == ["2026-01-02"]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    assert set(json.loads(changed.cursor)) == {"2026-01-02"}


def test_schedule_materializes_the_day_that_just_ended():
    assert daily_refit_schedule.cron_schedule == "0 1 * * *"
    assert daily_refit_schedule.job_name == "daily_refit"
