"""Benchmark of the parity gate on public intent and NLI data, optionally against tracer-llm.

For each dataset (Banking77, CLINC150, MNLI) the script embeds every text with the project's
embedder (cached under `benchmarks/.cache/`), splits the dataset's training split by a hash of
the text into train / validation / calibration (70 / 10 / 20 %), fits the candidate zoo once,
runs the gate at every alpha, and routes the dataset's evaluation split (test; validation for
MNLI), which the fit never sees. The teacher is the gold label unless `--teacher-column` names
another column.

Per (dataset, alpha) it reports: certified coverage (share of calibration traces handled by the
certified rule), coverage and agreement realised on the evaluation split, fit seconds (one refit:
every candidate, the acceptors and the certification at all alphas; embedding time excluded)
and routing microseconds per row (numpy policy on precomputed embeddings, one batch).

With `--reference`, tracer-llm 0.3.3 is fitted on the same training split and embeddings in
the same run, in a virtual environment of its own (`benchmarks/.cache/tracer-llm-venv`, created
on first use; `TRACER_REFERENCE_PYTHON` points to another interpreter), and the ratios are
printed. Its fit seconds are those of one `tracer.fit` per alpha with its default frontier
targets (see `benchmarks/tracer_reference.py`); ours are those of one refit for all alphas.

Usage:
    python benchmarks/gate.py [--reference] [--json] [--dataset banking77] [--alpha 0.95]
        [--datasets-dir DIR] [--teacher-column label]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.embedding_cache import (  # noqa: E402
    DATASET_FILES,
    DEFAULT_CACHE_DIR,
    cached_embeddings,
    load_dataset,
)
from tracer_pipeline import settings  # noqa: E402
from tracer_pipeline.gate.calibration import GateConfig, run_gate_frontier  # noqa: E402
from tracer_pipeline.surrogates.candidates import (  # noqa: E402
    default_candidate_specs,
    fit_candidates,
)
from tracer_pipeline.surrogates.splits import assign_splits  # noqa: E402

ALPHAS = (0.80, 0.85, 0.90, 0.95, 0.99)
DELTA = 0.05
SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.10, "calibration": 0.20}
SPLIT_SALT = "gate-benchmark-v1"
REFERENCE_VENV = DEFAULT_CACHE_DIR / "tracer-llm-venv"
REFERENCE_REQUIREMENT = "tracer-llm==0.3.3"
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "tracer_reference.py"
OUT_OF_SCOPE_LABEL = "oos"


def _agreement(labels: np.ndarray, teacher: np.ndarray, handled: np.ndarray) -> float | None:
    return float((labels[handled] == teacher[handled]).mean()) if handled.any() else None


def run_ours(name: str, X: np.ndarray, teacher: np.ndarray, texts: list[str],
             fit_rows: np.ndarray, eval_rows: np.ndarray, alphas: list[float]) -> list[dict]:
    """Fit the zoo and the gate on `fit_rows`, route `eval_rows`; one record per alpha."""
    splits = assign_splits([texts[i] for i in fit_rows], SPLIT_FRACTIONS, salt=SPLIT_SALT)
    part = {key: fit_rows[splits == key] for key in SPLIT_FRACTIONS}
    label_space = np.unique(teacher[fit_rows])

    started = time.perf_counter()
    candidates = fit_candidates(X[part["train"]], teacher[part["train"]],
                                default_candidate_specs(), label_space=label_space)
    outcomes = run_gate_frontier(
        candidates, X[part["train"]], teacher[part["train"]], X[part["validation"]],
        teacher[part["validation"]], X[part["calibration"]], teacher[part["calibration"]],
        GateConfig(alpha=max(alphas), delta=DELTA, frontier_alphas=tuple(alphas)), alphas,
    )
    fit_seconds = time.perf_counter() - started

    X_eval, teacher_eval = X[eval_rows], teacher[eval_rows]
    in_scope = teacher_eval != OUT_OF_SCOPE_LABEL
    records = []
    for alpha in alphas:
        outcome = outcomes[alpha]
        record = {"dataset": name, "alpha": alpha, "delta": DELTA,
                  "coverage_certified": outcome.coverage_calibration, "coverage_test": 0.0,
                  "agreement_test": None, "fit_s": fit_seconds, "route_us_per_row": None,
                  "refused": outcome.decision != "deploy", "surrogate": outcome.candidate}
        if outcome.policy is not None:
            timings = []
            for _ in range(3):
                routing_started = time.perf_counter()
                decisions = outcome.policy.decide(X_eval)
                timings.append(time.perf_counter() - routing_started)
            handled = decisions.handled
            record.update(coverage_test=float(handled.mean()),
                          agreement_test=_agreement(decisions.labels, teacher_eval, handled),
                          route_us_per_row=min(timings) / len(X_eval) * 1e6)
            if not in_scope.all():
                record["coverage_test_in_scope"] = float(handled[in_scope].mean())
        records.append(record)
    return records


def reference_python() -> Path:
    """Interpreter of tracer-llm's own virtual environment, created on first use."""
    configured = os.environ.get("TRACER_REFERENCE_PYTHON")
    if configured:
        return Path(configured)
    python = REFERENCE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {REFERENCE_VENV} with {REFERENCE_REQUIREMENT}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", REFERENCE_REQUIREMENT],
                       check=True)
    return python


def run_reference(name: str, X: np.ndarray, teacher: np.ndarray, texts: list[str],
                  fit_rows: np.ndarray, eval_rows: np.ndarray, alphas: list[float]) -> dict:
    """tracer-llm on the same training split and embeddings; records keyed by alpha."""
    work_dir = DEFAULT_CACHE_DIR / "reference" / name
    work_dir.mkdir(parents=True, exist_ok=True)
    traces = work_dir / "traces.jsonl"
    with traces.open("w", encoding="utf-8") as handle:
        for row in fit_rows:
            handle.write(json.dumps({"input": texts[row], "teacher": str(teacher[row])}) + "\n")
    np.save(work_dir / "train.npy", X[fit_rows])
    np.save(work_dir / "test.npy", X[eval_rows])
    out = work_dir / "result.json"
    out.unlink(missing_ok=True)
    command = [str(reference_python()), str(REFERENCE_SCRIPT), str(traces),
               str(work_dir / "train.npy"), str(work_dir / "test.npy"), str(work_dir / "fits"),
               str(out)]
    for alpha in alphas:
        command += ["--alpha", str(alpha)]
    subprocess.run(command, check=True)
    records = json.loads(out.read_text())["tracer_llm"]
    teacher_eval = teacher[eval_rows]
    results = {}
    for record in records:
        handled = np.asarray(record["handled"], dtype=bool)
        labels = np.array([label if label is not None else "" for label in record["labels"]])
        results[record["alpha"]] = {
            "reference_coverage_certified": record["coverage_certified"],
            "reference_coverage_test": float(handled.mean()),
            "reference_agreement_test": _agreement(labels, teacher_eval, handled),
            "reference_fit_s": record["fit_s"],
            "reference_route_us_per_row": record["route_us_per_row"],
            "reference_refused": record["refused"],
        }
    return results


def _format(value, pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def _ratio(numerator, denominator) -> str:
    if numerator is None or not denominator:
        return "—"
    return f"{numerator / denominator:.2f}x"


def print_table(records: list[dict], with_reference: bool) -> None:
    header = ["dataset", "α", "surrogate", "certified cov", "test cov", "test agreement",
              "fit s", "µs/row"]
    if with_reference:
        header += ["ref test cov", "ref agreement", "ref fit s", "ref µs/row", "cov ratio",
                   "fit speed-up", "routing speed-up"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for record in records:
        coverage = "refused" if record["refused"] else _format(record["coverage_test"], ".1%")
        if "coverage_test_in_scope" in record:
            coverage += f" (in-scope {record['coverage_test_in_scope']:.1%})"
        row = [record["dataset"], f"{record['alpha']:.2f}", record["surrogate"],
               _format(record["coverage_certified"], ".1%"), coverage,
               _format(record["agreement_test"], ".3f"), f"{record['fit_s']:.1f}",
               _format(record["route_us_per_row"], ".1f")]
        if with_reference and "reference_fit_s" in record:
            reference_coverage = ("refused" if record["reference_refused"]
                                  else _format(record["reference_coverage_test"], ".1%"))
            row += [reference_coverage, _format(record["reference_agreement_test"], ".3f"),
                    f"{record['reference_fit_s']:.1f}",
                    _format(record["reference_route_us_per_row"], ".1f"),
                    _ratio(record["coverage_test"], record["reference_coverage_test"]),
                    _ratio(record["reference_fit_s"], record["fit_s"]),
                    _ratio(record["reference_route_us_per_row"], record["route_us_per_row"])]
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true",
                        help="also run tracer-llm in the same run and print the ratios")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--dataset", action="append", choices=sorted(DATASET_FILES),
                        help="dataset to run (repeatable; default: all)")
    parser.add_argument("--alpha", action="append", type=float,
                        help=f"target agreement (repeatable; default: {ALPHAS})")
    parser.add_argument("--datasets-dir", type=Path, default=None,
                        help="folder of the datasets (default: $TRACER_DATASETS_DIR, else "
                             "../shared/datasets)")
    parser.add_argument("--teacher-column", default="label",
                        help="column holding the teacher label (default: the gold label)")
    arguments = parser.parse_args()

    datasets_dir = arguments.datasets_dir or settings.datasets_dir()
    alphas = sorted(set(arguments.alpha or ALPHAS))
    all_records = []
    for name in arguments.dataset or list(DATASET_FILES):
        frame: pd.DataFrame = load_dataset(name, datasets_dir)
        if arguments.teacher_column not in frame.columns:
            raise SystemExit(f"{name} has no column {arguments.teacher_column!r}")
        _, fit_split, eval_split = DATASET_FILES[name]
        texts = frame["text"].tolist()
        X = cached_embeddings(name, texts)
        teacher = frame[arguments.teacher_column].astype(str).to_numpy()
        fit_rows = np.flatnonzero(frame["split"].to_numpy() == fit_split)
        eval_rows = np.flatnonzero(frame["split"].to_numpy() == eval_split)

        records = run_ours(name, X, teacher, texts, fit_rows, eval_rows, alphas)
        if arguments.reference:
            reference = run_reference(name, X, teacher, texts, fit_rows, eval_rows, alphas)
            for record in records:
                record.update(reference[record["alpha"]])
        for record in records:
            if arguments.json:
                print(json.dumps(record), flush=True)
        all_records += records
    if not arguments.json:
        print_table(all_records, arguments.reference)


if __name__ == "__main__":
    main()
