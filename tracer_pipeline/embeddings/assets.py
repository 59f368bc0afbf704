"""`trace_embeddings`: each distinct text of the day embedded once."""

import time

import dagster as dg
import pandas as pd

from tracer_pipeline.embeddings.embedder import PROGRESS_LOG_SECONDS
from tracer_pipeline.embeddings.store import write_embeddings
from tracer_pipeline.partitions import daily_partitions
from tracer_pipeline.resources import EmbedderResource, TraceStorage
from tracer_pipeline.traces.reader import LONG_TEXT_CHARS


@dg.asset(
    partitions_def=daily_partitions,
    deps=["raw_traces"],
    group_name="flywheel",
    kinds={"parquet", "pytorch"},
)
def trace_embeddings(
    context: dg.AssetExecutionContext, storage: TraceStorage, embedder: EmbedderResource
) -> dg.MaterializeResult:
    """Sentence embeddings of the day's trace texts, one row per distinct text.

    Written to `warehouse/embeddings/<day>.parquet` keyed by the text's content key, so the
    refit joins them to traces of any day. Only this day's file is written: re-materializing a
    day never changes another day's embeddings. Texts longer than the long-text limit are cut
    before embedding (the model would ignore the rest anyway). The embedder is the resource's
    kind: int8 ONNX by default, whose name ("…/onnx-int8") is recorded with the vectors.
    """
    day = context.partition_key
    layout = storage.layout
    traces = pd.read_parquet(layout.raw_traces(day), columns=["text_key", "input"])
    distinct = traces.drop_duplicates("text_key")

    model = embedder.get()
    started = time.perf_counter()
    texts = [text[:LONG_TEXT_CHARS] for text in distinct["input"]]
    vectors = model.embed(texts, progress=_progress_log(context, day, started))
    seconds = time.perf_counter() - started
    write_embeddings(layout.embeddings(day), distinct["text_key"].tolist(), vectors, model.name)

    rate = len(texts) / seconds if seconds > 0 and texts else 0.0
    context.log.info(f"{day}: embedded {len(texts)} distinct texts in {seconds:.1f} s")
    return dg.MaterializeResult(
        metadata={
            "texts_embedded": len(texts),
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
