"""Join the launcher's process group from stage code, and always leave it at exit.

``caig launch`` puts RANK/WORLD_SIZE/LOCAL_RANK in the environment (torchrun adds MASTER_ADDR/MASTER_PORT,
the address of its agent's store); ``init_distributed`` turns them into the default process group (NCCL on
GPUs, gloo on CPU). A world of one is initialised too, so collectives (the preemption vote) work the same
everywhere, on an in-process store: it needs no TCP port, so concurrent jobs cannot race for one. Stage
code calls it before HF Trainer, Accelerate or DeepSpeed look for a group: they then use this one and open
no port of their own (Accelerate would otherwise bind MASTER_PORT, 29500 when unset, for a CPU world).
Multi-node ranks (``caig.launch.rank``) hand in the store of their rendezvous. Teardown is registered with
``atexit``: the DeepSpeed launcher aborts a process that exits with a live process group, whoever created
it (our code, HF Accelerate or DeepSpeed).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from caig.errors import ConfigError
from caig.logs import get_logger

WORLD_VARS = ("RANK", "WORLD_SIZE")
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT")  # needed by env:// in a world of more than one


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the world; ``backend`` is None when no process group exists."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """The device collectives of this backend use (NCCL needs this rank's GPU)."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def current() -> DistInfo:
    """The world as it stands: the default process group if there is one, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend()
        )
    return DistInfo(0, 1, 0, None)


def init_distributed(
    backend: str | None = None, timeout_minutes: float = 30, store: dist.Store | None = None
) -> DistInfo:
    """Initialise the default process group from the launcher's environment (once; later calls return it).

    Without RANK and WORLD_SIZE this is a world of one with no process group. A world of one gets an
    in-process store (no port); a larger one joins ``store`` when given (a multi-node rendezvous), else
    MASTER_ADDR:MASTER_PORT (``env://``, torchrun's agent store). Registers ``shutdown_distributed`` with
    atexit so the group is destroyed however the process ends.
    """
    atexit.unregister(shutdown_distributed)  # registered once however often this is called
    atexit.register(shutdown_distributed)
    if dist.is_available() and dist.is_initialized():
        return current()
    if not any(key in os.environ for key in WORLD_VARS):
        return current()
    missing = [key for key in WORLD_VARS if key not in os.environ]
    if missing:
        raise ConfigError(
            f"distributed environment incomplete: {', '.join(missing)} unset (run under caig launch)"
        )
    rank, world_size = (launch_number(key) for key in WORLD_VARS)
    if not 0 <= rank < world_size:
        raise ConfigError(f"distributed environment: RANK={rank} is not in [0, WORLD_SIZE={world_size})")
    if store is None and world_size == 1:
        store = dist.HashStore()
    if store is None:
        missing = [key for key in RENDEZVOUS_VARS if key not in os.environ]
        if missing:
            raise ConfigError(
                f"distributed environment incomplete: {', '.join(missing)} unset for WORLD_SIZE={world_size} "
                "(run under caig launch)"
            )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    timeout = timedelta(minutes=timeout_minutes)
    if store is None:
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        dist.init_process_group(
            backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout
        )
    info = current()
    get_logger("launch").info(
        "joined process group: rank %d/%d, backend %s", info.rank, info.world_size, backend
    )
    return info


def launch_number(key: str) -> int:
    """An integer launch variable (RANK, WORLD_SIZE); ConfigError naming it when it is not a number."""
    value = os.environ[key]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"distributed environment: {key}={value!r} is not an integer") from None


def shutdown_distributed() -> None:
    """Destroy the default process group if one exists; safe to call any number of times."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(backend: str | None = None) -> Iterator[DistInfo]:
    """``with distributed() as world:`` joins the group on entry and destroys it on exit, even on error."""
    try:
        yield init_distributed(backend)
    finally:
        shutdown_distributed()
