"""Data parallelism for the inference steps (sample, render, judge): under ``caig launch`` every rank takes
every N-th product of each chunk (``caig.generate.chunks``) on its own GPU, and the main rank assembles the chunk in
the original order and records it.

On the paper preset an epoch samples, renders and judges ~64K candidates; one rank per GPU divides that by
the node's GPU count. A process started without a multi-rank launcher is a world of one: nothing is
gathered, and torch is not even imported (rendering with the world's renderer needs none).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

T = TypeVar("T")

_ORDER = "_shard_order"


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` ranks (``distributed``: a process group carries the gathers)."""

    rank: int = 0
    size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_world() -> World:
    """Join the launcher's process group when the launcher started several ranks, else a world of one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    from caig.launch.dist import init_distributed

    info = init_distributed()
    return World(info.rank, info.world_size, info.backend is not None)


def local_device() -> Any:
    """This rank's device: its GPU when CUDA is available (the launcher set it current), else the CPU."""
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def my_share(items: Sequence[T], world: World) -> list[T]:
    """The items this rank handles: every ``size``-th, starting at its rank."""
    return list(items[world.rank :: world.size])


def gather_objects(obj: T, world: World) -> list[T] | None:
    """Every rank's ``obj`` in rank order on the main rank, None on the others; ``[obj]`` in a world of one."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    gathered: list[T | None] = [None] * world.size
    dist.all_gather_object(gathered, obj)
    return [item for item in gathered if item is not None] if world.is_main else None


def broadcast_object(obj: T | None, world: World) -> T | None:
    """The main rank's ``obj`` on every rank (``obj`` itself in a world of one)."""
    if not world.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_in_order(part: pl.DataFrame, key: str, order: Sequence[str], world: World) -> pl.DataFrame | None:
    """Every rank's rows on the main rank (None elsewhere), sorted by the position of ``key`` in ``order``;
    rows with the same key keep their order."""
    parts = gather_objects(part, world)
    if parts is None:
        return None
    whole = pl.concat(parts, how="vertical")
    rank = {value: i for i, value in enumerate(order)}
    positions = pl.Series(_ORDER, [rank[value] for value in whole.get_column(key).to_list()], dtype=pl.Int64)
    return whole.with_columns(positions).sort(_ORDER, maintain_order=True).drop(_ORDER)


def barrier(world: World) -> None:
    """Wait for every rank (nothing to wait for in a world of one)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()
