"""Where each asset keeps its files, and writes that appear atomically.

Every file the pipeline writes is first written under a temporary name in the same folder and
then renamed into place, so a reader (or a killed run) sees the old file or the new one, never
half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Columns of a refit's held-out decisions (`WarehouseLayout.holdout_decisions`): the parity gate
# writes them, the interpretability report reads them.
HOLDOUT_COLUMNS = (
    "trace_id",
    "input",
    "teacher",
    "surrogate_label",
    "handled",
    "score",
    "defer_reason",
)


class WarehouseLayout:
    """Paths of the files the assets write, under `<data_dir>/warehouse`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "warehouse"

    def raw_traces(self, day: str) -> Path:
        return self.root / "raw_traces" / f"{day}.parquet"

    def quarantine(self, day: str) -> Path:
        return self.root / "quarantine" / f"{day}.parquet"

    def embeddings(self, day: str) -> Path:
        return self.root / "embeddings" / f"{day}.parquet"

    def refit(self, day: str) -> Path:
        return self.root / "refits" / day

    def candidates(self, day: str) -> Path:
        return self.refit(day) / "candidates"

    def refit_manifest(self, day: str) -> Path:
        return self.refit(day) / "refit.json"

    def trace_splits(self, day: str) -> Path:
        return self.refit(day) / "splits.parquet"

    def refit_embeddings(self, day: str) -> Path:
        return self.refit(day) / "embeddings.npy"

    def gate_outcome(self, day: str) -> Path:
        return self.refit(day) / "gate.json"

    def policy(self, day: str) -> Path:
        return self.refit(day) / "policy"

    def holdout_decisions(self, day: str) -> Path:
        return self.refit(day) / "holdout_decisions.parquet"

    def deployment(self, day: str) -> Path:
        return self.refit(day) / "deployment.json"

    def report_dir(self, day: str) -> Path:
        return self.refit(day) / "report"

    def partition_lock_file(self, day: str) -> Path:
        return self.root / "locks" / f"{day}.lock"

    def registry_lock_file(self) -> Path:
        return self.root / "locks" / "registry.lock"


def _temporary_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` as parquet so that the file appears whole or not at all."""
    temporary = _temporary_sibling(path)
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_npy_atomic(array: np.ndarray, path: Path) -> None:
    """Write `array` as .npy (never pickled) so that the file appears whole or not at all."""
    temporary = _temporary_sibling(path)
    try:
        with temporary.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(text: str, path: Path) -> None:
    """Write `text` (UTF-8) to `path` so that the file appears whole or not at all."""
    temporary = _temporary_sibling(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json_atomic(payload: Mapping[str, Any], path: Path) -> None:
    write_text_atomic(json.dumps(payload, indent=2, sort_keys=True, default=str), path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def replace_folder_atomic(fill: Any, path: Path) -> None:
    """Build a folder with `fill(temporary_folder)` and swap it in for `path`.

    The new folder is renamed into place; an old folder at `path` is first renamed aside and
    removed afterwards, so a reader sees either the old or the new complete folder (between the
    two renames, briefly, none).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        fill(staging)
        retired = None
        if path.exists():
            retired = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.replace(path, retired)
        os.replace(staging, path)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def folder_sha256(folder: Path) -> str:
    """SHA-256 over every file of `folder`: relative paths and contents, in sorted order."""
    import hashlib

    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


# How often a waiting `partition_lock` tries again.
LOCK_POLL_SECONDS = 0.1


class PartitionLockedError(RuntimeError):
    """Another process holds the day's partition lock and did not let go in time."""


class RegistryLockedError(RuntimeError):
    """Another deployment or rollback holds the champion alias and did not let go in time."""


@contextlib.contextmanager
def partition_lock(
    layout: WarehouseLayout, day: str, timeout_s: float = 600.0, holder: str = ""
) -> Iterator[Path]:
    """Hold the exclusive lock of one day's outputs while writing them.

    Two runs of the same day (two in-process materializations, or runs launched outside the
    Dagster queue, whose tag limit otherwise keeps them apart) take turns: the second waits up
    to `timeout_s` seconds, then raises `PartitionLockedError` naming the holder. The lock is an
    `fcntl.flock` on `warehouse/locks/<day>.lock`; the kernel releases it when the holding
    process exits, even when it is killed, so a crashed run never leaves a day locked. The lock
    is re-entrant within one thread (a command that holds the day for a whole run may call
    assets that take it again); another thread of the same process waits like another process.
    The lock file's text (who holds it) is informative only; it is rewritten in place by each
    holder and is not an output.
    """
    with _exclusive_lock(
        layout.partition_lock_file(day), f"the outputs of {day} are being written", timeout_s,
        holder, PartitionLockedError,
    ) as path:
        yield path


@contextlib.contextmanager
def registry_lock(
    layout: WarehouseLayout, timeout_s: float = 600.0, holder: str = ""
) -> Iterator[Path]:
    """Hold the lock of the `champion` alias while reading, judging and moving it.

    Runs of different days may run side by side (a backfill beside the schedule); their
    deployments read the alias and the recorded days, then move the alias. Under this lock one
    deployment (or rollback) at a time does so, so a day can never move the alias back over a
    later day that deployed meanwhile. Same mechanics as `partition_lock`; a wait past
    `timeout_s` raises `RegistryLockedError` naming the holder.
    """
    with _exclusive_lock(
        layout.registry_lock_file(), "the champion alias is being moved", timeout_s, holder,
        RegistryLockedError,
    ) as path:
        yield path


# Lock files held by the current thread: taking one of them again does not wait for itself.
_HELD_BY_THREAD = threading.local()


@contextlib.contextmanager
def _exclusive_lock(
    path: Path, what: str, timeout_s: float, holder: str, timeout_error: type[RuntimeError]
) -> Iterator[Path]:
    held = _HELD_BY_THREAD.__dict__.setdefault("paths", set())
    key = str(path.resolve())
    if key in held:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a+", encoding="utf-8") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    current = handle.read().strip() or "an unknown process"
                    raise timeout_error(
                        f"{what} by {current} "
                        f"(lock {path}); waited {timeout_s:g} s. Run this again once "
                        "that run has finished."
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(
                f"pid {os.getpid()} on {socket.gethostname()}"
                f"{f' ({holder})' if holder else ''} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
            )
            handle.flush()
            held.add(key)
            yield path
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)
