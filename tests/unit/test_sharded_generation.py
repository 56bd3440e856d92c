"""Scatter/gather of sample, render and judge: K shards of whole chunks, then a gather that moves their files, give
the bytes of a whole run (K = 1); a killed shard reruns alone; a gather never works or accepts foreign shards."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

import caig.generate.chunks as chunks
from caig.errors import InputError
from caig.generate import judge as judge_command
from caig.generate import sampling as sample_command
from caig.generate.chunks import parse_shard, parts_folder, shard_indices
from caig.preference import render as render_command
from tests.unit.test_resumable_generation import (  # noqa: F401  (fixtures)
    COMMANDS,
    N_CHUNKS,
    Killed,
    config,
    files_of,
    finished,
    inputs,
    kill_after,
    reference,
)

pytestmark = pytest.mark.usefixtures("one_thread")

K = 3
SHARDS = [f"{i}-of-{K}" for i in range(1, K + 1)]


def run_split(command: str, inputs: Path, out: Path, *, shard: str | None = None,
              gather: list[Path] | None = None, overrides: tuple[str, ...] = ()) -> None:
    """One job of ``command`` on the fixture's inputs: a shard, a gather, or (neither) a whole run."""
    upstream = inputs / "reference"
    common = {"catalog": inputs / "catalog.parquet", "image_root": None, "out": out, "shard": shard, "gather": gather}
    if command == "sample":
        args = argparse.Namespace(model=inputs / "pm", products=inputs / "products.parquet", role="train", epoch=1,
                                  **common)
        sample_command.run(args, config(*overrides))
    elif command == "render":
        render_command.run(argparse.Namespace(candidates=upstream / "sample" / "candidates.parquet", **common),
                           config(*overrides))
    else:
        args = argparse.Namespace(ads=upstream / "render" / "ads.parquet", reward_model=inputs / "rm", epoch=1,
                                  **common)
        judge_command.run(args, config(*overrides))


def shard_folders(root: Path) -> list[Path]:
    return [root / "shards" / item for item in SHARDS]


@pytest.mark.parametrize("command", COMMANDS)
def test_three_shards_and_a_gather_write_the_bytes_of_one_job(command, inputs, reference, tmp_path, monkeypatch):
    folders = shard_folders(tmp_path)
    done = finished(monkeypatch)
    for item, folder in zip(SHARDS, folders):
        run_split(command, inputs, folder, shard=item)
    assert done == list(range(N_CHUNKS))  # every chunk once, in shard order: chunks 0 | 1 | 2, 3
    assert all(not parts_folder(folder).exists() for folder in folders)
    images = {p.name: p.stat().st_ino for folder in folders for p in (folder / "ads").glob("*.png")}
    done.clear()
    run_split(command, inputs, tmp_path / command, gather=folders)
    assert done == []  # the gather works nothing out itself
    assert files_of(tmp_path / command) == files_of(reference / command)  # byte-identical, images included
    assert not parts_folder(tmp_path / command).exists()
    if command == "render":  # moved, not copied: the same files (inodes), and none left in the shards
        assert images and {p.name: p.stat().st_ino for p in (tmp_path / "render" / "ads").glob("*.png")} == images
        assert not [p for folder in folders for p in (folder / "ads").glob("*.png")]


def test_a_killed_shard_reruns_alone_and_resumes(inputs, reference, tmp_path, monkeypatch):
    folders = shard_folders(tmp_path)
    run_split("render", inputs, folders[0], shard=SHARDS[0])
    with monkeypatch.context() as patch:  # shard 3 (chunks 2 and 3) dies in chunk 3
        kill_after(patch, 1)
        with pytest.raises(Killed):
            run_split("render", inputs, folders[2], shard=SHARDS[2])
    run_split("render", inputs, folders[1], shard=SHARDS[1])
    before = {folder: files_of(folder) for folder in folders[:2]}
    done = finished(monkeypatch)
    run_split("render", inputs, folders[2], shard=SHARDS[2])  # the rerun of the failed shard
    assert done == [3]
    assert {folder: files_of(folder) for folder in folders[:2]} == before
    run_split("render", inputs, tmp_path / "render", gather=folders)
    assert files_of(tmp_path / "render") == files_of(reference / "render")


def test_a_gather_killed_while_moving_finishes_on_its_rerun(inputs, reference, tmp_path):
    folders = shard_folders(tmp_path)
    for item, folder in zip(SHARDS, folders):
        run_split("render", inputs, folder, shard=item)
    parts = parts_folder(tmp_path / "render")
    (parts / "ads").mkdir(parents=True)
    for image in sorted((folders[2] / "ads").glob("*.png"))[:3]:  # killed after moving three of shard 3's images
        os.replace(image, parts / "ads" / image.name)
    os.replace(folders[2] / "chunk-00002.parquet", parts / "chunk-00002.parquet")
    run_split("render", inputs, tmp_path / "render", gather=folders)
    assert files_of(tmp_path / "render") == files_of(reference / "render")


def test_a_gather_refuses_missing_or_foreign_shards(inputs, reference, tmp_path):
    folders = shard_folders(tmp_path)
    for item, folder in zip(SHARDS, folders):
        run_split("sample", inputs, folder, shard=item)
    with pytest.raises(InputError, match=r"the shards hold chunks \[0, 1\]"):
        run_split("sample", inputs, tmp_path / "sample", gather=folders[:2])
    other = tmp_path / "other" / SHARDS[2]
    run_split("sample", inputs, other, shard=SHARDS[2], overrides=("preference.sample.temperature=0.5",))
    with pytest.raises(InputError, match="shard made from other inputs or settings"):
        run_split("sample", inputs, tmp_path / "sample", gather=[*folders[:2], other])
    (folders[1] / "chunk-00001.parquet").unlink()  # a shard damaged after it finished
    with pytest.raises(InputError, match=r"chunks \[1\] are missing or damaged"):
        run_split("sample", inputs, tmp_path / "sample", gather=folders)


def test_shards_split_the_chunks_into_contiguous_runs():
    for n_chunks in range(0, 12):
        for shards in range(1, 6):
            runs = [shard_indices(n_chunks, shard, shards) for shard in range(1, shards + 1)]
            assert [index for run in runs for index in run] == list(range(n_chunks))
            assert max(len(run) for run in runs) - min(len(run) for run in runs) <= 1
    assert list(shard_indices(4, 3, 3)) == [2, 3]


@pytest.mark.parametrize("text", ["0-of-3", "4-of-3", "1of3", "a-of-2", "1-of-0", ""])
def test_a_bad_shard_names_the_value(text):
    with pytest.raises(InputError, match="I-of-K"):
        parse_shard(text)
    assert parse_shard("2-of-3") == (2, 3)


def test_shard_options_exclude_each_other():
    parser = argparse.ArgumentParser()
    chunks.add_shard_options(parser)
    assert parser.parse_args(["--shard", "1-of-2"]).gather is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--shard", "1-of-2", "--gather", "a"])
