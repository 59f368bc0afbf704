"""The report the flywheel writes: its numbers are the gate's in MLflow, and it loads offline.

Two days of small generated traces go through the real asset graph (Dagster in process, MLflow
on SQLite, GX, the packaged embedder). The report's JSON twin is checked against the params,
metrics and tags the gate and the deployment recorded on the MLflow run `refit <day>`, and the
report's HTML is opened in headless Chromium with every outside request made to fail.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from mlflow import MlflowClient

from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.report.assets import REPORT_HTML, REPORT_JSON, holdout_embeddings
from tracer_pipeline.report.build import build_report
from tracer_pipeline.report.render import render_report_html
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import read_json
from tracer_pipeline_tests.landing import land_demo_days
from tracer_pipeline_tests.report.chromium import HeadlessChromium, chromium_or_skip

DAYS = 2
ROWS_PER_DAY = 300
# Small days certify little at α = 0.95; a looser promise lets the gate deploy on them.
LOOSER_GATE = {"ops": {"parity_gate": {"config": {"alpha": 0.85}}}}
# A trace text that would run if the page inserted it as markup.
HOSTILE_INPUT = "<script>window.__tracerInjected = true</script> my card has not arrived"
HOSTILE_LABEL = "<b>card_arrival</b>"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable (session scope, so a skip comes before the flywheel runs)."""
    return chromium_or_skip()


@pytest.fixture(scope="module")
def flywheel(tmp_path_factory, mlflow_store, embedder) -> dict:
    """Two days through every asset of the flywheel; the report's materialization per day."""
    root = tmp_path_factory.mktemp("flywheel")
    unique = uuid.uuid4().hex[:8]
    storage = TraceStorage(data_dir=str(root / "data"), landing_dir=str(root / "landing"))
    tracking = MlflowTracking(
        tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}",
        experiment_name=f"test-report-{unique}",
        registered_model_name=f"surrogate-report-{unique}",
        artifacts_dir=str(mlflow_store / "artifacts" / unique),
    )
    resources = {"storage": storage, "tracking": tracking, "embedder": embedder}
    days = land_demo_days(storage, days=DAYS, rows_per_day=ROWS_PER_DAY)
    materializations = {}
    with dg.instance_for_test() as instance:
        for day in days:
            result = dg.materialize(
                FLYWHEEL_ASSETS,
                partition_key=day,
                resources=resources,
                instance=instance,
                run_config=LOOSER_GATE,
            )
            assert result.success
            (materialization,) = result.asset_materializations_for_node("interpretability_report")
            materializations[day] = materialization
    return {
        "storage": storage,
        "tracking": tracking,
        "days": days,
        "materializations": materializations,
    }


def _refit_run(tracking: MlflowTracking, day: str):
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    (run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.run_name = 'refit {day}' and tags.`tracer.stage` = 'refit'",
    )
    return client, run


def _report(flywheel: dict, day: str) -> dict:
    return read_json(flywheel["storage"].layout.report_dir(day) / REPORT_JSON)


def test_report_numbers_are_those_the_gate_recorded_in_mlflow(flywheel):
    deployed_days = 0
    for day in flywheel["days"]:
        report = _report(flywheel, day)
        head = report["headline"]
        _, run = _refit_run(flywheel["tracking"], day)
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags

        assert head["alpha"] == float(params["alpha"]) == 0.85
        assert head["delta"] == float(params["delta"])
        assert head["n_traces"] == int(params["n_traces"])
        assert head["candidate"] == params["model"]
        assert head["decision"] == tags["tracer.gate_decision"]
        assert head["deployment_decision"] == tags["tracer.deployment"]
        assert (head["champion_version"] or "") == tags["tracer.champion_version"]
        assert head["coverage_holdout"] == metrics["coverage_holdout"]
        assert head["coverage_calibration"] == metrics["coverage_certified"]
        assert head["n_holdout"] == int(metrics["n_holdout"])
        assert head["n_calibration"] == int(metrics["n_calibration"])
        # Recorded only when defined (no agreement or threshold when the gate refuses).
        for key in ("agreement_holdout", "agreement_lower_bound", "threshold"):
            assert head[key] == metrics.get(key), key
        frontier = {point["alpha"]: point["coverage_certified"] for point in report["frontier"]}
        logged_frontier = {
            float(key.removeprefix("frontier_coverage_certified_a")): value
            for key, value in metrics.items()
            if key.startswith("frontier_coverage_certified_a")
        }
        assert sorted(frontier) == sorted(logged_frontier) == [0.8, 0.85, 0.9, 0.95, 0.99]
        for alpha, coverage in logged_frontier.items():
            assert frontier[alpha] == coverage, alpha
        deployed_days += head["decision"] == "deploy"
    assert deployed_days >= 1, "no day deployed: the comparison never saw a threshold"


def test_the_report_logged_to_the_refit_run_is_the_one_on_disk(flywheel, tmp_path):
    for day in flywheel["days"]:
        client, run = _refit_run(flywheel["tracking"], day)
        folder = flywheel["storage"].layout.report_dir(day)

        destination = tmp_path / day
        destination.mkdir()
        downloaded = Path(client.download_artifacts(run.info.run_id, "report", str(destination)))

        assert sorted(path.name for path in downloaded.iterdir()) == [REPORT_HTML, REPORT_JSON]
        for name in (REPORT_HTML, REPORT_JSON):
            assert (downloaded / name).read_bytes() == (folder / name).read_bytes()


def test_materialization_shows_the_headline_worst_labels_and_html_path(flywheel):
    day = flywheel["days"][-1]
    report = _report(flywheel, day)
    metadata = flywheel["materializations"][day].metadata

    assert metadata["html"].value == str(flywheel["storage"].layout.report_dir(day) / REPORT_HTML)
    assert Path(metadata["html"].value).is_file()
    assert metadata["coverage_holdout"].value == report["headline"]["coverage_holdout"]
    assert metadata["n_traces"].value == report["headline"]["n_traces"]
    assert "coverage on held-out traces" in metadata["headline"].value
    worst = metadata["worst_labels"].value.splitlines()
    assert worst[0].startswith("| label | share of held-out traces | coverage (held-out)")
    lowest = min(
        report["per_label"], key=lambda row: (row["coverage"], -row["share"], row["label"])
    )
    assert worst[2].startswith(f"| {lowest['label']} |")


def test_the_browser_blocks_every_outside_request_and_reports_it(chromium, tmp_path):
    page = tmp_path / "outside.html"
    page.write_text(
        '<img src="https://example.org/pixel.png"><script src="http://127.0.0.1:8/x.js">'
        "</script><p>offline</p>",
        encoding="utf-8",
    )

    with HeadlessChromium(chromium) as browser:
        load = browser.open(page)

    failed = sorted(failure["url"] for failure in load.failed_requests)
    assert failed == ["http://127.0.0.1:8/x.js", "https://example.org/pixel.png"]


def test_report_loads_offline_with_its_frontier_plot_and_sortable_label_table(
    chromium, flywheel, tmp_path
):
    day = flywheel["days"][-1]
    report = _report(flywheel, day)
    html_path = flywheel["storage"].layout.report_dir(day) / REPORT_HTML

    with HeadlessChromium(chromium) as browser:
        load = browser.open(html_path)
        plot = browser.evaluate(
            """(() => {
                const plot = document.getElementById('frontier-plot');
                const box = plot.getBoundingClientRect();
                return {tag: plot.tagName, width: box.width, height: box.height,
                        points: plot.querySelectorAll('circle').length};
            })()"""
        )
        labels = browser.evaluate(
            """Array.from(document.querySelectorAll('#per-label-table tbody tr'))
                .map(row => row.cells[0].textContent.trim())"""
        )
        coverage_after_sort = browser.evaluate(
            """(() => {
                const header = Array.from(document.querySelectorAll('#per-label-table th'))
                    .find(cell => cell.textContent.startsWith('coverage (held-out)'));
                header.click();
                const column = header.cellIndex;
                return Array.from(document.querySelectorAll('#per-label-table tbody tr'))
                    .map(row => parseFloat(row.cells[column].dataset.value));
            })()"""
        )
        cost_saved = browser.evaluate("document.getElementById('cost-saved').textContent")
        screenshot = browser.screenshot(tmp_path / "report.png").read_bytes()

    assert load.requests == [load.url]
    assert load.failed_requests == []
    assert load.exceptions == [] and load.console_errors == []
    assert plot["tag"] == "svg" and plot["width"] > 300 and plot["height"] > 100
    assert plot["points"] == len(report["frontier"]) == 5
    assert labels == [row["label"] for row in report["per_label"]] and len(labels) >= 5
    assert coverage_after_sort == sorted(row["coverage"] for row in report["per_label"])
    assert cost_saved == f"${report['headline']['cost_saved_per_day']:,.2f}"
    # The whole page was laid out: the PNG (width and height in its header) is a long page.
    assert screenshot.startswith(b"\x89PNG")
    assert int.from_bytes(screenshot[20:24], "big") > 2 * int.from_bytes(screenshot[16:20], "big")
    assert report["headline"]["cost_saved_per_day"] > 0


def test_a_script_in_a_trace_text_shows_as_text_and_never_runs(chromium, flywheel, tmp_path):
    """The day's real held-out traces, with the first one the report shows made hostile."""
    day = flywheel["days"][-1]
    layout = flywheel["storage"].layout
    report = _report(flywheel, day)
    holdout = pd.read_parquet(layout.holdout_decisions(day))
    embeddings = holdout_embeddings(layout, day, holdout)
    shown = (report["examples"]["handled"] + report["examples"]["deferred"])[0]["trace_id"]
    hostile = holdout["trace_id"] == shown
    holdout.loc[hostile, "input"] = HOSTILE_INPUT
    holdout.loc[hostile, "teacher"] = HOSTILE_LABEL
    hostile_report = build_report(
        partition=day,
        holdout=holdout,
        gate=read_json(layout.gate_outcome(day)),
        deployment=read_json(layout.deployment(day)),
        n_traces=report["headline"]["n_traces"],
        embedding_model=report["headline"]["embedding_model"],
        price_per_llm_call=report["headline"]["price_per_llm_call"],
        daily_traffic=report["headline"]["daily_traffic"],
        holdout_embeddings=embeddings,
    )
    page = tmp_path / REPORT_HTML
    page.write_text(render_report_html(hostile_report), encoding="utf-8")

    with HeadlessChromium(chromium) as browser:
        load = browser.open(page)
        shown_as_text = browser.evaluate(
            f"document.body.innerText.includes({json.dumps(HOSTILE_INPUT)})"
        )
        label_as_text = browser.evaluate(
            f"document.body.innerText.includes({json.dumps(HOSTILE_LABEL)})"
        )
        injected = browser.evaluate("typeof window.__tracerInjected")
        scripts = browser.evaluate("document.scripts.length")
        bold_elements = browser.evaluate("document.querySelectorAll('body b').length")

    assert shown_as_text and label_as_text
    assert injected == "undefined"
    assert scripts == 1  # the page's own table-sorting script, nothing from a trace
    assert bold_elements == 0
    assert load.failed_requests == [] and load.exceptions == [] and load.console_errors == []


def test_cli_prints_the_latest_report_or_a_chosen_day(flywheel, monkeypatch, capsys):
    from tracer_pipeline import cli

    first, last = flywheel["days"][0], flywheel["days"][-1]
    layout = flywheel["storage"].layout
    monkeypatch.setenv("TRACER_DATA_DIR", flywheel["storage"].data_dir)

    assert cli.main(["report"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"report of {last}: {layout.report_dir(last) / REPORT_HTML}")
    head = _report(flywheel, last)["headline"]
    assert f"traces used: {head['n_traces']}" in printed
    assert "| label | share of held-out traces |" in printed

    assert cli.main(["report", "--day", first, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == _report(flywheel, first)
