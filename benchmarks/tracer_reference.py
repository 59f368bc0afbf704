"""Fit and route with the reference package `tracer-llm` 0.3.3, inside its own virtual environment.

`benchmarks/gate.py --reference` runs this file with the Python of a separate virtual
environment (tracer-llm pins `numpy<2.1`, which the project's stack cannot use). It reads the
training traces (JSONL with `input`, `teacher`) and their embeddings (`.npy`), fits one
tracer-llm policy per target agreement through the public API, routes the test embeddings with
`tracer.load_router(...).predict_batch`, and writes one JSON file with, per alpha: the fit
seconds, the certified (calibration) coverage tracer reports, the routing time and the
per-row labels and handled flags on the test split.

Each fit is the documented call `tracer.fit(..., config=FitConfig(target_teacher_agreement=
alpha, skip_candidates=..., verbose=False))`, i.e. with tracer's default frontier targets (0.85,
0.90, 0.95, plus alpha): like one refit of ours, one such fit computes a whole frontier, and its
seconds are what "tracer-llm's fit" means in the issue. The policy it deploys at alpha is the one
a fit with alpha alone would deploy (tracer fits each target independently, with fixed seeds).
Gradient boosting and the tree models are skipped, as `../shared/STACK.md` recommends (they
take hours on two cores).

Usage (by gate.py): python tracer_reference.py TRACES.jsonl TRAIN.npy TEST.npy WORK_DIR OUT.json
--alpha 0.90 --alpha 0.95
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

SKIPPED_CANDIDATES = ("dt", "rf", "et", "gbt")


def fit_and_route(traces: Path, X_train: np.ndarray, X_test: np.ndarray, work_dir: Path,
                  alpha: float) -> dict:
    """One tracer-llm fit at `alpha` and its routing of the test embeddings."""
    import tracer

    artifact_dir = work_dir / f"alpha_{alpha:.2f}"
    if artifact_dir.exists():
        shutil.rmtree(artifact_dir)
    config = tracer.FitConfig(target_teacher_agreement=alpha,
                              skip_candidates=SKIPPED_CANDIDATES, verbose=False)
    started = time.perf_counter()
    result = tracer.fit(str(traces), artifact_dir=str(artifact_dir), embeddings=X_train,
                        config=config)
    fit_seconds = time.perf_counter() - started
    manifest = result.manifest
    record = {
        "alpha": alpha,
        "fit_s": fit_seconds,
        "selected_method": manifest.selected_method,
        "coverage_certified": manifest.coverage_cal or 0.0,
        "agreement_calibration": manifest.teacher_agreement_cal,
        "refused": manifest.selected_method is None,
    }
    if record["refused"]:
        record.update(route_us_per_row=None, handled=[False] * len(X_test),
                      labels=[None] * len(X_test))
        return record
    router = tracer.load_router(str(artifact_dir))
    started = time.perf_counter()
    routed = router.predict_batch(X_test)
    route_seconds = time.perf_counter() - started
    record.update(
        route_us_per_row=route_seconds / max(len(X_test), 1) * 1e6,
        handled=[bool(value) for value in np.asarray(routed["handled"])],
        labels=list(routed["labels"]),
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", type=Path)
    parser.add_argument("train_embeddings", type=Path)
    parser.add_argument("test_embeddings", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--alpha", type=float, action="append", required=True)
    arguments = parser.parse_args()

    X_train = np.load(arguments.train_embeddings).astype(np.float32)
    X_test = np.load(arguments.test_embeddings).astype(np.float32)
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    records = [
        fit_and_route(arguments.traces, X_train, X_test, arguments.work_dir, alpha)
        for alpha in arguments.alpha
    ]
    arguments.out.write_text(json.dumps({"tracer_llm": records}))


if __name__ == "__main__":
    main()
