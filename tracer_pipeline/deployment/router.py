"""The router: the champion surrogate answers what it is certified for, the LLM the rest.

```python
from tracer_pipeline.deployment.router import Router

router = Router.from_registry()            # the `champion` alias of the registered model
decision = router.route("my card never arrived")
decision.label, decision.handled           # surrogate's label, or None when deferred
router.route(texts, fallback=ask_the_llm)  # deferred texts answered by `fallback(list[str])`
```

Loading verifies what it loads: the policy files must hash to the SHA-256 recorded on the model
version, and they are read as .npz (without pickle) and JSON, so loading runs no code. Loading
also limits the process's BLAS threads to `$TRACER_COMPUTE_THREADS` (default 1): with a BLAS
thread per core, one routed text took twice as long on a busy two-core machine (threads.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer_pipeline import settings
from tracer_pipeline.embeddings.embedder import Embedder, load_embedder
from tracer_pipeline.gate.policy import RoutingDecisions, RoutingPolicy
from tracer_pipeline.storage import folder_sha256
from tracer_pipeline.threads import limit_compute_threads

ROUTER_MANIFEST = "router.json"
POLICY_FOLDER = "policy"
POLICY_HASH_TAG = "tracer.policy_sha256"


class RouterIntegrityError(RuntimeError):
    """The artifact on disk is not the one the registry recorded."""


def download_registered_router(
    alias: str = "champion",
    model_name: str | None = None,
    tracking_uri: str | None = None,
    version: str | None = None,
) -> tuple[Path, str, str]:
    """Download a registered router version; return (folder, recorded policy hash, version).

    The folder holds `router.json` and `policy/`; the caller verifies the hash on loading.
    """
    import mlflow
    from mlflow import MlflowClient

    tracking_uri = tracking_uri or settings.mlflow_tracking_uri()
    model_name = model_name or settings.registered_model_name()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if version is None:
        model_version = client.get_model_version_by_alias(model_name, alias)
    else:
        model_version = client.get_model_version(model_name, version)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}/{model_version.version}"
    )
    expected = model_version.tags.get(POLICY_HASH_TAG)
    if not expected:
        raise RouterIntegrityError(
            f"{model_name} version {model_version.version} has no {POLICY_HASH_TAG} tag"
        )
    return Path(local) / "artifacts", expected, str(model_version.version)


def load_verified_policy(folder: Path, expected_sha256: str) -> tuple[RoutingPolicy, dict]:
    """The policy and manifest in `folder`, after checking the policy files' SHA-256."""
    policy_folder = Path(folder) / POLICY_FOLDER
    actual = folder_sha256(policy_folder)
    if actual != expected_sha256:
        raise RouterIntegrityError(
            f"policy files in {policy_folder} hash to {actual}, but the registry recorded "
            f"{expected_sha256}: refusing to load a router that is not the one registered"
        )
    manifest = json.loads((Path(folder) / ROUTER_MANIFEST).read_text(encoding="utf-8"))
    return RoutingPolicy.load(policy_folder), manifest


@dataclass(frozen=True)
class RoutedText:
    """Where one text went.

    `label` is the answer to use: the surrogate's label when it handled the text, the
    fallback's when it deferred and a fallback was given, else None. `surrogate_label` is the
    surrogate's guess in every case.
    """

    text: str
    label: str | None
    handled: bool
    answered_by: str  # "surrogate", "teacher" (the fallback) or "nobody"
    surrogate_label: str
    score: float


class Router:
    """A certified routing policy and the embedder it was fitted on."""

    def __init__(self, policy: RoutingPolicy, embedder: Embedder, manifest: dict | None = None):
        self.policy = policy
        self.embedder = embedder
        self.manifest = manifest or {}

    @classmethod
    def from_artifacts(cls, folder: Path, expected_sha256: str | None = None) -> Router:
        """Load a router from a folder holding `router.json` and `policy/`.

        Raises `RouterIntegrityError` when `expected_sha256` is given and the policy files hash
        to something else.
        """
        folder = Path(folder)
        if expected_sha256 is None:
            expected_sha256 = folder_sha256(folder / POLICY_FOLDER)
        policy, manifest = load_verified_policy(folder, expected_sha256)
        limit_compute_threads()
        embedder = load_embedder(manifest.get("embedder", "minilm"))
        if embedder.dimension != manifest.get("embedding_dimension", embedder.dimension):
            raise RouterIntegrityError(
                f"router expects {manifest['embedding_dimension']}-dimensional embeddings, "
                f"embedder {embedder.name} gives {embedder.dimension}"
            )
        return cls(policy, embedder, manifest)

    @classmethod
    def from_registry(
        cls,
        alias: str = "champion",
        model_name: str | None = None,
        tracking_uri: str | None = None,
        version: str | None = None,
    ) -> Router:
        """Load the model version behind `alias` (or `version`) from the MLflow registry."""
        folder, expected, resolved = download_registered_router(alias, model_name, tracking_uri,
                                                               version)
        router = cls.from_artifacts(folder, expected_sha256=expected)
        router.manifest = {**router.manifest, "version": resolved}
        return router

    def route_embeddings(self, embeddings: np.ndarray) -> RoutingDecisions:
        """Route precomputed embeddings (n, d)."""
        return self.policy.decide(np.asarray(embeddings, dtype=np.float32))

    def route(
        self,
        texts: str | Sequence[str],
        fallback: Callable[[list[str]], Sequence[str]] | None = None,
    ) -> RoutedText | list[RoutedText]:
        """Route one text or a batch; deferred texts go to `fallback` (the LLM) when given."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        decisions = self.route_embeddings(self.embedder.embed(batch))
        deferred = [i for i, handled in enumerate(decisions.handled) if not handled]
        answers: dict[int, str] = {}
        if fallback is not None and deferred:
            replies = list(fallback([batch[i] for i in deferred]))
            if len(replies) != len(deferred):
                raise ValueError(
                    f"fallback returned {len(replies)} labels for {len(deferred)} deferred texts"
                )
            answers = dict(zip(deferred, replies, strict=True))
        routed = []
        for i, text in enumerate(batch):
            handled = bool(decisions.handled[i])
            surrogate_label = str(decisions.labels[i])
            if handled:
                label, answered_by = surrogate_label, "surrogate"
            elif i in answers:
                label, answered_by = answers[i], "teacher"
            else:
                label, answered_by = None, "nobody"
            routed.append(
                RoutedText(text, label, handled, answered_by, surrogate_label,
                           float(decisions.score[i]))
            )
        return routed[0] if single else routed
