"""A refit killed half-way (SIGKILL, no clean-up) loses nothing and moves no alias.

The day's flywheel runs in a child Python process through `dagster.materialize` against a
temporary Dagster home, MLflow SQLite store and warehouse. The test kills it at a point it can
see from outside (a file the refit writes), then checks that the champion alias is where it
was, that what earlier runs wrote still reads, and that the next run of the day completes.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.deployment.router import Router
from tracer_pipeline.resources import default_resources
from tracer_pipeline.storage import WarehouseLayout, read_json

ROWS_PER_DAY = 400
FIRST_DAY = dt.date(2026, 1, 1)
# A day of 400 traces certifies little (about 70 calibration traces); this test is about crashes,
# not the promise, so it asks for a loose one that one such day can certify and crown.
LOOSER_GATE = {"ops": {"parity_gate": {"config": {"alpha": 0.7}}}}
CHILD_TIMEOUT_S = 150
POLL_SECONDS = 0.02

CHILD_PROGRAM = """
import sys
import dagster as dg
from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.resources import default_resources

with dg.DagsterInstance.get() as instance:
    result = dg.materialize(
        FLYWHEEL_ASSETS, partition_key=sys.argv[1], resources=default_resources(),
        instance=instance, run_config={
            "ops": {"parity_gate": {"config": {"alpha": float(sys.argv[2])}}}
        },
    )
sys.exit(0 if result.success else 1)
"""


@pytest.fixture
def isolated_environment(tmp_path, monkeypatch) -> dict[str, str]:
    """Environment variables that point every store of the pipeline into `tmp_path`."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    variables = {
        "DAGSTER_HOME": str(dagster_home),
        "TRACER_DATA_DIR": str(tmp_path / "data"),
        "TRACER_LANDING_DIR": str(tmp_path / "landing"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "TRACER_MLFLOW_ARTIFACTS": str(tmp_path / "mlflow" / "artifacts"),
        "TRACER_EXPERIMENT": "crash-test",
        "TRACER_MODEL_NAME": "crash-surrogate",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **variables}


def champion_version(client, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, "champion").version)
    except MlflowException:
        return None


def run_day_in_process(day: str) -> None:
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            FLYWHEEL_ASSETS, partition_key=day, resources=default_resources(),
            instance=instance, run_config=LOOSER_GATE,
        )
    assert result.success


def kill_child_once(path: Path, day: str, env: dict[str, str], log: Path) -> float:
    """Run the day in a child process and SIGKILL it as soon as `path` exists.

    Returns the seconds the child ran. Fails if the child ends on its own first.
    """
    gate_alpha = str(LOOSER_GATE["ops"]["parity_gate"]["config"]["alpha"])
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_PROGRAM, day, gate_alpha],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        try:
            while not path.exists():
                if child.poll() is not None:
                    pytest.fail(f"the child ended (code {child.returncode}) before {path} "
                                f"appeared:\n{log.read_text(errors='replace')[-3000:]}")
                if time.monotonic() - started > CHILD_TIMEOUT_S:
                    pytest.fail(f"{path} did not appear within {CHILD_TIMEOUT_S} s")
                time.sleep(POLL_SECONDS)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_point",
    [
        pytest.param("fitting", id="while-fitting-candidates"),
        pytest.param("gating", id="after-candidates-before-deployment"),
    ],
)
def test_a_killed_refit_leaves_the_champion_and_the_next_run_completes(
    isolated_environment, tmp_path, kill_point
):
    from mlflow import MlflowClient

    from tracer_pipeline import settings
    from tracer_pipeline.demo.generator import write_demo_landing

    days = [FIRST_DAY, FIRST_DAY + dt.timedelta(days=1)]
    write_demo_landing(settings.landing_dir(), days, rows_per_day=ROWS_PER_DAY, seed=3)
    first, second = (day.isoformat() for day in days)
    layout = WarehouseLayout(settings.data_dir())
    uri = settings.mlflow_tracking_uri()
    model_name = settings.registered_model_name()

    run_day_in_process(first)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion_before = champion_version(client, model_name)
    assert champion_before is not None, "the first day should have produced a champion"
    first_outputs = {
        path: path.read_bytes()
        for path in (layout.raw_traces(first), layout.embeddings(first),
                     layout.refit_manifest(first), layout.gate_outcome(first),
                     layout.deployment(first))
    }

    # "fitting": the refit of the second day has written its trace snapshot and is fitting
    # candidates. "gating": it has written its candidates and manifest; the gate and the
    # deployment of that day have not finished when the process dies.
    signal_file = {"fitting": layout.trace_splits, "gating": layout.refit_manifest}[kill_point]
    kill_child_once(signal_file(second), second, isolated_environment, tmp_path / "child.log")
    assert not layout.deployment(second).exists(), "the kill came after the deployment ended"
    if kill_point == "fitting":
        assert not layout.refit_manifest(second).exists(), "the kill came after the fit"

    assert champion_version(client, model_name) == champion_before
    for path, content in first_outputs.items():
        assert path.read_bytes() == content
    pd.read_parquet(layout.raw_traces(first))
    if kill_point == "gating":
        assert read_json(layout.refit_manifest(second))["status"] == "fitted"
    pd.read_parquet(layout.trace_splits(second))  # what the killed run wrote is whole
    router = Router.from_registry(model_name=model_name, tracking_uri=uri)
    assert router.route("my card has not arrived yet").surrogate_label

    run_day_in_process(second)
    deployment = read_json(layout.deployment(second))
    now = champion_version(client, model_name)
    assert str(deployment["champion_version"]) == now
    assert now == champion_before or (
        client.get_model_version(model_name, now).tags["tracer.partition"] == second
    )
    Router.from_registry(model_name=model_name, tracking_uri=uri)
