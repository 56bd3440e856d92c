"""One task of a multi-node launch: ``srun ... python -m caig.launch.rank <module> [args]``.

Each Slurm task turns its Slurm identity (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, the node list) into
the torch.distributed variables with submitit's helper, joins rank 0's store (``caig.launch.rendezvous``:
a port the kernel assigned to rank 0, so two jobs on a node never meet on one), starts the process group
on it, then runs ``python -m <module> [args]`` in this process, where ``init_distributed`` finds the group
ready. MASTER_PORT is set to the store's port for anything that reads it. ``CUDA_VISIBLE_DEVICES`` is left
alone: every rank sees the node's GPUs and picks its own by LOCAL_RANK, as HF Trainer and DeepSpeed expect.
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import sys

from submitit.helpers import TorchDistributedEnvironment

from caig.launch.dist import init_distributed
from caig.launch.rendezvous import SlurmStep, rendezvous
from caig.logs import get_logger


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m caig.launch.rank <module> [args ...]")
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # early warning: only a checkpointing rank reacts
    os.environ["SUBMITIT_EXECUTOR"] = "slurm"  # submitit reads Slurm's variables only when told it runs there
    dist_env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    if dist_env.world_size > 1:
        step = SlurmStep.from_env(os.environ)
        store = rendezvous(dist_env.rank, dist_env.world_size, dist_env.master_addr, step)
        os.environ["MASTER_PORT"] = str(store.port)
    else:  # srun -n 1: a world of one takes no port, init_distributed gives it an in-process store
        store = None
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)
    init_distributed(store=store)
    get_logger("launch").info(  # the host names which node each rank runs on, when a node misbehaves
        "rank %d/%d (local %d) on %s, master %s:%s",
        dist_env.rank,
        dist_env.world_size,
        dist_env.local_rank,
        socket.gethostname(),
        dist_env.master_addr,
        os.environ.get("MASTER_PORT", "-"),
    )
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
