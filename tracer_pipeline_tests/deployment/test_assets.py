"""Champion against challenger through the real `deployment` asset, MLflow registry included."""

from __future__ import annotations

import json
import uuid

import dagster as dg
import pytest
from mlflow import MlflowClient

from tracer_pipeline.cli import main as cli_main
from tracer_pipeline.definitions import FLYWHEEL_ASSETS
from tracer_pipeline.deployment.registry import CHAMPION_ALIAS, promote, roll_back
from tracer_pipeline.resources import MlflowTracking, TraceStorage
from tracer_pipeline.storage import read_json
from tracer_pipeline_tests.landing import land_demo_days

ROWS_PER_DAY = 300


def gate_at(alpha: float) -> dict:
    return {"ops": {"parity_gate": {"config": {"alpha": alpha}}}}


def run_day(day: str, resources: dict, instance, alpha: float) -> None:
    result = dg.materialize(FLYWHEEL_ASSETS, partition_key=day, resources=resources,
                            instance=instance, run_config=gate_at(alpha))
    assert result.success


def champion(client: MlflowClient, model_name: str) -> str:
    return str(client.get_model_version_by_alias(model_name, CHAMPION_ALIAS).version)


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


# Day 1 refused (α = 0.999 is out of reach of a few hundred calibration traces): no champion.
# Day 2 promoted at α = 0.75. Day 3 refused again: the champion stays. Day 4 at α = 0.85
# certifies a stricter rule, which covers less than the champion: the champion stays.
ALPHAS = (0.999, 0.75, 0.999, 0.85)


@pytest.fixture(scope="module")
def module_resources(tmp_path_factory, mlflow_store, embedder) -> dict:
    """One warehouse and registered model for the whole module: the four days run once."""
    folder = tmp_path_factory.mktemp("deployment")
    unique = uuid.uuid4().hex[:8]
    return {
        "storage": TraceStorage(data_dir=str(folder / "data"), landing_dir=str(folder / "landing")),
        "tracking": MlflowTracking(
            tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}",
            experiment_name=f"deployment-{unique}",
            registered_model_name=f"surrogate-{unique}",
            artifacts_dir=str(mlflow_store / "artifacts" / unique),
        ),
        "embedder": embedder,
    }


@pytest.fixture(scope="module")
def four_days(module_resources, instance):
    storage = module_resources["storage"]
    days = land_demo_days(storage, days=len(ALPHAS), rows_per_day=ROWS_PER_DAY)
    for day, alpha in zip(days, ALPHAS, strict=True):
        run_day(day, module_resources, instance, alpha)
    return days


@pytest.fixture
def resources(module_resources) -> dict:
    return module_resources


def test_promotion_refusal_and_a_worse_challenger_keep_the_right_champion(
    resources, four_days
):
    layout = resources["storage"].layout
    tracking = resources["tracking"]
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    nothing, first, second, third = (read_json(layout.deployment(day)) for day in four_days)

    assert nothing["decision"] == "refused" and nothing["champion_version"] is None
    assert first["decision"] == "promoted" and first["champion_before"] is None
    assert second["decision"] == "refused"
    assert second["champion_version"] == first["champion_version"]
    assert third["decision"] == "kept_champion", third["reason"]
    comparison = third["comparison"]
    assert comparison["challenger"]["coverage"] < comparison["champion"]["coverage"]
    assert third["champion_version"] == first["champion_version"]
    assert champion(client, tracking.registered_model_name) == first["champion_version"]

    kept_out = client.get_model_version(tracking.registered_model_name,
                                        third["challenger_version"])
    assert kept_out.tags["tracer.partition"] == four_days[3]
    assert kept_out.tags["tracer.decision"] == "kept_champion"
    run = client.get_run(read_json(layout.gate_outcome(four_days[3]))["mlflow_run_id"])
    assert run.data.tags["tracer.deployment"] == "kept_champion"
    assert run.data.metrics["coverage_fresh_champion"] == pytest.approx(
        comparison["champion"]["coverage"]
    )


def test_re_materializing_days_gives_the_same_decisions_and_versions(
    resources, instance, four_days
):
    layout = resources["storage"].layout
    tracking = resources["tracking"]
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    name = tracking.registered_model_name
    before = [read_json(layout.deployment(day)) for day in four_days]
    versions_before = len(client.search_model_versions(f"name='{name}'"))

    run_day(four_days[3], resources, instance, ALPHAS[3])
    run_day(four_days[1], resources, instance, ALPHAS[1])  # an earlier day, after later ones

    after = [read_json(layout.deployment(day)) for day in four_days]
    assert after == before
    assert len(client.search_model_versions(f"name='{name}'")) == versions_before
    assert champion(client, name) == before[1]["champion_version"]


# Runs last in this module: it moves the alias that the tests above read.
def test_rollback_restores_the_replaced_champion(resources, four_days, monkeypatch, capsys):
    layout = resources["storage"].layout
    tracking = resources["tracking"]
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    name = tracking.registered_model_name
    first = read_json(layout.deployment(four_days[1]))["champion_version"]
    kept_out = read_json(layout.deployment(four_days[3]))["challenger_version"]

    with pytest.raises(ValueError, match="replaced no earlier champion"):
        roll_back(client, name)
    promote(client, name, kept_out)
    assert champion(client, name) == kept_out

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.tracking_uri)
    monkeypatch.setenv("TRACER_MODEL_NAME", name)
    assert cli_main(["rollback"]) == 0
    assert f"version {kept_out} -> version {first}" in capsys.readouterr().out
    assert champion(client, name) == first
    assert client.get_model_version(name, kept_out).tags["tracer.rolled_back_to"] == first
    assert cli_main(["rollback", "--to-version", "999"]) == 1


REGISTRY_HOLDER = """
import sys, time
from pathlib import Path
from tracer_pipeline.storage import WarehouseLayout, registry_lock

with registry_lock(WarehouseLayout(Path(sys.argv[1])), holder="another deployment"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_deployment_waits_for_the_registry_lock_and_moves_nothing_meanwhile(
    resources, four_days, instance
):
    import subprocess
    import sys

    from tracer_pipeline.deployment.assets import deployment

    layout = resources["storage"].layout
    tracking = resources["tracking"]
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    alias_before = champion(client, tracking.registered_model_name)
    record_path = layout.deployment(four_days[1])
    record_before = record_path.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", REGISTRY_HOLDER, str(layout.root.parent)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = dg.materialize(
            [deployment], partition_key=four_days[1], resources=resources, instance=instance,
            run_config={"ops": {"deployment": {"config": {"lock_timeout_s": 0.3}}}},
            raise_on_error=False,
        )
    finally:
        holder.kill()
        holder.wait()

    assert not refused.success
    (failure,) = [event for event in refused.all_events if event.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "RegistryLockedError" in message and "another deployment" in message
    assert champion(client, tracking.registered_model_name) == alias_before
    assert record_path.read_bytes() == record_before

    again = dg.materialize([deployment], partition_key=four_days[1], resources=resources,
                           instance=instance)
    assert again.success
    assert read_json(record_path) == json.loads(record_before)
