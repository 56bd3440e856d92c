"""One rank of a two-rank (gloo) chunked run, for test_resumable_generation; a module of its own so the spawned
processes import only torch, polars and caig.generate.chunks."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch.distributed as dist

from caig.generate.chunks import ChunkStore, ChunkWork, plan_chunks, work_through
from caig.preference.sharding import World

PRODUCTS = [f"P{i}" for i in range(7)]


class Killed(RuntimeError):
    """Stands for the kill that ends an attempt (both ranks die in the same chunk)."""


def attempt(rank: int, folder: str, die_in_chunk: int | None) -> None:
    """Two ranks work through 4 chunks of 2 products (each takes every other product of a chunk); dies in chunk
    ``die_in_chunk`` of this attempt, else the main rank writes the assembled table and the chunks it did."""
    root = Path(folder)
    dist.init_process_group("gloo", init_method=f"file://{root / f'store-{die_in_chunk}'}", rank=rank, world_size=2)
    world = World(rank, 2, True)
    store = ChunkStore(root / "out.parts", "digest" if world.is_main else "", plan_chunks(PRODUCTS, 2))
    calls = []

    def work(ids: list[str]) -> ChunkWork:
        calls.append(ids)
        if die_in_chunk is not None and len(calls) > die_in_chunk:
            raise Killed(f"rank {rank} killed")
        return ChunkWork(pl.DataFrame({"product_id": ids, "rank": [rank] * len(ids)}, schema={
            "product_id": pl.String, "rank": pl.Int64}), counts={"products": len(ids)})

    try:
        done = work_through(store, world, work)
        if world.is_main:
            store.table().write_parquet(root / "table.parquet")
            (root / "done.txt").write_text(f"{done} {store.counts()['products']}")
    finally:
        dist.destroy_process_group()
