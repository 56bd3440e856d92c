"""Rendezvous of a multi-node world (``caig.launch.rank`` under srun) on a port nothing else can hold.

Rank 0 starts the world's TCP store on a port the kernel assigns (a bind to port 0 picks a free port and
holds it from that moment), so neither a second job on the node nor anything else can take it in between,
and publishes the port in ``.caig-rendezvous-<job>.<step>.<restart>.json`` in the working directory, which
every node of a multi-node job sees (Snakemake on Slurm works in a shared directory). The other ranks wait
for that file, connect, and check that the store is their step's before they use it. Rank 0 removes the
file once every rank has joined.

A port derived from the job id (``base + id % span``) can be the same for two jobs sharing a node, and one
picked free and bound later can be taken in between; the port here is bound before anyone learns of it.
The file's name holds the job id, the step id (two steps of one job run side by side) and the restart count
(a requeued job keeps its id and counts its steps from 0 again), so no world ever reads another's file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from caig.errors import CaigError, ConfigError
from caig.io import write_json
from caig.logs import get_logger

# How long the ranks wait for each other: srun starts the tasks of a step together, but their imports on a
# shared file system can take minutes on a busy cluster.
RENDEZVOUS_TIMEOUT = timedelta(minutes=10)
POLL_SECONDS = 0.2
OWNER_KEY = "caig/launch/owner"  # the step the store belongs to, checked by every joining rank
JOINED_KEY = "caig/launch/joined"  # ranks other than 0 that have connected


@dataclass(frozen=True)
class SlurmStep:
    """The Slurm step a world lives in: unique among the steps of every job on the cluster."""

    job_id: str
    step_id: str
    restart: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlurmStep:
        """The step of a task started by srun (SLURM_JOB_ID, SLURM_STEP_ID, SLURM_RESTART_COUNT)."""
        missing = [key for key in ("SLURM_JOB_ID", "SLURM_STEP_ID") if not env.get(key)]
        if missing:
            raise ConfigError(f"{', '.join(missing)} unset: a multi-node rank must be started by srun")
        return cls(env["SLURM_JOB_ID"], env["SLURM_STEP_ID"], env.get("SLURM_RESTART_COUNT", "0"))

    @property
    def token(self) -> str:
        return f"{self.job_id}.{self.step_id}.{self.restart}"

    def address_file(self, folder: Path) -> Path:
        return folder / f".caig-rendezvous-{self.token}.json"


def host_store(
    master_addr: str, world_size: int, step: SlurmStep, folder: Path, timeout: timedelta
) -> dist.TCPStore:
    """Rank 0: start the store on a kernel-assigned port, publish it, and wait until every rank joined."""
    store = dist.TCPStore(master_addr, 0, world_size, is_master=True, timeout=timeout, wait_for_workers=False)
    store.set(OWNER_KEY, step.token)
    address_file = step.address_file(folder)
    write_json({"port": store.port}, address_file)
    try:
        deadline = time.monotonic() + timeout.total_seconds()
        while (joined := store.add(JOINED_KEY, 0)) < world_size - 1:
            if time.monotonic() > deadline:
                raise CaigError(
                    f"rendezvous: {joined} of {world_size - 1} ranks joined the store at {master_addr}:"
                    f"{store.port} within {timeout}"
                )
            time.sleep(POLL_SECONDS)
    finally:
        address_file.unlink(missing_ok=True)
    return store


def join_store(
    master_addr: str, world_size: int, step: SlurmStep, folder: Path, timeout: timedelta
) -> dist.TCPStore:
    """Ranks > 0: wait for rank 0's address file, connect, and check the store is this step's."""
    address_file = step.address_file(folder)
    deadline = time.monotonic() + timeout.total_seconds()
    while not address_file.is_file():
        if time.monotonic() > deadline:
            raise CaigError(f"rendezvous: rank 0 published no address in {address_file} within {timeout}")
        time.sleep(POLL_SECONDS)
    port = int(json.loads(address_file.read_text())["port"])
    store = dist.TCPStore(
        master_addr, port, world_size, is_master=False, timeout=timeout, wait_for_workers=False
    )
    owner = store.get(OWNER_KEY).decode() if store.check([OWNER_KEY]) else "(none)"  # set before publishing
    if owner != step.token:
        raise CaigError(
            f"rendezvous: the store at {master_addr}:{port} belongs to step {owner}, not {step.token}"
        )
    store.add(JOINED_KEY, 1)
    return store


def rendezvous(
    rank: int,
    world_size: int,
    master_addr: str,
    step: SlurmStep,
    folder: Path | None = None,
    timeout: timedelta = RENDEZVOUS_TIMEOUT,
) -> dist.TCPStore:
    """The world's store, hosted by rank 0 on ``master_addr``; ``folder`` (default: the working directory)
    must be the same directory on every node."""
    folder = Path.cwd() if folder is None else folder
    if rank == 0:
        store = host_store(master_addr, world_size, step, folder, timeout)
    else:
        store = join_store(master_addr, world_size, step, folder, timeout)
    get_logger("launch").info(
        "rank %d joined the store of step %s at %s:%d", rank, step.token, master_addr, store.port
    )
    return store
