"""Atomic writes: an output appears under its final name only once it is complete.

A crash, a preemption or a validation error never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write to; on success it is renamed to ``path``.

    Works for files and directories. On an exception the temporary path is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pl.DataFrame | pl.LazyFrame, path: str | Path) -> Path:
    """Write a frame to Parquet atomically (a LazyFrame is streamed with ``sink_parquet``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(df, pl.LazyFrame):
            df.sink_parquet(tmp)
        else:
            df.write_parquet(tmp)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON (indented, keys in insertion order) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
