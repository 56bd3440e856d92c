"""Join the launcher's process group from stage code, and always leave it at exit.

``caig launch`` (or torchrun, or srun via ``caig.launch.rank``) puts MASTER_ADDR/MASTER_PORT/RANK/
WORLD_SIZE/LOCAL_RANK in the environment; ``init_distributed`` turns them into the default process group
(NCCL on GPUs, gloo on CPU). A world of one is initialised too, so collectives (the preemption vote) work
the same everywhere. Teardown is registered with ``atexit``: the DeepSpeed launcher aborts a process that
exits with a live process group, whoever created it (our code, HF Accelerate or DeepSpeed).
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

LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")


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


def init_distributed(backend: str | None = None, timeout_minutes: float = 30) -> DistInfo:
    """Initialise the default process group from the launcher's environment (once; later calls return it).

    Without the launcher's variables this is a world of one with no process group. Registers
    ``shutdown_distributed`` with atexit so the group is destroyed however the process ends.
    """
    atexit.unregister(shutdown_distributed)  # registered once however often this is called
    atexit.register(shutdown_distributed)
    if dist.is_available() and dist.is_initialized():
        return current()
    present = [key for key in LAUNCH_VARS if key in os.environ]
    if not present:
        return current()
    missing = [key for key in LAUNCH_VARS if key not in os.environ]
    if missing:
        raise ConfigError(
            f"distributed environment incomplete: {', '.join(missing)} unset (run under caig launch)"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    info = current()
    get_logger("launch").info(
        "joined process group: rank %d/%d, backend %s", info.rank, info.world_size, backend
    )
    return info


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
