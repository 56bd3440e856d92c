"""One task of a multi-node launch: ``srun ... python -m caig.launch.rank <module> [args]``.

Each Slurm task turns its Slurm identity (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, the node list) into
the torch.distributed variables with submitit's helper, then runs ``python -m <module> [args]`` in this
process. ``CUDA_VISIBLE_DEVICES`` is left alone: every rank sees the node's GPUs and picks its own by
LOCAL_RANK, as HF Trainer and DeepSpeed expect.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

from submitit.helpers import TorchDistributedEnvironment

from caig.logs import get_logger


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m caig.launch.rank <module> [args ...]")
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # early warning: only a checkpointing rank reacts
    os.environ["SUBMITIT_EXECUTOR"] = "slurm"  # submitit reads Slurm's variables only when told it runs there
    dist_env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    get_logger("launch").info(
        "rank %d/%d (local %d) master %s:%d",
        dist_env.rank,
        dist_env.world_size,
        dist_env.local_rank,
        dist_env.master_addr,
        dist_env.master_port,
    )
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
