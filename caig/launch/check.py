"""``caig launch --check``: a distributed smoke test of the launch path on the hardware at hand.

Every rank joins the group, all-reduces its rank, and prints one JSON line; rank 0 checks the sum. Run it
on a fresh allocation (``srun -p gpu --gpus 8 caig launch --check``) before a long job.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from caig.launch.dist import distributed


def main() -> int:
    with distributed() as world:
        value = torch.tensor([world.rank + 1], dtype=torch.int64, device=world.device)
        if world.backend is not None:
            dist.all_reduce(value)
        expected = world.world_size * (world.world_size + 1) // 2
        report = {
            "rank": world.rank,
            "world_size": world.world_size,
            "local_rank": world.local_rank,
            "backend": world.backend,
            "device": str(world.device),
            "all_reduce_sum": int(value.item()),
            "expected": expected,
        }
        # One write of the whole line: ranks share the job's stdout, and print() writes the text and its
        # newline separately, so two ranks' lines could run together.
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), (json.dumps(report) + "\n").encode())
    return 0 if report["all_reduce_sum"] == expected else 1


if __name__ == "__main__":
    sys.exit(main())
