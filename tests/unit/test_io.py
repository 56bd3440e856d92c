"""Atomic outputs: complete under the final name, or absent."""

from __future__ import annotations

import polars as pl
import pytest

from caig.io import atomic_path, write_json, write_parquet


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_previous_version(tmp_path):
    target = write_json({"v": 1}, tmp_path / "m.json")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise RuntimeError
    assert target.read_text().strip().startswith("{\n")
    assert '"v": 1' in target.read_text()


def test_directory_output_replaced_whole(tmp_path):
    target = tmp_path / "ckpt"
    for version in (1, 2):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / f"v{version}").write_text("x")
    assert [p.name for p in target.iterdir()] == ["v2"]


def test_lazy_frame_is_streamed_to_parquet(tmp_path):
    path = write_parquet(pl.LazyFrame({"a": [1, 2, 3]}).filter(pl.col("a") > 1), tmp_path / "a.parquet")
    assert pl.read_parquet(path)["a"].to_list() == [2, 3]
