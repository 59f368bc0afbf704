"""`trace_embeddings`: each distinct text of the day embedded once."""

import time

import dagster as dg
import numpy as np
import pandas as pd

from tracer_pipeline.embeddings.embedder import PROGRESS_LOG_SECONDS
from tracer_pipeline.embeddings.store import read_embeddings, write_embeddings
from tracer_pipeline.partitions import PREVIOUS_DAY, daily_partitions, days_up_to
from tracer_pipeline.resources import EmbedderResource, TraceStorage
from tracer_pipeline.storage import WarehouseLayout
from tracer_pipeline.traces.reader import LONG_TEXT_CHARS


def earlier_vectors(
    layout: WarehouseLayout, day: str, text_keys: list[str], model_name: str
) -> dict[str, np.ndarray]:
    """Vectors that days before `day` already computed for some of `text_keys` with this model.

    A text is keyed by its content, so a text seen on an earlier day is not embedded again.
    Only earlier days are read, never a later one.
    """
    # Known shortcoming: every earlier day's file is scanned; a long history would want one
    # content-keyed index of all vectors instead.
    wanted = set(text_keys)
    found: dict[str, np.ndarray] = {}
    for earlier in days_up_to(day)[:-1]:
        path = layout.embeddings(earlier)
        if not wanted or not path.exists():
            continue
        keys, matrix, model = read_embeddings(path)
        if model != model_name:
            continue
        for position, key in enumerate(keys):
            if key in wanted:
                found[key] = matrix[position]
                wanted.discard(key)
    return found


@dg.asset(
    partitions_def=daily_partitions,
    # Earlier days first: a text they embedded is reused, so a backfill embeds in day order too.
    # (The int8 embedder's vector of a text moves slightly, max |d| ~ 0.03, with the other texts
    # of its batch: which day embeds a text first must not depend on how the days were run.)
    deps=["raw_traces", dg.AssetDep("trace_embeddings", partition_mapping=PREVIOUS_DAY)],
    group_name="flywheel",
    kinds={"parquet", "pytorch"},
)
def trace_embeddings(
    context: dg.AssetExecutionContext, storage: TraceStorage, embedder: EmbedderResource
) -> dg.MaterializeResult:
    """Sentence embeddings of the day's trace texts, one row per distinct text.

    Written to `warehouse/embeddings/<day>.parquet` keyed by the text's content key, so the
    refit joins them to traces of any day. A text an earlier day already embedded (same model)
    reuses that vector instead of being embedded again. Only this day's file is written:
    re-materializing a day never changes another day's embeddings. Texts longer than the
    long-text limit are cut before embedding (the model would ignore the rest anyway). The
    embedder is the resource's kind: int8 ONNX by default, whose name ("…/onnx-int8-v2") is
    recorded with the vectors, with the seconds the embedding took.
    """
    day = context.partition_key
    layout = storage.layout
    traces = pd.read_parquet(layout.raw_traces(day), columns=["text_key", "input"])
    distinct = traces.drop_duplicates("text_key")

    model = embedder.get()
    keys = distinct["text_key"].tolist()
    reused = earlier_vectors(layout, day, keys, model.name)
    new = [key not in reused for key in keys]
    started = time.perf_counter()
    texts = [text[:LONG_TEXT_CHARS] for text, is_new in zip(distinct["input"], new) if is_new]
    fresh = model.embed(texts, progress=_progress_log(context, day, started))
    seconds = time.perf_counter() - started
    vectors = np.zeros((len(keys), model.dimension), dtype=np.float32)
    if texts:
        vectors[np.flatnonzero(new)] = fresh
    for position, key in enumerate(keys):
        if key in reused:
            vectors[position] = reused[key]
    write_embeddings(layout.embeddings(day), keys, vectors, model.name, seconds=seconds)

    rate = len(texts) / seconds if seconds > 0 and texts else 0.0
    context.log.info(
        f"{day}: embedded {len(texts)} distinct texts in {seconds:.1f} s, "
        f"reused {len(reused)} vectors of earlier days"
    )
    return dg.MaterializeResult(
        metadata={
            "texts_embedded": len(texts),
            "texts_reused_from_earlier_days": len(reused),
            "traces": len(traces),
            "model": model.name,
            "dimension": model.dimension,
            "embed_seconds": round(seconds, 3),
            "texts_per_second": round(rate, 1),
            "path": dg.MetadataValue.path(str(layout.embeddings(day))),
        }
    )


def _progress_log(context: dg.AssetExecutionContext, day: str, started: float):
    """A progress callback that logs to the run at most every `PROGRESS_LOG_SECONDS`."""
    last_logged = [started]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - last_logged[0] >= PROGRESS_LOG_SECONDS:
            last_logged[0] = now
            rate = done / (now - started)
            context.log.info(f"{day}: embedded {done}/{total} texts ({rate:.0f} texts/s)")

    return report
