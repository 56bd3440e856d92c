"""Resumable generation: sample, render and judge killed after some chunks resume at the first unfinished one, and
the finished output is byte-identical to an uninterrupted run; stale and half-written chunks are redone."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import polars as pl
import pytest
import torch
from PIL import Image

import caig.generate.chunks as chunks
from caig.config import compose
from caig.errors import ConfigError
from caig.generate import judge as judge_command
from caig.generate import sampling as sample_command
from caig.generate.chunks import chunk_products, parts_folder, plan_chunks
from caig.models import build_llava
from caig.models.llava import save_pretrained_model
from caig.preference import render as render_command
from caig.reward import RewardModel, save_reward_model

pytestmark = pytest.mark.usefixtures("one_thread")

N_PRODUCTS = 7
CHUNK = 2  # 4 chunks: 2, 2, 2, 1 products
N_CHUNKS = 4
COMMANDS = ("sample", "render", "judge")


class Killed(RuntimeError):
    """Stands for the SIGKILL that ends an attempt."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A catalog of cut-outs, the product sets, a tiny prompt model and a tiny reward model."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "images").mkdir()
    rows = []
    for i in range(N_PRODUCTS):
        image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
        image.paste((40 * i, 120, 200 - 25 * i, 255), (8, 6, 26, 28))
        image.save(root / "images" / f"P{i}.png")
        rows.append({"product_id": f"P{i}", "title": f"lamp {i}", "category": "home", "image": f"images/P{i}.png",
                     "price": 10.0 + i})
    pl.DataFrame(rows).write_parquet(root / "catalog.parquet")
    pl.DataFrame({"product_id": [r["product_id"] for r in rows], "role": ["train"] * N_PRODUCTS}).write_parquet(
        root / "products.parquet"
    )
    corpus = ["a cozy living room with a potted plant", "a beach at sunset", "lamp 1", "a marble kitchen"]
    save_pretrained_model(*build_llava(compose([]).model, corpus), root / "pm")
    backbone, processor = build_llava(compose([]).model, corpus)
    torch.manual_seed(0)
    save_reward_model(RewardModel(backbone), processor, root / "rm")
    return root


def config(*overrides: str):
    return compose(["preset=tiny", f"preference.chunk_products={CHUNK}", "preference.sample.max_new_tokens=6",
                    "preference.sample.batch_size=3", "preference.judge.batch_size=3", "model.pair_image_size=32",
                    *overrides])


def run_command(command: str, inputs: Path, out: Path, *overrides: str) -> None:
    """One attempt of ``command`` on the fixture's inputs (render and judge read the reference run's upstream)."""
    upstream = inputs / "reference"
    common = {"catalog": inputs / "catalog.parquet", "image_root": None, "out": out}
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


@pytest.fixture(scope="module")
def reference(inputs) -> Path:
    """Uninterrupted runs of sample, render (of those candidates) and judge (of those ads)."""
    for command in COMMANDS:
        run_command(command, inputs, inputs / "reference" / command)
        assert not parts_folder(inputs / "reference" / command).exists()
    candidates = pl.read_parquet(inputs / "reference" / "sample" / "candidates.parquet")
    assert candidates["product_id"].n_unique() == N_PRODUCTS  # none left out: render and judge have 4 chunks too
    return inputs / "reference"


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def finished(monkeypatch) -> list[int]:
    """The chunks whose completion record is written, in order (monkeypatches ChunkStore.finish)."""
    done: list[int] = []
    finish = chunks.ChunkStore.finish

    def recording(store, index, frame, counts, files):
        finish(store, index, frame, counts, files)
        done.append(index)

    monkeypatch.setattr(chunks.ChunkStore, "finish", recording)
    return done


def kill_after(monkeypatch, k: int) -> None:
    """The attempt dies in chunk k+1, after that chunk's data is written but before its record."""
    finish = chunks.ChunkStore.finish
    calls = []

    def dying(store, index, frame, counts, files):
        calls.append(index)
        if len(calls) > k:
            frame.write_parquet(store.data_path(index))  # half-written: data, no record
            raise Killed(f"killed in chunk {index}")
        finish(store, index, frame, counts, files)

    monkeypatch.setattr(chunks.ChunkStore, "finish", dying)


def interrupted(monkeypatch, command: str, inputs: Path, out: Path, k: int, *overrides: str) -> None:
    with monkeypatch.context() as patch:
        kill_after(patch, k)
        with pytest.raises(Killed):
            run_command(command, inputs, out, *overrides)
    assert not out.exists() or not any(out.iterdir())  # nothing that looks finished
    records = sorted(p.name for p in parts_folder(out).glob("chunk-*.json"))
    assert records == [f"chunk-{i:05d}.json" for i in range(k)]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_killed_attempt_resumes_at_the_first_unfinished_chunk(command, inputs, reference, tmp_path, monkeypatch,
                                                                 caplog):
    out = tmp_path / command
    interrupted(monkeypatch, command, inputs, out, 2)
    done = finished(monkeypatch)
    with caplog.at_level(logging.INFO, logger="caig"):
        run_command(command, inputs, out)
    assert done == [2, 3]  # only the unfinished chunks are redone
    assert f"resuming: 2 of {N_CHUNKS} chunks finished by an earlier attempt, 2 to do" in caplog.text
    assert "chunk 2: data without a completion record" in caplog.text
    assert files_of(out) == files_of(reference / command)  # byte-identical, images included
    assert not parts_folder(out).exists()


@pytest.mark.parametrize(
    ("command", "other_settings"),
    [("sample", "preference.sample.temperature=0.5"), ("render", "preference.render.seed_per=candidate"),
     ("judge", "preference.judge.caption=false")],
)
def test_chunks_made_with_other_settings_are_redone(command, other_settings, inputs, reference, tmp_path,
                                                     monkeypatch, caplog):
    out = tmp_path / command
    interrupted(monkeypatch, command, inputs, out, 2, other_settings)
    done = finished(monkeypatch)
    with caplog.at_level(logging.INFO, logger="caig"):
        run_command(command, inputs, out)
    assert done == [0, 1, 2, 3]
    assert caplog.text.count("made from other inputs, settings or products; discarded and redone") == 2
    assert files_of(out) == files_of(reference / command)


@pytest.mark.parametrize("command", COMMANDS)
def test_half_written_chunks_and_stray_files_are_redone_or_removed(command, inputs, reference, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / command
    interrupted(monkeypatch, command, inputs, out, 3)
    parts = parts_folder(out)
    chunks.ChunkStore(parts, "", plan_chunks([], 1)).record_path(1).unlink()  # chunk 1: data, no record
    (parts / ".chunk-00003.parquet.x1y2.tmp").mkdir()  # an atomic write the kill interrupted
    if command == "render":
        (parts / "ads" / "stray.png").write_bytes(b"not listed by any record")
        (parts / "ads" / "P0_0.png").write_bytes(b"truncated")  # chunk 0's image changed: chunk 0 is redone
    done = finished(monkeypatch)
    run_command(command, inputs, out)
    assert done == ([0, 1, 3] if command == "render" else [1, 3])
    assert files_of(out) == files_of(reference / command)
    assert not parts.exists()


def killed_in_assembly(store) -> pl.DataFrame:
    raise Killed("killed while assembling the output")


def test_an_interrupted_render_assembly_moves_the_images_back(inputs, reference, tmp_path, monkeypatch):
    out = tmp_path / "render"
    with monkeypatch.context() as patch:  # every chunk finished, then killed while assembling
        patch.setattr(chunks.ChunkStore, "table", killed_in_assembly)
        with pytest.raises(Killed):
            run_command("render", inputs, out)
    staging = Path(f"{out}.partial")
    staging.mkdir()
    os.replace(parts_folder(out) / "ads", staging / "ads")  # killed after moving the images into place
    done = finished(monkeypatch)
    run_command("render", inputs, out)
    assert done == []  # every chunk was kept
    assert files_of(out) == files_of(reference / "render") and not staging.exists()


def test_chunks_follow_the_product_order():
    assert plan_chunks(["a", "b", "c", "d", "e"], 2) == [("a", "b"), ("c", "d"), ("e",)]
    assert plan_chunks([], 4) == [()]
    assert chunk_products(config()) == CHUNK
    for bad in (0, "'many'", 1.5):
        with pytest.raises(ConfigError, match="preference.chunk_products"):
            chunk_products(config(f"preference.chunk_products={bad}"))


def test_the_digest_follows_inputs_and_settings(tmp_path):
    data = tmp_path / "a.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(data)
    cfg = config()
    first = chunks.work_digest("judge", {"ads": data}, cfg, ("preference.judge",), epoch=1)
    assert chunks.work_digest("judge", {"ads": data}, cfg, ("preference.judge",), epoch=1) == first
    assert chunks.work_digest("judge", {"ads": data}, cfg, ("preference.judge",), epoch=2) != first
    assert chunks.work_digest("judge", {"ads": data}, config("preference.judge.margin=0.1"),
                              ("preference.judge",), epoch=1) != first
    pl.DataFrame({"x": [2]}).write_parquet(data)
    assert chunks.work_digest("judge", {"ads": data}, cfg, ("preference.judge",), epoch=1) != first


def test_two_ranks_split_each_chunk_and_resume(tmp_path):
    from torch.multiprocessing import ProcessRaisedException, spawn

    from tests.unit import chunk_ranks

    with pytest.raises(ProcessRaisedException, match="killed"):
        spawn(chunk_ranks.attempt, args=(str(tmp_path), 2), nprocs=2)  # both ranks die in the third chunk
    assert sorted(p.name for p in (tmp_path / "out.parts").glob("*.json")) == ["chunk-00000.json", "chunk-00001.json"]
    spawn(chunk_ranks.attempt, args=(str(tmp_path), None), nprocs=2)
    assert (tmp_path / "done.txt").read_text() == "2 7"  # chunks 3 and 4 done in the second attempt; 7 products
    table = pl.read_parquet(tmp_path / "table.parquet")
    assert table["product_id"].to_list() == chunk_ranks.PRODUCTS  # the product order, whichever rank did what
    assert table["rank"].to_list() == [0, 1, 0, 1, 0, 1, 0]  # each rank took every other product of a chunk
