"""tracer-llm's fit, routing and memory, timed for `benchmarks/speed.py`, in its own venv.

Runs with the Python of tracer-llm's virtual environment (see `benchmarks/tracer_reference.py`,
whose `fit_and_route` it reuses: one documented `tracer.fit` at one alpha, which computes
tracer's default frontier, and a routing of the test embeddings). It then times the loaded
router the way speed.py times ours, on the same test embeddings:

- `predict_batch` in batches of `--batch-size` rows (µs per row, median over the batches),
- `predict` on one embedding at a time (ms per row, median over `--single-rows` rows),

and records the process's peak resident memory after the fit (VmHWM, MB) and the CPU
seconds of `fit_and_route` (the fit plus one routing of the test split, a second at most). It
writes one JSON object to OUT.json.

Usage (by speed.py): python tracer_reference_speed.py TRACES.jsonl TRAIN.npy TEST.npy WORK_DIR
OUT.json --alpha 0.95
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tracer_reference import fit_and_route  # noqa: E402


def peak_resident_mb() -> float:
    """Peak resident memory of this process in MB (10^6 bytes): VmHWM of /proc/self/status.

    Not `ru_maxrss`, which a child started by fork and exec inherits from its parent.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def time_routing(artifact_dir: Path, X_test: np.ndarray, batch_size: int,
                 single_rows: int) -> dict:
    """Median µs per row of `predict_batch` over full batches, and median ms of `predict`."""
    import tracer

    router = tracer.load_router(str(artifact_dir))
    router.predict_batch(X_test[:batch_size])  # warm-up: lazy imports, first-call costs
    per_row = []
    for start in range(0, len(X_test) - batch_size + 1, batch_size):
        batch = X_test[start : start + batch_size]
        started = time.perf_counter()
        router.predict_batch(batch)
        per_row.append((time.perf_counter() - started) / len(batch) * 1e6)
    single = []
    for row in X_test[:single_rows]:
        started = time.perf_counter()
        router.predict(row)
        single.append((time.perf_counter() - started) * 1e3)
    return {
        "batch_us_per_row": statistics.median(per_row) if per_row else None,
        "batches": len(per_row),
        "single_ms": statistics.median(single) if single else None,
        "single_rows": len(single),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", type=Path)
    parser.add_argument("train_embeddings", type=Path)
    parser.add_argument("test_embeddings", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--alpha", type=float, default=0.95)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--single-rows", type=int, default=300)
    arguments = parser.parse_args()

    X_train = np.load(arguments.train_embeddings).astype(np.float32)
    X_test = np.load(arguments.test_embeddings).astype(np.float32)
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    started_cpu = time.process_time()  # fit and routing of the whole test split
    record = fit_and_route(arguments.traces, X_train, X_test, arguments.work_dir,
                           arguments.alpha)
    record["fit_cpu_s"] = time.process_time() - started_cpu
    record["fit_peak_rss_mb"] = peak_resident_mb()  # the fit's: routing comes after
    record["n_train"] = len(X_train)
    record.pop("handled")
    record.pop("labels")
    if not record["refused"]:
        artifact_dir = arguments.work_dir / f"alpha_{arguments.alpha:.2f}"
        record.update(time_routing(artifact_dir, X_test, arguments.batch_size,
                                   arguments.single_rows))
    arguments.out.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
