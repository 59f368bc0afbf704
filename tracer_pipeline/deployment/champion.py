"""Champion against challenger: a new policy replaces the one in service only if it covers more.

Pure functions, no MLflow: the deployment asset feeds them the two policies and the fresh traces.

The comparison runs on *fresh* traces: the held-out slice of the newest day. Splits are assigned
by a hash of each text, so a held-out text was never trained, validated or calibrated on by any
refit with the same split salt, old or new; both policies meet these traces for the first time.
Each policy applies the rule its own gate certified, unchanged; the challenger is promoted when
its coverage on the fresh traces is at least the champion's. Both passed a gate at the same α,
so the comparison is about coverage, the figure that decides what the surrogate saves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tracer_pipeline.gate.policy import RoutingPolicy
from tracer_pipeline.gate.statistics import clopper_pearson_lower

# Decisions of the deployment asset, as recorded in tags, metadata and deployment.json.
PROMOTED = "promoted"
KEPT_CHAMPION = "kept_champion"
REFUSED = "refused"


@dataclass(frozen=True)
class PolicyOnFreshTraces:
    """What one policy does with the fresh traces.

    Attributes:
        coverage: share of the fresh traces the policy handles.
        agreement: agreement with the teacher on the handled ones (None when none is handled).
        agreement_lower_bound: one-sided Clopper–Pearson (1 - delta) bound of that agreement.
        handled: number of fresh traces handled.
    """

    coverage: float
    agreement: float | None
    agreement_lower_bound: float | None
    handled: int


@dataclass(frozen=True)
class ChallengerVerdict:
    """The outcome of champion against challenger on the same fresh traces."""

    promote: bool
    reason: str
    n_fresh: int
    challenger: PolicyOnFreshTraces
    champion: PolicyOnFreshTraces | None

    def as_record(self) -> dict:
        return asdict(self)


def evaluate_on_fresh_traces(
    policy: RoutingPolicy, embeddings: np.ndarray, teacher_labels: np.ndarray, delta: float
) -> PolicyOnFreshTraces:
    """Coverage and agreement of `policy`'s certified rule on traces it has never seen."""
    teacher_labels = np.asarray(teacher_labels).astype(str)
    if len(teacher_labels) == 0:
        return PolicyOnFreshTraces(0.0, None, None, 0)
    decisions = policy.decide(np.asarray(embeddings, dtype=np.float32))
    handled = np.asarray(decisions.handled, dtype=bool)
    agrees = np.asarray(decisions.labels).astype(str) == teacher_labels
    n_handled = int(handled.sum())
    n_agree = int((handled & agrees).sum())
    if n_handled == 0:
        return PolicyOnFreshTraces(0.0, None, None, 0)
    return PolicyOnFreshTraces(
        coverage=n_handled / len(teacher_labels),
        agreement=n_agree / n_handled,
        agreement_lower_bound=clopper_pearson_lower(n_agree, n_handled, delta),
        handled=n_handled,
    )


def judge_challenger(
    challenger: RoutingPolicy,
    champion: RoutingPolicy | None,
    embeddings: np.ndarray,
    teacher_labels: np.ndarray,
    delta: float,
) -> ChallengerVerdict:
    """Promote the challenger unless it covers less of the fresh traces than the champion.

    The challenger has already passed its gate. With no champion, or with no fresh traces to
    compare on, it is promoted (a certified policy is better than none, and a newer one has seen
    more traces); otherwise it must cover at least as much as the champion. A tie promotes.
    """
    n_fresh = len(teacher_labels)
    on_fresh = evaluate_on_fresh_traces(challenger, embeddings, teacher_labels, delta)
    if champion is None:
        return ChallengerVerdict(True, "no champion yet", n_fresh, on_fresh, None)
    champion_on_fresh = evaluate_on_fresh_traces(champion, embeddings, teacher_labels, delta)
    if n_fresh == 0:
        return ChallengerVerdict(
            True, "no fresh traces to compare on; the newer certified policy wins", n_fresh,
            on_fresh, champion_on_fresh,
        )
    if on_fresh.coverage >= champion_on_fresh.coverage:
        reason = (f"challenger covers {on_fresh.coverage:.4f} of {n_fresh} fresh traces, "
                  f"champion {champion_on_fresh.coverage:.4f}")
        return ChallengerVerdict(True, reason, n_fresh, on_fresh, champion_on_fresh)
    reason = (f"challenger covers less of the {n_fresh} fresh traces than the champion "
              f"({on_fresh.coverage:.4f} < {champion_on_fresh.coverage:.4f})")
    return ChallengerVerdict(False, reason, n_fresh, on_fresh, champion_on_fresh)
