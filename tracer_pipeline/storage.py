"""Where each asset keeps its files, and writes that appear atomically.

Every file the pipeline writes is first written under a temporary name in the same folder and
then renamed into place, so a reader (or a killed run) sees the old file or the new one, never
half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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
